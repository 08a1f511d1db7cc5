"""The Nornir task ``portscan``: each host is scanned when its own task reaches the scan.

    >>> from nornir_portscan import portscan
    >>> result = nr.run(task=portscan, ports="22,443", timeout=0.5)  # doctest: +SKIP

The contract, as ``tcp_ping``, ``napalm_get`` and ``netmiko`` tasks keep it: a host's Result
comes from probes sent after that host's own call began, with that host's own arguments; only
hosts whose task called ``portscan`` are scanned; no result is handed to another call or kept
for later. Speed comes from sharing, not from guessing: each call runs through the process's
``ScanService`` (``engine/service.py``), so calls in flight at the same moment
(``ThreadedRunner``) share its worker processes and probe pools. A terminal Ctrl-C interrupts
every call in flight and the calls that start in the next seconds, so the run stops at once.

To scan a whole (filtered) inventory in one engine run, with one report file, say so:
``scan_inventory(nr, ports=...)`` gives every host its own Result.

Failure semantics: ``failed`` is true for a host error (unresolved, timed out, nothing but local
errors), a broken expectation (after waiting, with ``wait=True``) and drift from the
``baseline``, confirmed by re-probing, that the host's expectations do not explain; the entry's
``failure`` says why in one line, in the words every front door uses. A closed or filtered port
is data. Bad input (task arguments, or the host's inventory data) fails that host with the
``InputError`` as ``exception`` and its one-line message as ``result``. Engine warnings are in
the entry's ``warnings`` and logged once through ``logging.getLogger("nornir_portscan")``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nornir.core.task import Result

from nornir_portscan.audit.policy import POLICY_KEYS
from nornir_portscan.errors import InputError, OptionError, ReportError, ScanError
from nornir_portscan.models import AddressFamily, Progress
from nornir_portscan.pipeline import Job, build_job, run_job, write_reports
from nornir_portscan.ports import format_ports, parse_ports
from nornir_portscan.progress import ProgressBar
from nornir_portscan.reports.data import host_entry
from nornir_portscan.reports.files import ReportFiles
from nornir_portscan.request import TargetSpec
from nornir_portscan.targets import DEFAULT_MAX_HOSTS

if TYPE_CHECKING:
    from nornir.core import Nornir
    from nornir.core.inventory import Host
    from nornir.core.task import AggregatedResult, Task

__all__ = [
    "HOST_SETTINGS",
    "INVENTORY_KEY",
    "PortscanResult",
    "host_target",
    "portscan",
    "scan_inventory",
]

INVENTORY_KEY = "portscan"
"""The inventory data key (hosts, groups, defaults) holding per-host settings."""
HOST_SETTINGS = ("ports", "exclude_ports", *POLICY_KEYS)
"""The settings allowed under ``INVENTORY_KEY``: the ports to scan and the expectations."""

PortsSpec = str | Sequence[int | str]
PathArg = str | os.PathLike[str]
ProgressOption = bool | Callable[[Progress], None] | None
LOG = logging.getLogger("nornir_portscan")
_REPORT_HINT = (
    "report= is for a whole run: scan the inventory in one call with "
    "scan_inventory(nr, ..., reports={'json': 'scan.json'})"
)


class PortscanResult(dict[str, Any]):
    """A host's report entry (``reports.data.host_entry``) that prints as a one-line summary.

    ``print_result`` shows a dict result with ``pprint``, which uses ``repr``; this keeps the
    output to one line per host. ``dict(result)`` or ``json.dumps(result)`` give all of it.
    """

    def __repr__(self) -> str:
        address = self["address"] or self["name"]
        if self["error"] and not self["ports"]:
            line = f"{address} {self['status']}: {self['error']}"
        else:
            parts = [f"open {format_ports(self['open_ports']) or 'none'}"]
            if self["filtered_ports"]:
                parts.append(f"filtered {format_ports(self['filtered_ports'])}")
            parts.append(f"closed {self['closed_count']}")
            if self["error_ports"]:
                parts.append(f"errors {format_ports(self['error_ports'])}")
            if self["error"]:
                parts.append(self["error"])
            line = f"{address} {self['status']}: {'; '.join(parts)}"
        return "; ".join([line, *self._audit_parts()])

    __str__ = __repr__

    def _audit_parts(self) -> list[str]:
        parts = []
        if not self["passed"]:
            # the failure line without its label: the line above names the host
            parts.append("FAILED: " + self["failure"].split(": ", 1)[-1])
        elif self.get("compliant") is True:
            parts.append("compliant")
        wait = self.get("wait")
        if wait is not None and wait["converged"]:
            parts.append(f"wait: converged in {wait['elapsed']:.1f} s")
        drift = self.get("drift")
        if drift is not None:
            parts.append(_drift_text(drift))
        return parts


def _drift_text(drift: Mapping[str, Any]) -> str:
    if not drift.get("in_baseline", True):
        return "drift: not in the baseline"
    texts = []
    if drift["opened"]:
        texts.append(f"opened {format_ports(drift['opened'])}")
    if drift["closed"]:
        texts.append(f"closed {format_ports(drift['closed'])}")
    texts.extend(f"{c['port']} {c['before']}->{c['after']}" for c in drift["changed"])
    if not texts:
        return "no drift"
    unexpected = drift.get("unexpected")
    if unexpected == []:
        return f"drift: {', '.join(texts)}, as expected"
    total = len(drift["opened"]) + len(drift["closed"]) + len(drift["changed"])
    if unexpected and len(unexpected) < total:
        return f"drift: {', '.join(texts)} (unexpected: {format_ports(unexpected)})"
    return f"drift: {', '.join(texts)}"


def portscan(
    task: Task,
    ports: PortsSpec | None = None,
    *,
    exclude_ports: PortsSpec | None = None,
    expect_open: PortsSpec | None = None,
    expect_closed: PortsSpec | None = None,
    expect_filtered: PortsSpec | None = None,
    allowed_open: PortsSpec | None = None,
    policy_file: PathArg | None = None,
    baseline: PathArg | None = None,
    recheck: int = 3,
    wait: bool = False,
    wait_timeout: float = 300.0,
    interval: float = 2.0,
    exclude: Iterable[str] = (),
    max_hosts: int = DEFAULT_MAX_HOSTS,
    family: AddressFamily = "ipv4",
    protocol: str = "tcp",
    progress: ProgressOption = None,
    dry_run: bool | None = None,
    **options: Any,
) -> Result:
    """Scan this host's TCP and UDP ports now, with its own settings; return its entry.

    The host is scanned when its task calls this, by probes sent after the call began.
    Nornir's ``port`` (the management connection's) is not scanned unless asked:
    ``ports=str(task.host.port)``.
    A setting given here wins over the host's inventory data (``portscan: {ports: ...}``,
    inherited from defaults and groups), which wins over the default.

    Args:
        task: The Nornir task of one host.
        ports: Ports to scan, e.g. ``"22,443"``, ``"top100"``, ``[22, "8000-8010"]`` or
            ``"T:22,U:53,161"`` (UDP after ``U:``, as nmap's ``-p``; ``U:top20``); else the
            host's inventory ``portscan: {ports: ...}``, else ``top1000``.
        exclude_ports: Ports to leave out.
        expect_open: Ports that must be open. The ports of the four expectations are
            scanned even if ``ports`` does not list them.
        expect_closed: Ports that must be closed (refused).
        expect_filtered: Ports that must be filtered (no answer).
        allowed_open: The allow-list: any other open port is a violation.
        policy_file: A YAML policy file (defaults, groups, hosts by name or address).
        baseline: A JSON report saved earlier (``scan_inventory(..., reports=...)``, or
            ``portscan --json``): the host fails on confirmed drift its expectations do not
            explain (``drift["unexpected"]``).
        recheck: How many times to re-probe a difference from the baseline (0: at once).
        wait: Scan unmet expectations again every ``interval`` seconds until all are met or
            ``wait_timeout`` seconds pass; a host that never converges fails. A host without
            expectations has nothing to wait for: it is scanned once.
        wait_timeout: Seconds to wait at most, from the start of the scan.
        interval: Seconds between rounds of the wait.
        exclude: Addresses, ranges, blocks or names never scanned: an excluded host gets a
            Result that says so and sends nothing.
        max_hosts: The scope guard (a host is one target, two with both address families).
        family: ``"ipv4"`` or ``"ipv6"``: which address of a hostname to scan.
        protocol: What a port without ``T:`` or ``U:`` is, in every port list (the call's and
            the inventory's): ``"tcp"``, ``"udp"`` (nmap's ``-sU``) or ``"both"``.
        progress: ``True`` draws this host's progress on stderr, a callable gets each
            ``Progress``; by default none (a ``ProgressBar`` processor counts hosts).
        dry_run: Say what would be probed and send nothing (Nornir's ``dry_run``).
        **options: The engine's options: ``timeout``, ``retries``, ``rate``, ``concurrency``,
            ``processes``, ``host_timeout``, ``include_closed``, ...

    Returns:
        A ``Result`` whose ``result`` is a ``PortscanResult`` (the host's report entry);
        ``failed`` when the host did not pass (``result["failure"]`` says why). Bad input
        fails the host with the ``InputError`` as ``exception`` and its message as ``result``.
    """
    host = task.host
    refused = _refused(options)
    if refused is not None:
        return _input_failure(host, refused)
    call: dict[str, Any] = {
        "expect_open": expect_open,
        "expect_closed": expect_closed,
        "expect_filtered": expect_filtered,
        "allowed_open": allowed_open,
    }
    try:
        spec = host_target(host, ports, exclude_ports, call, protocol=protocol)
        _check_family(family)
        job = build_job(
            [spec],
            exclude=exclude,
            exclude_ports=exclude_ports,
            family=family,
            max_hosts=max_hosts,
            policy_file=policy_file,
            baseline=baseline,
            recheck=recheck,
            wait=False,  # below: only a host with expectations has something to wait for
            wait_timeout=wait_timeout,
            interval=interval,
            allow_empty=True,
            protocol=protocol,
            **call,
            **options,
        )
        waiting = replace(job.audit, wait=wait)  # AuditOptions checks the value
    except InputError as exc:
        return _input_failure(host, exc)
    if waiting.wait and any(t.policy for t in job.request.targets):
        job = replace(job, audit=waiting)
    if not job.request.targets:
        return _excluded(host, spec)
    if task.is_dry_run(dry_run):
        return Result(host=host, result=_plan(job), failed=False, changed=False)
    try:
        audit = run_job(job, progress=_progress_callback(progress), scanner=_scanner())
    except ScanError as exc:
        _log_once(str(exc))  # the same words for every host: one line, not one per host
        return Result(host=host, result=str(exc), failed=True, exception=exc)
    entry = PortscanResult(host_entry(audit, 0))
    entry["warnings"] = list(audit.report.warnings)
    for warning in audit.report.warnings:
        _log_once(warning)
    return Result(host=host, result=entry, failed=not entry["passed"])


def host_target(
    host: Host,
    ports: PortsSpec | None = None,
    exclude_ports: PortsSpec | None = None,
    call: Mapping[str, Any] | None = None,
    *,
    protocol: str = "tcp",
) -> TargetSpec:
    """A Nornir host as a ``TargetSpec``: its address (``hostname``, else its name), its ports
    and expectations from the call, else from its inventory ``portscan`` data (inherited
    from defaults and groups) key by key, else the defaults."""
    settings = _settings(host)
    spec: PortsSpec | None = ports if ports is not None else settings.get("ports")
    chosen: PortsSpec = "top1000" if spec is None else spec  # null: no setting, the default
    own_exclude = settings.get("exclude_ports") if exclude_ports is None else None
    # an empty spec must not fall back to the request's default ports: it is an error here
    if own_exclude is not None or _empty(chosen):
        where = " (inventory data)" if own_exclude is not None or ports is None else ""
        try:
            chosen = format_ports(
                parse_ports(chosen, exclude=own_exclude, protocol=protocol), qualified=True
            )
        except InputError as exc:
            raise type(exc)(f"host {host.name!r}{where}: {exc}") from None
    called = {k for k, v in (call or {}).items() if v is not None}
    own = {k: settings[k] for k in POLICY_KEYS if k in settings and k not in called}
    return TargetSpec(host.name, host.hostname or host.name, chosen, own or None)


def scan_inventory(
    nornir: Nornir,
    ports: PortsSpec | None = None,
    *,
    reports: ReportFiles | Mapping[str, PathArg | None] | None = None,
    progress: ProgressOption = None,
    **settings: Any,
) -> AggregatedResult:
    """Scan every host of ``nornir`` (filter it first) in one engine run, now, and give each
    host its own ``Result``, as ``nr.run(task=portscan, ...)`` would.

    The explicit form of a whole-inventory audit: one scan (``max_hosts`` and ``exclude``
    count every host), one set of report files (``reports={'json': 'scan.json'}``). Takes the
    settings of ``portscan``. Bad input raises the ``InputError`` (one line naming the host);
    a report that cannot be written raises ``ReportError`` after the scan, with the results as
    its ``results``. A host left out by ``exclude`` gets the Result the task gives it. The
    failed hosts are not recorded in ``nr.data.failed_hosts`` (``nr.run`` does that).
    """
    from nornir.core.task import AggregatedResult, MultiResult

    if "report" in settings:
        raise OptionError(
            "unknown option 'report': name the files with reports=, "
            "e.g. reports={'json': 'scan.json'}"
        )
    _check_family(settings.get("family", "ipv4"))
    call = {k: settings.pop(k, None) for k in POLICY_KEYS}
    exclude_ports = settings.get("exclude_ports")
    hosts = {host.name: host for host in nornir.inventory.hosts.values()}
    protocol = settings.get("protocol", "tcp")
    if ports is not None:  # the run's ports: bad ones are the run's one line, as at every door
        parse_ports(ports, exclude=exclude_ports, protocol=protocol)
    specs = [
        host_target(host, ports, exclude_ports, call, protocol=protocol) for host in hosts.values()
    ]
    job = build_job(specs, reports=reports, **call, **settings)
    audit = run_job(job, progress=_progress_callback(progress), scanner=_scanner())
    for warning in audit.report.warnings:
        _log_once(warning)
    by_name = {scanned.name: index for index, scanned in enumerate(audit.report.hosts)}
    results = AggregatedResult("scan_inventory")
    for spec, host in zip(specs, hosts.values(), strict=True):
        multi = results[host.name] = MultiResult("scan_inventory")
        index = by_name.get(host.name)
        if index is None:  # left out by exclude: as the task says it
            multi.append(_excluded(host, spec, "scan_inventory"))
            continue
        entry = PortscanResult(host_entry(audit, index))
        entry["warnings"] = list(audit.report.warnings)
        multi.append(
            Result(host=host, name="scan_inventory", result=entry, failed=not entry["passed"])
        )
    try:
        write_reports(job.reports, audit)
    except ReportError as exc:
        exc.results = results  # type: ignore[attr-defined]
        raise
    return results


def _plan(job: Job) -> dict[str, Any]:
    """What a dry run reports: what would be probed."""
    target = job.request.targets[0]
    return {
        "dry_run": True,
        "name": target.name,
        "address": target.address,
        "ports": format_ports(sorted(job.request.ports_for(target))),
        "probes": job.request.probe_count,
    }


def _input_failure(host: Host, error: InputError) -> Result:
    return Result(host=host, result=str(error), failed=True, exception=error)


def _excluded(host: Host, spec: TargetSpec, name: str | None = None) -> Result:
    return Result(host=host, name=name, result=f"{spec.address} excluded: not scanned")


def _refused(options: Mapping[str, Any]) -> OptionError | None:
    """The settings a per-host call cannot take: files of the whole run, other targets."""
    if "report" in options or "reports" in options:
        return OptionError(_REPORT_HINT)
    for name in ("target_files", "allow_empty"):
        if name in options:
            return OptionError(
                f"unknown option {name!r}: the task scans its own host; scan many with "
                "scan_inventory(nr.filter(...), ...)"
            )
    return None


def _check_family(family: object) -> None:
    if family not in ("ipv4", "ipv6"):
        raise OptionError(
            f"invalid family {family!r}: the Nornir task scans one address per host, "
            "use 'ipv4' or 'ipv6', e.g. family='ipv4'"
        )


def _empty(ports: object) -> bool:
    return isinstance(ports, str | Sequence) and len(ports) == 0


def _progress_callback(option: ProgressOption) -> Callable[[Progress], None] | None:
    if option is True:
        return ProgressBar(force=True)
    return option or None


def _scanner() -> Callable[..., Any] | None:
    """The engine the calls share: the process's ``ScanService``, whose worker processes and
    probe pools serve every call in flight at the same moment (and stop when idle)."""
    from nornir_portscan.engine.service import shared_service

    return shared_service().scan


LOG_AGAIN_AFTER = 60.0
"""Seconds after which a message logged already is logged again, if it happens again."""
_LOGGED: dict[str, float] = {}  # message -> time.monotonic() it was last logged
_LOGGED_LOCK = threading.Lock()


def _log_once(message: str) -> None:
    """Log each distinct message once, however many hosts it reaches (a thousand hosts of one
    run, one line); a long-lived process logs it again when it recurs ``LOG_AGAIN_AFTER``
    seconds later, rather than never."""
    now = time.monotonic()
    with _LOGGED_LOCK:
        last = _LOGGED.get(message)
        if last is not None and now - last < LOG_AGAIN_AFTER:
            return
        for old in [m for m, t in _LOGGED.items() if now - t >= LOG_AGAIN_AFTER]:
            del _LOGGED[old]
        _LOGGED[message] = now
    LOG.warning(message)


# -- inventory data ------------------------------------------------------------------------------
def _settings(host: Host) -> dict[str, Any]:
    """``portscan`` inventory data merged key by key: defaults, then groups, then the host."""
    merged: dict[str, Any] = {}
    sources = [("the defaults", host.defaults.data)]
    sources += [(f"group {g.name!r}", g.data) for g in reversed(host.extended_groups())]
    sources.append(("the host", host.data))
    for where, data in sources:
        value = data.get(INVENTORY_KEY)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise InputError(
                f"host {host.name!r}: the {INVENTORY_KEY} data of {where} must be "
                f"a mapping, e.g. {INVENTORY_KEY}: {{ports: '22,443'}}"
            )
        unknown = sorted(set(value) - set(HOST_SETTINGS))
        if unknown:
            raise InputError(
                f"host {host.name!r}: unknown key {unknown[0]!r} in the "
                f"{INVENTORY_KEY} data of {where}: use "
                f"{', '.join(HOST_SETTINGS[:-1])} or {HOST_SETTINGS[-1]}, "
                f"e.g. {INVENTORY_KEY}: {{ports: '22'}}"
            )
        merged.update(value)
    return merged
