"""The ``portscan`` command line: parse arguments, run the engine, print or write the report.

Exit codes: 0 done, 1 an expectation was violated (a policy, a wait that did not converge, confirmed
drift), 2 bad input (one line on stderr, nothing sent), 3 the scan could not run, 130 interrupted
(the partial report is still written).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from nornir_portscan import __version__
from nornir_portscan.audit.drift import load_baseline
from nornir_portscan.audit.gates import Audit, run_audit
from nornir_portscan.audit.policy import POLICY_KEYS, Policy, PolicyBook, load_policy_file
from nornir_portscan.engine.executor import build_request, scan
from nornir_portscan.errors import InputError, ScanError, ScanInterrupted
from nornir_portscan.models import Progress, ScanReport, ScanRequest
from nornir_portscan.ports import parse_ports
from nornir_portscan.reports.data import render_table, report_to_json
from nornir_portscan.reports.nmap_xml import report_to_xml
from nornir_portscan.reports.pages import report_writer, write_report

__all__ = ["main"]

EXIT_OK, EXIT_VIOLATED, EXIT_INPUT, EXIT_SCAN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="portscan",
        description="Fast TCP connect port scanner (one worker process per CPU, gevent inside).",
        epilog="examples: portscan -p 22,80,443 127.0.0.1   portscan -p top100 127.0.0.1-5 "
        "--json report.json",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="address, hostname, CIDR block (127.0.0.0/24) or octet range (127.0.0.1-20)",
    )
    p.add_argument(
        "-p",
        "--ports",
        default="top1000",
        help="ports: 22,80,8000-8100, '-' for all, service names (ssh), top100, "
        "top1000 (default: %(default)s)",
    )
    p.add_argument(
        "-iL",
        "--target-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read targets from FILE (repeatable)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="TARGETS",
        help="targets to skip, comma separated (repeatable)",
    )
    p.add_argument("--exclude-ports", metavar="PORTS", help="ports to skip")
    family = p.add_mutually_exclusive_group()
    family.add_argument(
        "-4",
        dest="family",
        action="store_const",
        const="ipv4",
        help="resolve names to IPv4 (default)",
    )
    family.add_argument(
        "-6", dest="family", action="store_const", const="ipv6", help="resolve names to IPv6"
    )
    family.add_argument(
        "--both",
        dest="family",
        action="store_const",
        const="both",
        help="resolve names to IPv4 and IPv6",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=1.0,
        help="connect timeout in seconds, the adaptive timeout's ceiling (default: %(default)s)",
    )
    p.add_argument(
        "--min-timeout",
        type=float,
        default=0.1,
        help="floor of the adaptive timeout (default: %(default)s)",
    )
    p.add_argument(
        "--no-adaptive",
        dest="adaptive",
        action="store_false",
        help="always wait the full --timeout",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        help="extra attempts for ports that give no response, plus one once a port answered "
        "only its last one (default: %(default)s)",
    )
    p.add_argument("--rate", type=float, help="at most this many probes per second, all workers")
    p.add_argument(
        "--concurrency",
        type=int,
        default=1000,
        help="probes in flight per worker (default: %(default)s)",
    )
    p.add_argument("--host-concurrency", type=int, help="probes in flight per host")
    p.add_argument("--processes", type=int, help="worker processes (default: one per CPU)")
    p.add_argument(
        "--host-timeout",
        type=float,
        help="give up on a host after this many seconds, keeping its results",
    )
    p.add_argument(
        "--max-hosts",
        type=int,
        default=65536,
        help="refuse target lists larger than this (default: %(default)s)",
    )
    p.add_argument(
        "--closed",
        dest="include_closed",
        action="store_true",
        help="list closed ports in the JSON report too",
    )
    p.add_argument("--json", metavar="FILE", help="write the JSON report to FILE ('-': stdout)")
    p.add_argument("--xml", metavar="FILE", help="write an nmap-compatible XML report to FILE")
    p.add_argument(
        "--report",
        metavar="FILE",
        help="write a readable audit report: Markdown (.md) or a self-contained HTML page (.html)",
    )
    audit = p.add_argument_group(
        "audits and gates",
        "exit code 1 when a host violates its expectations, a --wait does "
        "not converge or drift from --baseline is confirmed",
    )
    audit.add_argument(
        "--policy",
        metavar="FILE",
        help="YAML policy file: defaults, groups and hosts with expect_open, "
        "expect_closed, expect_filtered and allowed_open port specs",
    )
    for key, text in (("expect_open", "must be open"), ("expect_closed", "must be closed"),
                      ("expect_filtered", "must be filtered"),
                      ("allowed_open", "the only ports allowed open")):  # fmt: skip
        audit.add_argument(
            "--" + key.replace("_", "-"),
            dest=key,
            metavar="PORTS",
            help=f"ports that {text} on every host (scanned even if not in -p)",
        )
    audit.add_argument(
        "--baseline",
        metavar="FILE",
        help="a JSON report saved earlier: report ports that opened, closed or changed since",
    )
    audit.add_argument(
        "--recheck",
        type=int,
        default=3,
        metavar="N",
        help="probe differences from the baseline N more times before calling "
        "them drift (default: %(default)s)",
    )
    audit.add_argument(
        "--wait",
        action="store_true",
        help="scan the unmet expectations again until all are met or --wait-timeout passes",
    )
    audit.add_argument(
        "--wait-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="give up waiting after S seconds (default: %(default)s)",
    )
    audit.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between wait rounds (default: %(default)s)",
    )
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (it shows only when stderr is a terminal)",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


class _ProgressBar:
    """probes done/total, rate and ETA on one terminal line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def __call__(self, progress: Progress) -> None:
        done, total, elapsed = progress.done, max(1, progress.total), progress.elapsed
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        filled = int(30 * done / total)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} probes "
            f"{rate:,.0f}/s ETA {eta:4.1f}s "
        )
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _write(scan: ScanReport | Audit, args: argparse.Namespace) -> None:
    report = scan.report if isinstance(scan, Audit) else scan
    json_path = args.json
    if args.xml:
        Path(args.xml).write_text(report_to_xml(scan))
    if args.report:
        write_report(args.report, scan if isinstance(scan, Audit) else Audit(scan))
    if json_path == "-":
        sys.stdout.write(report_to_json(scan))
        for warning in report.warnings:  # the table is not shown: say them on stderr
            print(f"portscan: warning: {warning}", file=sys.stderr)
        return
    sys.stdout.write(render_table(scan))
    if json_path:
        Path(json_path).write_text(report_to_json(scan))


def _request(args: argparse.Namespace) -> ScanRequest:
    return build_request(
        args.targets,
        args.ports,
        exclude=[t for e in args.exclude for t in e.split(",")],
        exclude_ports=args.exclude_ports,
        target_files=args.target_file,
        family=args.family or "ipv4",
        max_hosts=args.max_hosts,
        timeout=args.timeout,
        min_timeout=args.min_timeout,
        adaptive=args.adaptive,
        retries=args.retries,
        rate=args.rate,
        concurrency=args.concurrency,
        host_concurrency=args.host_concurrency,
        processes=args.processes,
        host_timeout=args.host_timeout,
        include_closed=args.include_closed,
    )


def _policies(args: argparse.Namespace, request: ScanRequest) -> list[Policy] | None:
    """The policy of every target: the policy file's, with the --expect-* options on top of
    its defaults; None when no expectation was given."""
    flags = {key: getattr(args, key) for key in POLICY_KEYS if getattr(args, key) is not None}
    if not flags and not args.policy:
        return None
    for key, value in flags.items():
        try:
            parse_ports(value)
        except InputError as exc:
            raise type(exc)(f"--{key.replace('_', '-')}: {exc}") from None
    book = load_policy_file(args.policy) if args.policy else PolicyBook({}, {}, {})
    book = PolicyBook({**book.defaults, **flags}, book.groups, book.hosts)
    return [book.policy_for(t.name, t.address) for t in request.targets]


@dataclass(frozen=True, slots=True)
class _Job:
    """A parsed command line: what to scan and how to judge it."""

    request: ScanRequest
    policies: list[Policy] | None
    baseline: dict[str, Any] | None


def _prepare(args: argparse.Namespace) -> _Job:
    """Parse and check every input; raises ``InputError`` before anything is sent."""
    if not args.targets and not args.target_file:
        raise InputError("no targets given: name at least one, e.g. 'portscan -p 22 127.0.0.1'")
    request = _request(args)
    policies = _policies(args, request)
    baseline = load_baseline(args.baseline) if args.baseline else None
    if args.report:
        report_writer(args.report)
    if args.wait and not (policies and any(policies)):
        raise InputError(
            "--wait needs expectations to wait for, e.g. --expect-open 8080 or --policy FILE"
        )
    return _Job(request, policies, baseline)


def _run(args: argparse.Namespace, job: _Job, bar: _ProgressBar | None) -> ScanReport | Audit:
    if job.policies is None and job.baseline is None:
        return scan(job.request, progress=bar)
    return run_audit(
        job.request,
        job.policies,
        baseline=job.baseline,
        wait=args.wait,
        wait_timeout=args.wait_timeout,
        interval=args.interval,
        recheck=args.recheck,
        progress=bar,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        job = _prepare(args)
    except InputError as exc:
        print(f"portscan: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    bar = _ProgressBar(sys.stderr) if args.progress and sys.stderr.isatty() else None
    try:
        result = _run(args, job, bar)
    except ScanInterrupted as interrupted:
        if bar:
            bar.clear()
        _write(interrupted.report, args)
        print("portscan: interrupted; the report holds partial results", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InputError, ScanError) as exc:
        if bar:
            bar.clear()
        print(f"portscan: error: {exc}", file=sys.stderr)
        return EXIT_INPUT if isinstance(exc, InputError) else EXIT_SCAN
    if bar:
        bar.clear()
    _write(result, args)
    return EXIT_VIOLATED if isinstance(result, Audit) and result.violated else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
