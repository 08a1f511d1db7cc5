"""The Nornir task ``portscan``: one engine run scans every host of an ``nr.run``.

    >>> from nornir_portscan import portscan
    >>> result = nr.run(task=portscan, ports="22,443", timeout=0.5)  # doctest: +SKIP

How one run is shared. Nornir calls the task once per host, from one thread (serial runner) or
many (``ThreadedRunner``). The first call of a run claims a *batch*: every host of the run's
inventory (``task.nornir.inventory.hosts``, so ``nr.filter`` applies) that is in the same
``failed_hosts`` class as the caller, since a run takes either the good or the failed hosts
(both with ``on_good=True, on_failed=True``: then it is two batches). That call builds one
request and runs the engine once (``gating.run_audit``: the scan, then the wait and the drift
re-checks when asked for); every other host's call claims its own entry and waits for it.
Batches are keyed by the Nornir object (weakly) and by the task arguments, so
concurrent ``nr.run`` calls with other arguments or another filter never mix. An entry is
claimed once: a host that finds its entry taken starts a new batch, so a repeated run scans
again. A batch leaves the registry when its last entry is claimed, when its scan is interrupted,
when its Nornir object goes away, or ``FRESH_FOR`` seconds after its scan if some hosts never
came for their entry (``portscan`` as a subtask of only some hosts).

Failure semantics: ``failed`` is true for a host error (unresolved, timed out, nothing but local
errors), for a host that breaks its expectations (after waiting, with ``wait=True``) and for a
host with drift from the ``baseline``, confirmed by re-probing, that its expectations do not
explain (a port that opened and is expected open is the change that was wanted). A closed or
filtered port is data. Bad input (task arguments, or one host's inventory data) gives that
host a failed ``Result`` whose ``exception`` is the ``InputError`` and whose ``result`` is its
one-line message; the other hosts are still scanned.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nornir.core.task import Result

from nornir_portscan.audit.drift import load_baseline
from nornir_portscan.audit.gates import Audit, run_audit
from nornir_portscan.audit.policy import POLICY_KEYS, Policy, parse_policy
from nornir_portscan.engine.executor import TargetSpec, build_request, scan
from nornir_portscan.errors import InputError, OptionError, ScanError, TargetSpecError
from nornir_portscan.models import AddressFamily, Progress
from nornir_portscan.nornir.processors import ProgressBar
from nornir_portscan.ports import format_ports, parse_ports
from nornir_portscan.reports.data import host_to_dict, report_to_json
from nornir_portscan.targets import parse_targets

if TYPE_CHECKING:
    from nornir.core import Nornir
    from nornir.core.inventory import Host
    from nornir.core.task import Task

__all__ = ["FRESH_FOR", "HOST_SETTINGS", "INVENTORY_KEY", "PortscanResult", "portscan"]

INVENTORY_KEY = "portscan"
"""The inventory data key (hosts, groups, defaults) holding per-host settings."""
HOST_SETTINGS = ("ports", "exclude_ports", *POLICY_KEYS)
"""The settings allowed under ``INVENTORY_KEY``: the ports to scan and the expectations."""
FRESH_FOR = 60.0
"""Seconds after its scan after which a batch whose hosts did not all read it is dropped."""

PortsSpec = str | Sequence[int | str]
PathArg = str | os.PathLike[str]
ProgressOption = bool | Callable[[Progress], None] | None
_SHOWN_VIOLATIONS = 5  # in the one-line summary; the entry has them all


class PortscanResult(dict[str, Any]):
    """A host's report entry (see ``report.host_to_dict``) that prints as a one-line summary.

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
        wait = self.get("wait")
        waited_in_vain = wait is not None and not wait["converged"]
        compliant = self.get("compliant")
        if compliant is True:
            parts.append("compliant")
        elif compliant is False and not waited_in_vain:
            parts.append(f"violations: {_violations_text(self['violations'])}")
        if wait is not None:
            if waited_in_vain:
                unmet = [u for u in wait["unmet"] if u["port"] is not None]
                parts.append(
                    f"wait: NOT converged in {wait['elapsed']:.1f} s"
                    + (f": {_violations_text(unmet)}" if unmet else "")
                )
            else:
                parts.append(f"wait: converged in {wait['elapsed']:.1f} s")
        drift = self.get("drift")
        if drift is not None:
            parts.append(_drift_text(drift))
        return parts


def _violations_text(violations: Sequence[Mapping[str, Any]]) -> str:
    """``8080 open (not allowed), 443 closed (expected open)``, the first few of them."""
    texts = [
        f"{v['port']} open (not allowed)"
        if v["expected"] == "not open"
        else f"{v['port']} {v['actual']} (expected {v['expected']})"
        for v in violations[:_SHOWN_VIOLATIONS]
    ]
    more = len(violations) - _SHOWN_VIOLATIONS
    return ", ".join(texts) + (f" and {more} more" if more > 0 else "")


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
    ports: PortsSpec = "top1000",
    *,
    exclude_ports: PortsSpec | None = None,
    expect_open: PortsSpec | None = None,
    expect_closed: PortsSpec | None = None,
    expect_filtered: PortsSpec | None = None,
    allowed_open: PortsSpec | None = None,
    baseline: PathArg | None = None,
    recheck: int = 3,
    wait: bool = False,
    wait_timeout: float = 300.0,
    interval: float = 2.0,
    report: PathArg | None = None,
    family: AddressFamily = "ipv4",
    progress: ProgressOption = None,
    **options: Any,
) -> Result:
    """Scan TCP ports of every host of the run in one engine run; return this host's entry.

    Args:
        task: The Nornir task (one host of the run).
        ports: Default ports, e.g. ``"22,443"``, ``"top100"`` or ``[22, "8000-8010"]``.
            A host's inventory ``portscan: {ports: ...}`` replaces it.
        exclude_ports: Default ports to leave out; inventory ``portscan: {exclude_ports: ...}``
            replaces it.
        expect_open: Default ports that must be open; inventory ``portscan: {expect_open: ...}``
            replaces it. The ports of all four expectations are scanned even if ``ports``
            does not list them.
        expect_closed: Default ports that must be closed (refused).
        expect_filtered: Default ports that must be filtered (no answer).
        allowed_open: Default allow-list: any other open port is a violation.
        baseline: A JSON report saved earlier (``report=``, or ``portscan --json``): each
            host gets its ``drift`` and fails on confirmed drift that its expectations do not
            explain (``drift["unexpected"]``).
        recheck: How many times to re-probe a port that differs from the baseline before it
            counts as drift (0: at once).
        wait: Scan the unmet expectations again every ``interval`` seconds until all are met
            or ``wait_timeout`` seconds pass; hosts that never converge fail.
        wait_timeout: Seconds to wait at most, counted from the start of the scan.
        interval: Seconds between rounds of the wait.
        report: Write the JSON report of the whole run (every host scanned) to this path.
        family: ``"ipv4"`` or ``"ipv6"``: which address of a hostname to scan.
        progress: ``True`` draws a progress bar on stderr, a callable gets each ``Progress``,
            ``False`` shows none; ``None`` uses a ``ProgressBar`` processor if the run has one.
        **options: The engine's options: ``timeout``, ``retries``, ``rate``, ``concurrency``,
            ``processes``, ``host_timeout``, ``include_closed``, ...

    Returns:
        A ``Result`` whose ``result`` is a ``PortscanResult``; ``failed`` for a host error, a
        violated expectation or unexpected drift.
    """
    host = task.host
    expectations = {
        "expect_open": expect_open,
        "expect_closed": expect_closed,
        "expect_filtered": expect_filtered,
        "allowed_open": allowed_open,
    }
    args = _Args(
        ports,
        exclude_ports,
        family,
        progress,
        options,
        {k: v for k, v in expectations.items() if v is not None},
        _Audit(baseline, recheck, wait, wait_timeout, interval, report),
    )
    batch, hosts = _claim(task.nornir, host, args.key())
    if hosts is not None:
        _run(task, batch, hosts, args)
    batch.done.wait()
    if isinstance(batch.error, InputError):
        return _input_failure(host, batch.error)
    if batch.error is not None:
        raise ScanError(f"the scan of this run failed: {batch.error}") from batch.error
    outcome = batch.outcomes[host.name]
    if isinstance(outcome, InputError):
        return _input_failure(host, outcome)
    return Result(host=host, result=outcome.entry, failed=outcome.failed)


# -- the shared run ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Outcome:
    entry: PortscanResult
    failed: bool


@dataclass(eq=False)
class _Batch:
    pending: set[str]  # hosts that have not claimed their entry yet
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: dict[str, _Outcome | InputError] = field(default_factory=dict)
    error: BaseException | None = None
    finished: float | None = None  # time.monotonic() when the scan ended


_LOCK = threading.Lock()
_BATCHES: weakref.WeakKeyDictionary[Nornir, dict[str, _Batch]] = weakref.WeakKeyDictionary()


def _claim(nornir: Nornir, host: Host, key: str) -> tuple[_Batch, list[Host] | None]:
    """This host's batch, and the hosts to scan if this call is the one that scans."""
    with _LOCK:
        batches = _BATCHES.setdefault(nornir, {})
        now = time.monotonic()
        for stale in [
            k for k, b in batches.items() if b.finished is not None and now - b.finished > FRESH_FOR
        ]:
            del batches[stale]  # a run whose hosts did not all come for their entry
        batch = batches.get(key)
        hosts = None
        if batch is None or host.name not in batch.pending:
            failed = nornir.data.failed_hosts
            mine = host.name in failed
            hosts = [h for name, h in nornir.inventory.hosts.items() if (name in failed) == mine]
            if host.name not in nornir.inventory.hosts:
                hosts.append(host)
            batch = batches[key] = _Batch({h.name for h in hosts})
        batch.pending.discard(host.name)
        if not batch.pending:
            _forget(nornir, key, batch)
        return batch, hosts


def _forget(nornir: Nornir, key: str, batch: _Batch) -> None:
    """Drop ``batch`` from the registry (call with ``_LOCK`` held)."""
    batches = _BATCHES.get(nornir, {})
    if batches.get(key) is batch:
        del batches[key]
    if not batches:
        _BATCHES.pop(nornir, None)


def _run(task: Task, batch: _Batch, hosts: list[Host], args: _Args) -> None:
    try:
        batch.outcomes = _scan_hosts(
            hosts, args, _progress_callback(args.progress, task.processors)
        )
    except Exception as exc:
        batch.error = exc  # every host of the run gets it
    except BaseException as exc:
        # Ctrl-C: the run is over; drop the batch so that nothing waits for its hosts.
        batch.error = exc
        with _LOCK:
            _forget(task.nornir, args.key(), batch)
        raise
    finally:
        batch.finished = time.monotonic()
        batch.done.set()


def _scan_hosts(
    hosts: list[Host], args: _Args, progress: Callable[[Progress], None] | None
) -> dict[str, _Outcome | InputError]:
    if args.family not in ("ipv4", "ipv6"):
        raise OptionError(
            f"invalid family {args.family!r}: the Nornir task scans one address "
            "per host, use 'ipv4' or 'ipv6', e.g. family='ipv4'"
        )
    gate = args.audit
    gate.check()
    baseline = load_baseline(gate.baseline) if gate.baseline is not None else None
    outcomes: dict[str, _Outcome | InputError] = {}
    specs, policies = [], {}
    for host in hosts:
        try:
            spec, policies[host.name] = args.target(host)
        except InputError as exc:
            outcomes[host.name] = exc
        else:
            specs.append(spec)
    if not specs:
        return outcomes
    if gate.wait and not any(policies.values()):
        raise OptionError(
            "nothing to wait for: wait=True needs expectations, e.g. expect_open='8080' as a "
            f"task argument or {INVENTORY_KEY}: {{expect_open: '8080'}} in the inventory"
        )
    # every spec has its own ports; the first one's stand in for the request's default
    default = specs[0].ports or args.ports
    request = build_request(specs, default, family=args.family, **args.options)
    aligned = [policies[t.name] for t in request.targets]
    audit = run_audit(
        request,
        aligned if any(aligned) else None,
        baseline=baseline,
        wait=gate.wait,
        wait_timeout=gate.wait_timeout,
        interval=gate.interval,
        recheck=gate.recheck,
        progress=progress,
        scanner=scan,  # looked up now: tests record the engine's runs
    )
    if gate.report is not None:
        try:
            Path(gate.report).write_text(report_to_json(audit))
        except OSError as exc:
            raise InputError(
                f"cannot write the report {str(gate.report)!r}: {exc.strerror}"
            ) from None
    for index, result in enumerate(audit.report.hosts):
        outcomes[result.name] = _outcome(audit, index)
    return outcomes


def _outcome(audit: Audit, index: int) -> _Outcome:
    """One host's entry, with its verdict, drift and wait, and whether it failed."""
    host = audit.report.hosts[index]
    verdict = audit.verdict(index)
    entry = PortscanResult(host_to_dict(host, verdict, audit.drift))
    failed = audit.failed(index)
    if audit.wait is not None and verdict is not None:
        unmet = audit.unmet(index)
        entry["wait"] = {
            "converged": not unmet,
            "elapsed": audit.wait.elapsed,
            "rounds": audit.wait.rounds,
            "unmet": [{"port": u.port, "expected": u.expected, "actual": u.actual} for u in unmet],
        }
    return _Outcome(entry, failed)


def _input_failure(host: Host, error: InputError) -> Result:
    return Result(host=host, result=str(error), failed=True, exception=error)


def _progress_callback(
    option: ProgressOption, processors: Iterable[object]
) -> Callable[[Progress], None] | None:
    if option is True:
        return ProgressBar(force=True)
    if option is None:
        return next((p for p in processors if isinstance(p, ProgressBar)), None)
    return option or None


# -- arguments and inventory data ----------------------------------------------------------------
@dataclass(frozen=True)
class _Audit:
    """The run-wide audit arguments: baseline, wait, report."""

    baseline: PathArg | None
    recheck: int
    wait: bool
    wait_timeout: float
    interval: float
    report: PathArg | None

    def check(self) -> None:
        if isinstance(self.recheck, bool) or not isinstance(self.recheck, int) or self.recheck < 0:
            raise OptionError(
                f"invalid recheck {self.recheck!r}: use how many times to re-probe a "
                "difference from the baseline, 0 or more, e.g. recheck=3"
            )
        for name in ("wait_timeout", "interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise OptionError(
                    f"invalid {name} {value!r}: use a number of seconds > 0, "
                    "e.g. wait_timeout=60, interval=2"
                )


@dataclass
class _Args:
    ports: PortsSpec
    exclude_ports: PortsSpec | None
    family: AddressFamily
    progress: ProgressOption
    options: dict[str, Any]
    expectations: dict[str, PortsSpec]  # the task's, None left out
    audit: _Audit
    _parsed: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _policies: dict[str, Policy] = field(default_factory=dict)

    def key(self) -> str:
        """Which runs may share a batch: those with the same arguments."""
        return repr(
            (
                self.ports,
                self.exclude_ports,
                self.family,
                self.progress,
                sorted(self.options.items()),
                sorted(self.expectations.items()),
                self.audit,
            )
        )

    def target(self, host: Host) -> tuple[TargetSpec, Policy]:
        """The host as a TargetSpec, and its policy; raises an InputError that names the host."""
        settings = _settings(host)
        ports = settings.get("ports", self.ports)
        exclude = settings.get("exclude_ports", self.exclude_ports)
        own = not settings.keys().isdisjoint(("ports", "exclude_ports"))
        where = " (inventory data)" if own else ""
        cache_key = repr((ports, exclude))
        if cache_key not in self._parsed:
            try:
                self._parsed[cache_key] = parse_ports(ports, exclude=exclude)
            except InputError as exc:
                raise type(exc)(f"host {host.name!r}{where}: {exc}") from None
        policy = self._policy(host.name, settings)
        address = host.hostname or host.name
        self._check_address(host.name, address)
        return TargetSpec(host.name, address, self._parsed[cache_key]), policy

    def _policy(self, name: str, settings: Mapping[str, Any]) -> Policy:
        """The host's expectations: each key from the inventory, else from the task."""
        raw = {**self.expectations, **{k: settings[k] for k in POLICY_KEYS if k in settings}}
        cache_key = repr(sorted(raw.items()))
        if cache_key not in self._policies:
            where = "" if settings.keys().isdisjoint(POLICY_KEYS) else " (inventory data)"
            # the policy's errors name the host; only good policies are shared between hosts
            self._policies[cache_key] = parse_policy(raw, where=f"host {name!r}{where}")
        return self._policies[cache_key]

    def _check_address(self, name: str, address: str) -> None:
        try:  # syntax only: the engine resolves names, all at once
            parse_targets([address], family=self.family, max_hosts=1, resolver=_no_dns)
        except InputError as exc:
            raise TargetSpecError(
                f"host {name!r}: hostname {address!r} is not one host: {exc}"
            ) from None


def _no_dns(name: str, family: int) -> list[str]:  # noqa: ARG001 - the resolver signature
    raise OSError("not resolved while checking syntax")


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
