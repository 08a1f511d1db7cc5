"""The Nornir task ``portscan``: one engine run scans every host of an ``nr.run``.

    >>> from nornir_portscan import portscan
    >>> result = nr.run(task=portscan, ports="22,443", timeout=0.5)  # doctest: +SKIP

How one run is shared. Nornir calls the task once per host, from one thread (serial runner) or
many (``ThreadedRunner``). The first call of a run claims a *batch*: every host of the run's
inventory (``task.nornir.inventory.hosts``, so ``nr.filter`` applies) that is in the same
``failed_hosts`` class as the caller, since a run takes either the good or the failed hosts
(both with ``on_good=True, on_failed=True``: then it is two batches). That call builds one
request and runs the engine once; every other host's call claims its own entry and waits for
the scan. Batches are keyed by the Nornir object (weakly) and by the task arguments, so
concurrent ``nr.run`` calls with other arguments or another filter never mix. An entry is
claimed once: a host that finds its entry taken starts a new batch, so a repeated run scans
again. A batch leaves the registry when its last entry is claimed, when its scan is interrupted,
when its Nornir object goes away, or ``FRESH_FOR`` seconds after its scan if some hosts never
came for their entry (``portscan`` as a subtask of only some hosts).

Failure semantics: ``failed`` is true for a host error (unresolved, timed out, nothing but local
errors). A closed or filtered port is data. Bad input (task arguments, or one host's inventory
data) gives that host a failed ``Result`` whose ``exception`` is the ``InputError`` and whose
``result`` is its one-line message; the other hosts are still scanned.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nornir.core.task import Result

from nornir_portscan.errors import InputError, OptionError, ScanError, TargetSpecError
from nornir_portscan.models import AddressFamily, HostResult, HostStatus, Progress
from nornir_portscan.ports import format_ports, parse_ports
from nornir_portscan.processors import ProgressBar
from nornir_portscan.report import host_to_dict
from nornir_portscan.scanner import TargetSpec, build_request, scan
from nornir_portscan.targets import parse_targets

if TYPE_CHECKING:
    from nornir.core import Nornir
    from nornir.core.inventory import Host
    from nornir.core.task import Task

__all__ = ["FRESH_FOR", "HOST_SETTINGS", "INVENTORY_KEY", "PortscanResult", "portscan"]

INVENTORY_KEY = "portscan"
"""The inventory data key (hosts, groups, defaults) holding per-host settings."""
HOST_SETTINGS = ("ports", "exclude_ports")
"""The settings allowed under ``INVENTORY_KEY``."""
FRESH_FOR = 60.0
"""Seconds after its scan after which a batch whose hosts did not all read it is dropped."""

PortsSpec = str | Sequence[int | str]
ProgressOption = bool | Callable[[Progress], None] | None
_FAILED_STATUSES = frozenset({HostStatus.UNRESOLVED, HostStatus.TIMED_OUT, HostStatus.ERROR})


class PortscanResult(dict[str, Any]):
    """A host's report entry (see ``report.host_to_dict``) that prints as a one-line summary.

    ``print_result`` shows a dict result with ``pprint``, which uses ``repr``; this keeps the
    output to one line per host. ``dict(result)`` or ``json.dumps(result)`` give all of it.
    """

    def __repr__(self) -> str:
        address = self["address"] or self["name"]
        if self["error"] and not self["ports"]:
            return f"{address} {self['status']}: {self['error']}"
        parts = [f"open {format_ports(self['open_ports']) or 'none'}"]
        if self["filtered_ports"]:
            parts.append(f"filtered {format_ports(self['filtered_ports'])}")
        parts.append(f"closed {self['closed_count']}")
        if self["error_ports"]:
            parts.append(f"errors {format_ports(self['error_ports'])}")
        if self["error"]:
            parts.append(self["error"])
        return f"{address} {self['status']}: {'; '.join(parts)}"

    __str__ = __repr__


def portscan(
    task: Task,
    ports: PortsSpec = "top1000",
    *,
    exclude_ports: PortsSpec | None = None,
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
        family: ``"ipv4"`` or ``"ipv6"``: which address of a hostname to scan.
        progress: ``True`` draws a progress bar on stderr, a callable gets each ``Progress``,
            ``False`` shows none; ``None`` uses a ``ProgressBar`` processor if the run has one.
        **options: The engine's options: ``timeout``, ``retries``, ``rate``, ``concurrency``,
            ``processes``, ``host_timeout``, ``include_closed``, ...

    Returns:
        A ``Result`` whose ``result`` is a ``PortscanResult``, ``failed`` for a host error.
    """
    host = task.host
    args = _Args(ports, exclude_ports, family, progress, options)
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
    return Result(
        host=host,
        result=PortscanResult(host_to_dict(outcome)),
        failed=outcome.status in _FAILED_STATUSES,
    )


# -- the shared run ------------------------------------------------------------------------------
@dataclass(eq=False)
class _Batch:
    pending: set[str]  # hosts that have not claimed their entry yet
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: dict[str, HostResult | InputError] = field(default_factory=dict)
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
) -> dict[str, HostResult | InputError]:
    if args.family not in ("ipv4", "ipv6"):
        raise OptionError(
            f"invalid family {args.family!r}: the Nornir task scans one address "
            "per host, use 'ipv4' or 'ipv6', e.g. family='ipv4'"
        )
    outcomes: dict[str, HostResult | InputError] = {}
    specs = []
    for host in hosts:
        try:
            specs.append(args.target(host))
        except InputError as exc:
            outcomes[host.name] = exc
    if specs:
        # every spec has its own ports; the first one's stand in for the request's default
        default = specs[0].ports or args.ports
        request = build_request(specs, default, family=args.family, **args.options)
        for result in scan(request, progress=progress).hosts:
            outcomes[result.name] = result
    return outcomes


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
@dataclass
class _Args:
    ports: PortsSpec
    exclude_ports: PortsSpec | None
    family: AddressFamily
    progress: ProgressOption
    options: dict[str, Any]
    _parsed: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def key(self) -> str:
        """Which runs may share a batch: those with the same arguments."""
        return repr(
            (
                self.ports,
                self.exclude_ports,
                self.family,
                self.progress,
                sorted(self.options.items()),
            )
        )

    def target(self, host: Host) -> TargetSpec:
        """The host as a TargetSpec; raises an InputError that names the host."""
        settings = _settings(host)
        ports = settings.get("ports", self.ports)
        exclude = settings.get("exclude_ports", self.exclude_ports)
        where = "" if settings.keys().isdisjoint(HOST_SETTINGS) else " (inventory data)"
        cache_key = repr((ports, exclude))
        if cache_key not in self._parsed:
            try:
                self._parsed[cache_key] = parse_ports(ports, exclude=exclude)
            except InputError as exc:
                raise type(exc)(f"host {host.name!r}{where}: {exc}") from None
        address = host.hostname or host.name
        self._check_address(host.name, address)
        return TargetSpec(host.name, address, self._parsed[cache_key])

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
                f"{' or '.join(HOST_SETTINGS)}, e.g. {INVENTORY_KEY}: {{ports: '22'}}"
            )
        merged.update(value)
    return merged
