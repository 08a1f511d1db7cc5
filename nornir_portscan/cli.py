"""The ``portscan`` command line: parse arguments, run the engine, print or write the report.

Exit codes: 0 done, 1 an expectation was violated (a policy, a wait that did not converge, confirmed
drift), 2 bad input (one line on stderr, nothing sent), 3 the scan could not run or a report file
could not be written (the outcome is still shown), 130 interrupted (the partial report is still
written).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from nornir_portscan import __version__
from nornir_portscan.audit.gates import Audit
from nornir_portscan.errors import InputError, ReportError, ScanError, ScanInterrupted
from nornir_portscan.pipeline import Job, build_job, number, run_job
from nornir_portscan.progress import ProgressBar
from nornir_portscan.reports.data import render_table, report_to_json
from nornir_portscan.reports.files import ReportFiles, page_format, write_reports

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
        type=number,
        default=1.0,
        help="connect timeout in seconds, the adaptive timeout's ceiling (default: %(default)s)",
    )
    p.add_argument(
        "--min-timeout",
        type=number,
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
        type=number,
        default=1,
        help="extra attempts for ports that give no response, plus one once a port answered "
        "only its last one (default: %(default)s)",
    )
    p.add_argument("--rate", type=number, help="at most this many probes per second, all workers")
    p.add_argument(
        "--concurrency",
        type=number,
        default=1000,
        help="probes in flight per worker (default: %(default)s)",
    )
    p.add_argument("--host-concurrency", type=number, help="probes in flight per host")
    p.add_argument("--processes", type=number, help="worker processes (default: one per CPU)")
    p.add_argument(
        "--host-timeout",
        type=number,
        help="give up on a host after this many seconds, keeping its results",
    )
    p.add_argument(
        "--max-hosts",
        type=number,
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
        type=number,
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
        type=number,
        default=300.0,
        metavar="S",
        help="give up waiting after S seconds (default: %(default)s)",
    )
    audit.add_argument(
        "--interval",
        type=number,
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


def _reports(args: argparse.Namespace) -> ReportFiles:
    pages = {page_format(args.report): args.report} if args.report else {}
    return ReportFiles(json=None if args.json == "-" else args.json, xml=args.xml, **pages)


def _job(args: argparse.Namespace) -> Job:
    """Parse and check every input; raises ``InputError`` before anything is sent."""
    if not args.targets and not args.target_file:
        raise InputError("no targets given: name at least one, e.g. 'portscan -p 22 127.0.0.1'")
    return build_job(
        args.targets,
        args.ports,
        exclude=[t for e in args.exclude for t in e.split(",")],
        exclude_ports=args.exclude_ports,
        target_files=args.target_file,
        family=args.family or "ipv4",
        max_hosts=args.max_hosts,
        expect_open=args.expect_open,
        expect_closed=args.expect_closed,
        expect_filtered=args.expect_filtered,
        allowed_open=args.allowed_open,
        policy_file=args.policy,
        baseline=args.baseline,
        recheck=args.recheck,
        wait=args.wait,
        wait_timeout=args.wait_timeout,
        interval=args.interval,
        reports=_reports(args),
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


def _error(message: object) -> None:
    print(f"portscan: error: {message}", file=sys.stderr)


def _output(args: argparse.Namespace, job: Job, audit: Audit) -> bool:
    """Show the outcome and write the report files; False when a file could not be written
    (the outcome is shown all the same)."""
    if args.json == "-":
        sys.stdout.write(report_to_json(audit))
        for warning in audit.report.warnings:  # the table is not shown: say them on stderr
            print(f"portscan: warning: {warning}", file=sys.stderr)
    else:
        sys.stdout.write(render_table(audit))
    sys.stdout.flush()
    try:
        write_reports(job.reports, audit)
    except ReportError as exc:
        _error(exc)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        job = _job(args)
    except InputError as exc:
        _error(exc)
        return EXIT_INPUT
    except KeyboardInterrupt:  # while names resolve: nothing was sent
        print("portscan: interrupted before the scan", file=sys.stderr)
        return EXIT_INTERRUPTED
    bar = ProgressBar(sys.stderr) if args.progress and sys.stderr.isatty() else None
    try:
        audit = run_job(job, progress=bar)
        code = EXIT_VIOLATED if audit.violated else EXIT_OK
    except ScanInterrupted as interrupted:
        audit = interrupted.audit or Audit(interrupted.report)
        code = EXIT_INTERRUPTED
    except (InputError, ScanError) as exc:
        if bar:
            bar.end()
        _error(exc)
        return EXIT_INPUT if isinstance(exc, InputError) else EXIT_SCAN
    if bar:
        bar.end()
    written = _output(args, job, audit)
    if code == EXIT_INTERRUPTED:
        print("portscan: interrupted; the report holds partial results", file=sys.stderr)
        return code
    return code if written else EXIT_SCAN


if __name__ == "__main__":
    sys.exit(main())
