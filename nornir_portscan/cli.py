"""The ``portscan`` command line: parse arguments, run the engine, print or write the report.

Exit codes (README.md, "Exit codes"): 0 done, every port answered by the network; 1 an
expectation was violated (a policy, a wait that did not converge, confirmed drift); 2 bad input
(one line on stderr, nothing sent); 3 the scan could not do its job: it could not run, some
port ended ``error`` (no answer we can trust: a dead worker, a local error), a report could not
be written or shown, or memory ran out; 130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by
SIGHUP (the partial report is still written). 3 wins over 1; an interrupt over both.
``portscan merge`` (docs/distributed.md) keeps the same meanings: 3 some shard or port has no
answer, 1 two shards answered a port differently.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import gc
import os
import re
import resource
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from nornir_portscan import __version__
from nornir_portscan.errors import (
    InputError,
    OptionError,
    ReportError,
    ScanError,
    ScanInterrupted,
)

# What a run needs is imported when it runs (``--version`` and ``--help`` need none of it),
# and what only some runs need (``--shard``, ``merge``) only by those.
if TYPE_CHECKING:
    from nornir_portscan.audit.gates import Audit
    from nornir_portscan.fleet.merge import MergedReport
    from nornir_portscan.pipeline import Job
    from nornir_portscan.reports.files import ReportFiles

    ShardJson = Callable[[Audit], Iterable[str]]

__all__ = ["main"]

EXIT_OK, EXIT_VIOLATED, EXIT_INPUT, EXIT_SCAN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # a cancelled job, a closed terminal


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(value: str) -> Any:
    from nornir_portscan.pipeline import number

    return number(value)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="portscan",
        description="Fast TCP connect and UDP port scanner (one worker process per CPU, gevent "
        "inside).",
        epilog="examples: portscan -p 22,80,443 127.0.0.1   portscan -p top100 127.0.0.1-5 "
        "--json report.json   portscan -sU -p top20 127.0.0.1   portscan -p T:22,U:53 127.0.0.1",
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
        "top1000 (default: %(default)s); U: and T: as nmap's: U:53,161,T:22 is UDP 53 and 161 "
        "and TCP 22, U:top20 the top 20 UDP ports",
    )
    p.add_argument(
        "-sU",
        "--udp",
        action="store_true",
        help="UDP scan: ports without T: or U: are UDP (with -sT: both TCP and UDP)",
    )
    p.add_argument(
        "-sT",
        "--tcp",
        action="store_true",
        help="TCP connect scan, the default: ports without T: or U: are TCP",
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
        type=_number,
        default=1.0,
        help="connect timeout in seconds, the adaptive timeout's ceiling (default: %(default)s)",
    )
    p.add_argument(
        "--min-timeout",
        type=_number,
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
        type=_number,
        default=1,
        help="extra attempts for ports that give no response (default: %(default)s); once a "
        "retry answered, three more than the latest attempt that answered, up to ten",
    )
    p.add_argument("--rate", type=_number, help="at most this many probes per second, all workers")
    p.add_argument(
        "--concurrency",
        type=_number,
        default=1000,
        help="probes in flight per worker (default: %(default)s)",
    )
    p.add_argument("--host-concurrency", type=_number, help="probes in flight per host")
    p.add_argument("--processes", type=_number, help="worker processes (default: one per CPU)")
    p.add_argument(
        "--host-timeout",
        type=_number,
        help="give up on a host after this many seconds, keeping its results",
    )
    p.add_argument(
        "--max-hosts",
        type=_number,
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
        type=_number,
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
        type=_number,
        default=300.0,
        metavar="S",
        help="give up waiting after S seconds (default: %(default)s)",
    )
    audit.add_argument(
        "--interval",
        type=_number,
        default=2.0,
        metavar="S",
        help="seconds between wait rounds (default: %(default)s)",
    )
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="scan only shard I of N of the targets (N machines, 0/N to N-1/N, cover them "
        "once); 'portscan merge A.json B.json ...' merges their JSON reports",
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
    from nornir_portscan.reports.files import ReportFiles, page_format

    pages = {page_format(args.report): args.report} if args.report else {}
    return ReportFiles(json=None if args.json == "-" else args.json, xml=args.xml, **pages)


def _job(args: argparse.Namespace) -> Job:
    """Parse and check every input; raises ``InputError`` before anything is sent."""
    from nornir_portscan.pipeline import build_job

    if not args.targets and not args.target_file:
        raise InputError("no targets given: name at least one, e.g. 'portscan -p 22 127.0.0.1'")
    return build_job(
        args.targets,
        args.ports,
        exclude=[t for e in args.exclude for t in e.split(",")],
        exclude_ports=args.exclude_ports,
        target_files=args.target_file,
        family=args.family or "ipv4",
        protocol=("both" if args.tcp else "udp") if args.udp else "tcp",
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


class _Stopped:
    """SIGINT, SIGTERM and SIGHUP end the scan as Ctrl-C does (a ``KeyboardInterrupt`` where
    the program is), while ``armed``; later they are only noted, so that the report is still
    written. ``signum`` is the first one received; the ones after it are only noted."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.armed = True

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self.armed:
            raise KeyboardInterrupt

    def exit_code(self, default: int) -> int:
        return default if self.signum is None else 128 + self.signum


@contextlib.contextmanager
def _stop_signals() -> Iterator[_Stopped]:
    """Handle SIGINT, SIGTERM and SIGHUP for the time of a run; the handlers before are
    restored. A signal that was ignored (``nohup``, a background job's SIGINT) stays ignored.
    Only the command line does this: a library caller's process keeps its own handlers."""
    stopped = _Stopped()
    before: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                before[signum] = signal.signal(signum, stopped)
        # Ctrl-C too, when Python's own handler has it: the same, but a Ctrl-C while the
        # report is written no longer breaks the report off with a traceback
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            before[signal.SIGINT] = signal.signal(signal.SIGINT, stopped)
    try:
        yield stopped
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _scan_failure(audit: Audit) -> str | None:
    """The one line that says why the scan did not do its job, or None when it did: a port that
    ended ``error`` has no state, which an exit code of 0 or 1 would hide."""
    from nornir_portscan.models import PortState

    hosts = audit.report.hosts
    errors = sum(len(h.error_ports) for h in hosts)
    if not errors:
        return None
    asked = sum(len(h.scanned) + len(h.unscanned) for h in hosts)
    reasons = sorted({p.reason for h in hosts for p in h.ports if p.state is PortState.ERROR})
    return (
        f"the scan could not tell the state of {errors} of {asked} ports "
        f"({', '.join(reasons)}); they are listed as error_ports in the report"
    )


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null, so that nothing (the interpreter's final
    flush included) writes to it again (the Python docs' advice on SIGPIPE)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _sharded(job: Job, shard: tuple[int, int] | None) -> tuple[Job, ShardJson | None]:
    """With ``--shard``: this shard's part of the job (its JSON report written apart) and the
    renderer of that report, which says which shard of which plan it is and where it ran."""
    if shard is None:
        return job, None
    from dataclasses import replace

    from nornir_portscan.fleet import iter_shard_json, shard_job, shard_section, where_ran

    part, plan, mine = shard_job(job, *shard)

    def render(audit: Audit) -> Iterable[str]:
        where = where_ran(t.address for t in part.request.targets)
        return iter_shard_json(audit, shard_section(plan, mine, where))

    return replace(part, reports=replace(part.reports, json=None)), render


def _output(
    args: argparse.Namespace, job: Job, audit: Audit, shard_json: ShardJson | None = None
) -> bool:
    """Show the outcome and write the report files; False when it could not be shown (a broken
    pipe: the reader left) or a file could not be written (the rest is done all the same)."""
    from nornir_portscan.reports.data import iter_json, iter_table
    from nornir_portscan.reports.files import write_reports
    from nornir_portscan.reports.writer import write_atomic

    written = True
    try:  # the files first: a terminal that hung up (SIGHUP) must not cost the report
        write_reports(job.reports, audit)
        if shard_json is not None and args.json not in (None, "-"):
            write_atomic(args.json, shard_json(audit), "JSON report")
    except ReportError as exc:
        with contextlib.suppress(OSError):
            _error(exc)
        written = False
    as_json = shard_json or iter_json
    try:
        for chunk in as_json(audit) if args.json == "-" else iter_table(audit):
            sys.stdout.write(chunk)
        sys.stdout.flush()
        if args.json == "-":
            for warning in audit.report.warnings:  # the table is not shown: say them on stderr
                print(f"portscan: warning: {warning}", file=sys.stderr)
    except OSError:  # `| head -1` (the reader has what it wanted), a hung-up terminal (EIO)
        _silence_stdout()
        return False
    return written


def _memory_line() -> str:
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    where = f" (the address-space limit, ulimit -v, is {limit >> 20} MiB)" if limit > 0 else ""
    return f"out of memory{where}: scan fewer hosts or ports at once, or allow more memory"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    # At exit, the interpreter's last garbage collections would walk every object of the run
    # (a few ms) only to free memory the process is giving back anyway.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    if sys.stderr is None:  # `2>&-`: nowhere to say anything, so do nothing
        return EXIT_SCAN
    if sys.stdout is None:  # `>&-`
        _error("standard output is closed; give the command somewhere to write, e.g. '>/dev/null'")
        return EXIT_SCAN
    try:
        with _stop_signals() as stopped:
            try:
                return _main(argv, stopped)
            except KeyboardInterrupt:  # before the scan began (parsing the arguments)
                with contextlib.suppress(OSError):
                    print("portscan: interrupted before the scan", file=sys.stderr)
                return stopped.exit_code(EXIT_INTERRUPTED)
            except OSError as exc:
                # stderr went too: its reader left (`2>&1 | head -1`), or the terminal hung
                # up (EIO; the report files were written first)
                if exc.errno not in (errno.EPIPE, errno.EIO):
                    raise
                _silence_stdout()
                return stopped.exit_code(EXIT_SCAN)
    except MemoryError:
        with contextlib.suppress(OSError):
            _error(_memory_line())
        return EXIT_SCAN


_NEGATIVE = re.compile(r"-(\d|\.\d|inf|nan)", re.IGNORECASE)


def _negatives_joined(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--timeout -1`` as ``--timeout=-1``: argparse takes ``-1`` for an option (the parser
    has ``-4`` and ``-6``), so the value would read "expected one argument" instead of the
    option's own message naming it."""
    takes_value = {
        name
        for action in parser._actions  # argparse has no public view of them
        if action.nargs is None and action.option_strings
        for name in action.option_strings
    }
    joined: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "--":
            joined += [item, *items]
            break
        if item in takes_value:
            value = next(items, None)
            if value is not None and _NEGATIVE.match(value):
                joined.append(f"{item}={value}")
                continue
            joined.append(item)
            if value is not None:
                joined.append(value)
            continue
        joined.append(item)
    return joined


def _main(argv: list[str] | None, stopped: _Stopped) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge"]:
        return _merge(argv[1:])
    parser = _parser()
    args = parser.parse_args(_negatives_joined(parser, argv))
    from nornir_portscan.audit.gates import Audit
    from nornir_portscan.pipeline import run_job
    from nornir_portscan.progress import ProgressBar

    try:
        shard = None
        if args.shard is not None:
            from nornir_portscan.fleet import parse_shard

            shard = parse_shard(args.shard)
        job, shard_json = _sharded(_job(args), shard)
    except InputError as exc:
        _error(exc)
        return EXIT_INPUT
    except KeyboardInterrupt:  # while names resolve: nothing was sent
        print("portscan: interrupted before the scan", file=sys.stderr)
        return stopped.exit_code(EXIT_INTERRUPTED)
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
    except KeyboardInterrupt:  # after the workers were gone, before the report was made
        if bar:
            bar.end()
        print("portscan: interrupted; no report was made", file=sys.stderr)
        return stopped.exit_code(EXIT_INTERRUPTED)
    finally:
        stopped.armed = False  # from here a signal only sets the exit code
    if bar:
        bar.end()
    written = _output(args, job, audit, shard_json)
    return _exit_code(code, stopped, audit, written=written)


def _merge(argv: list[str]) -> int:
    """``portscan merge``: the reports of many shards or vantages as one (docs/distributed.md),
    judged per vantage and with its matrix as the Ansible ``portscan_merge`` gives it. Exit 0
    complete, 1 answers conflict or expectations failed, 2 bad input, 3 some shard or port has
    no answer or a file could not be written."""
    p = _Parser(
        prog="portscan merge",
        description="Merge JSON reports ('portscan --shard I/N --json FILE ...', or whole "
        "scans from several vantages) into one, a host per target and vantage.",
    )
    p.add_argument("reports", nargs="+", metavar="REPORT", help="a JSON report")
    p.add_argument("--json", metavar="FILE", help="write the merged report to FILE ('-': stdout)")
    p.add_argument(
        "--report",
        metavar="FILE",
        help="write the merged report as a page, its reachability matrix first: .md or .html",
    )
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="a YAML policy file (defaults, groups, hosts): expectations from every vantage; "
        "its groups are the matrix's target groups",
    )
    p.add_argument(
        "--vantage-policy",
        metavar="VANTAGE=FILE",
        action="append",
        default=[],
        help="a policy file for one vantage; its keys replace --policy's there (repeatable)",
    )
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="a merged report saved earlier: drift per (target, vantage) against it",
    )
    p.add_argument(
        "--vantage",
        metavar="LABEL",
        help="where the whole scans given ran (their hosts that name no vantage), e.g. a "
        "single scan compared with its vantage in a merged --baseline",
    )
    args = p.parse_args(argv)
    import json

    from nornir_portscan.reports.writer import write_atomic

    try:
        data, merged, page = _merged_data(args)
    except InputError as exc:
        _error(exc)
        return EXIT_INPUT
    from nornir_portscan.fleet import merge_failure, render_merged

    text = json.dumps(data, indent=1) + "\n" if args.json else ""
    shown = True
    try:
        sys.stdout.write(text if args.json == "-" else render_merged(merged))
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        shown = False
    try:
        if args.json not in (None, "-"):
            write_atomic(args.json, text, "merged report")
        if page is not None:
            write_atomic(args.report, page(data), "merged page")
    except ReportError as exc:
        _error(exc)
        return EXIT_SCAN
    failure = merge_failure(merged)
    if failure is not None:
        _error(failure)
        return EXIT_SCAN
    if merged.conflicts:
        count = len(merged.conflicts)
        _error(f"shards answered {count} port{'s' * (count != 1)} differently (conflicts)")
        return EXIT_VIOLATED
    violated = len(data["failed_hosts"])
    if violated:
        _error(f"{violated} (target, vantage) did not meet its expectations: see failed_hosts")
        return EXIT_VIOLATED
    return EXIT_OK if shown else EXIT_SCAN


def _merged_data(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], MergedReport, Callable[[Mapping[str, Any]], Iterable[str]] | None]:
    """The merged JSON of ``portscan merge`` (judged, with its matrix and drift), the merge
    and the page renderer; every destination and file is checked before the merge."""
    from nornir_portscan.audit.drift import load_baseline
    from nornir_portscan.audit.policy import load_policy_file
    from nornir_portscan.fleet import load_report, merge_reports, reachability_matrix
    from nornir_portscan.fleet.baseline import with_drift
    from nornir_portscan.fleet.scopes import file_scopes
    from nornir_portscan.fleet.verdicts import judged, parse_scoped
    from nornir_portscan.reports.files import page_format
    from nornir_portscan.reports.pages import iter_merged_html, iter_merged_markdown
    from nornir_portscan.reports.writer import check_destination

    if args.json not in (None, "-"):
        check_destination(args.json, "merged report")
    page = None
    if args.report is not None:
        kind = page_format(args.report)
        check_destination(args.report, "merged page")
        page = iter_merged_markdown if kind == "markdown" else iter_merged_html
    common = load_policy_file(args.policy) if args.policy is not None else None
    per_vantage = {}
    for item in args.vantage_policy:
        vantage, sep, path = item.partition("=")
        if not sep or not vantage.strip() or not path:
            raise OptionError(
                f"invalid --vantage-policy {item!r}: use VANTAGE=FILE, e.g. users=users.yml"
            )
        if vantage in per_vantage:
            raise OptionError(
                f"--vantage-policy {vantage!r} is given twice: give one file per vantage, "
                f"e.g. {vantage}=users.yml"
            )
        per_vantage[vantage] = load_policy_file(path)
    baseline = load_baseline(args.baseline) if args.baseline is not None else None
    merged = merge_reports(
        [load_report(path) for path in args.reports], sources=args.reports, vantage=args.vantage
    )
    groups, raw = file_scopes(((h.name, h.address) for h in merged.hosts), common, per_vantage)
    policies = parse_scoped(raw)
    matrix = reachability_matrix(merged, groups, policies)
    data = judged(merged.to_dict(matrix=matrix), merged, raw, policies)
    if baseline is not None:
        data = with_drift(data, merged, baseline, policies)
    return data, merged, page


def _exit_code(code: int, stopped: _Stopped, audit: Audit, *, written: bool) -> int:
    """The exit code once the outcome is shown: an interrupt, then 3, then 1 (module doc)."""
    if code == EXIT_INTERRUPTED:
        print("portscan: interrupted; the report holds partial results", file=sys.stderr)
        return stopped.exit_code(EXIT_INTERRUPTED)
    if stopped.signum is not None:  # after the scan: the report is whole, the exit says it
        return stopped.exit_code(EXIT_INTERRUPTED)
    failure = _scan_failure(audit)
    if failure is not None:
        _error(failure)
        return EXIT_SCAN
    return code if written else EXIT_SCAN


if __name__ == "__main__":
    sys.exit(main())
