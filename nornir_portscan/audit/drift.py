"""Baselines and drift: a saved JSON report compared with a new scan.

A port whose state differs is probed again, slowly and a few times, before it is called drift,
so a momentary blip (a service restarting, a lost SYN) is not reported.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nornir_portscan.audit.policy import Policy
from nornir_portscan.errors import InputError
from nornir_portscan.inputfile import read_text, show
from nornir_portscan.models import (
    HostResult,
    PortState,
    ScanOptions,
    ScanReport,
    ScanRequest,
    Target,
)
from nornir_portscan.ports import MAX_PORT, parse_ports

__all__ = [
    "Drift",
    "HostDrift",
    "PortChange",
    "compare",
    "confirm",
    "load_baseline",
    "unexpected_changes",
]

HostKey = tuple[str, str | None]  # (name, address)


@dataclass(frozen=True, slots=True)
class PortChange:
    """A port whose state is not what it was."""

    port: int
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class HostDrift:
    """How one host changed. ``opened``: now open, not before; ``closed``: open before, not now;
    ``changed``: every other change of state (closed <-> filtered)."""

    name: str
    address: str | None
    opened: tuple[int, ...] = ()
    closed: tuple[int, ...] = ()
    changed: tuple[PortChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.opened or self.closed or self.changed)

    @property
    def changes(self) -> tuple[PortChange, ...]:
        """Every change, opened and closed ones included, by port."""
        return tuple(sorted(self._all(), key=lambda c: c.port))

    def _all(self) -> list[PortChange]:
        return [
            *(PortChange(p, "not open", "open") for p in self.opened),
            *(PortChange(p, "open", "not open") for p in self.closed),
            *self.changed,
        ]


@dataclass(frozen=True, slots=True)
class Drift:
    """A scan compared with a baseline."""

    hosts: tuple[HostDrift, ...]  # hosts in both, with at least one change
    appeared: tuple[str, ...] = ()  # "name (address)" in the scan, not in the baseline
    disappeared: tuple[str, ...] = ()  # in the baseline, not in the scan
    rechecked: int = 0  # differing ports probed again
    confirmed: int = 0  # of those, still different every time

    def __bool__(self) -> bool:
        return bool(self.hosts or self.appeared or self.disappeared)

    def in_baseline(self, name: str, address: str | None) -> bool:
        """Whether the host was in the baseline (it did not appear since)."""
        return _label((name, address)) not in self.appeared

    def for_host(self, name: str, address: str | None) -> HostDrift | None:
        """The drift of one host, if it changed."""
        for host in self.hosts:
            if (host.name, host.address) == (name, address):
                return host
        return None


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON report saved earlier; raises ``InputError`` when it is not one.

    Everything ``compare`` reads is checked here, so a bad baseline fails before the scan, not
    after it: the report version (1.x), and each host's name, address, scanned ports and port
    entries (a port 1-65535 and a state), each host and each port once.
    """
    text = read_text(path, "baseline", limit=_MAX_BASELINE_BYTES, hint=_SAVE_ONE)
    where = f"baseline {str(path)!r}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{where} is not JSON: {exc}") from None
    except RecursionError:
        raise InputError(
            f"{where}: its JSON nests too deeply to be a report; {_SAVE_ONE}"
        ) from None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if isinstance(data, dict) and "version" in data:
        _check_version(data["version"], where)
    if not isinstance(hosts, list):
        raise InputError(
            f"{where} is not a portscan JSON report: save one with "
            "'portscan --json baseline.json ...'"
        )
    if "version" not in data:
        raise InputError(f"{where}: 'version' is missing; {_SAVE_ONE}")
    seen: dict[HostKey, int] = {}
    for number, entry in enumerate(hosts, start=1):
        key = _check_host(entry, f"{where}: host {number}")
        if key in seen:
            raise InputError(
                f"{where}: host {number} ({show(key[0])}): listed twice (also host "
                f"{seen[key]}, with the same name and address); {_SAVE_ONE}"
            )
        seen[key] = number
    return dict(data)


_MAX_BASELINE_BYTES = 128 * 2**20
_SAVE_ONE = "save a baseline with 'portscan --json baseline.json ...'"
# The major version of reports.data.REPORT_VERSION (imported from there, it would be a cycle):
# minor versions only add keys, so any 1.x report is read.
_READABLE_VERSIONS = re.compile(r"1\.[0-9]+")
_STATES = tuple(state.value for state in PortState)
_PORT_SPEC = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")
_HOST_KEYS = ("name", "address", "scanned_ports", "ports")


def _check_version(version: Any, where: str) -> None:
    if not isinstance(version, str):
        raise InputError(
            f"{where}: 'version' must be a string such as '1.0', not {show(version)}; {_SAVE_ONE}"
        )
    if not _READABLE_VERSIONS.fullmatch(version):
        raise InputError(
            f"{where}: report version {show(version)} is not supported: this nornir-portscan "
            f"reads report versions 1.x; {_SAVE_ONE}"
        )


def _check_host(entry: Any, where: str) -> HostKey:
    """Check one host entry of a baseline; its (name, address)."""
    if not isinstance(entry, dict):
        raise InputError(
            f"{where} must be an object with {', '.join(_HOST_KEYS[:-1])} and {_HOST_KEYS[-1]}, "
            f"not {show(entry)}; {_SAVE_ONE}"
        )
    name = _required(entry, "name", where)
    if not isinstance(name, str) or not name:
        raise _bad(where, "name", "a non-empty string", name)
    where = f"{where} ({show(name)})"
    address = _required(entry, "address", where)
    if address is not None and not _is_address(address):
        raise _bad(where, "address", "an IP address or null", address)
    scanned = _required(entry, "scanned_ports", where)
    if not isinstance(scanned, str) or not _is_port_spec(scanned):
        raise _bad(where, "scanned_ports", "a port spec such as '22,80-90'", scanned)
    ports = _required(entry, "ports", where)
    if not isinstance(ports, list):
        raise _bad(where, "ports", "a list of port entries", ports)
    seen: dict[int, int] = {}
    for number, port in enumerate(ports, start=1):
        at = f"{where} port entry {number}"
        if not isinstance(port, dict):
            raise InputError(
                f"{at} must be an object with 'port' and 'state', not {show(port)}; {_SAVE_ONE}"
            )
        value = _required(port, "port", at)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PORT:
            raise _bad(at, "port", f"a whole number 1-{MAX_PORT}", value)
        state = _required(port, "state", at)
        if state not in _STATES:
            raise _bad(at, "state", f"{', '.join(_STATES[:-1])} or {_STATES[-1]}", state)
        if value in seen:
            raise InputError(
                f"{at}: port {value} is listed twice (also port entry {seen[value]}); {_SAVE_ONE}"
            )
        seen[value] = number
    return name, address


def _required(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise InputError(f"{where}: {key!r} is missing; {_SAVE_ONE}")
    return entry[key]


def _bad(where: str, key: str, form: str, value: Any) -> InputError:
    return InputError(f"{where}: {key!r} must be {form}, not {show(value)}; {_SAVE_ONE}")


def _is_address(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_port_spec(spec: str) -> bool:
    """A port spec as a report writes it: numbers and ranges only, nothing to look up."""
    if not spec:
        return True
    if not _PORT_SPEC.fullmatch(spec) or len(spec) > 6 * MAX_PORT:
        return False
    try:
        parse_ports(spec)
    except InputError:
        return False
    return True


def _baseline_states(entry: Mapping[str, Any]) -> dict[int, str]:
    """Port -> state for every port the baseline host entry knows."""
    states: dict[int, str] = {}
    scanned = entry.get("scanned_ports") or ""
    if scanned:
        states.update(dict.fromkeys(parse_ports(scanned), PortState.CLOSED.value))
    for port in entry.get("ports", []):
        states[int(port["port"])] = str(port["state"])
    return states


def _current_states(host: HostResult) -> dict[int, str]:
    states = dict.fromkeys(host.scanned, PortState.CLOSED.value)
    states.update((p.port, p.state.value) for p in host.ports)
    return states


def _label(key: HostKey) -> str:
    name, address = key
    return name if address in (None, name) else f"{name} ({address})"


def compare(baseline: Mapping[str, Any], report: ScanReport) -> Drift:
    """Every difference between ``baseline`` (a JSON report) and ``report``, unconfirmed."""
    before = _match_by_address(
        {(h["name"], h.get("address")): h for h in baseline["hosts"] if h.get("address")},
        {(h.name, h.address) for h in report.hosts if h.address},
    )
    after = {(h.name, h.address): h for h in report.hosts if h.address}
    drifts = []
    for key, host in after.items():
        if key not in before:
            continue
        old, new = _baseline_states(before[key]), _current_states(host)
        opened, closed, changed = [], [], []
        for port in sorted(old.keys() & new.keys()):
            was, now = old[port], new[port]
            if was == now or PortState.ERROR.value in (was, now):
                continue  # an error says nothing about the port
            if now == PortState.OPEN.value:
                opened.append(port)
            elif was == PortState.OPEN.value:
                closed.append(port)
            else:
                changed.append(PortChange(port, was, now))
        drift = HostDrift(host.name, host.address, tuple(opened), tuple(closed), tuple(changed))
        if drift:
            drifts.append(drift)
    return Drift(
        tuple(drifts),
        appeared=tuple(_label(k) for k in after if k not in before),
        disappeared=tuple(_label(k) for k in before if k not in after),
    )


def _match_by_address(
    before: dict[HostKey, Mapping[str, Any]], current: set[HostKey]
) -> dict[HostKey, Mapping[str, Any]]:
    """Pair a baseline host saved under another name (``portscan --json 127.0.0.11``) with the
    current host of the same address (inventory host ``web1``) where that is one to one."""
    missing: dict[str | None, list[HostKey]] = {}
    for key in current - before.keys():
        missing.setdefault(key[1], []).append(key)
    orphans: dict[str | None, list[HostKey]] = {}
    for key in before.keys() - current:
        orphans.setdefault(key[1], []).append(key)
    matched = dict(before)
    for address, old in orphans.items():
        new = missing.get(address, [])
        if len(old) == 1 and len(new) == 1:
            matched[new[0]] = matched.pop(old[0])
    return matched


def unexpected_changes(drift: HostDrift, policy: Policy | None) -> tuple[int, ...]:
    """The changed ports the host's expectations do not explain. A change that makes an
    expectation come true (a port expected open that opened) is the point of a change, not
    drift to fail on; without a policy every change is unexpected."""
    return tuple(c.port for c in drift.changes if not _foreseen(c, policy))


def _foreseen(change: PortChange, policy: Policy | None) -> bool:
    want = policy.expected(change.port) if policy is not None else None
    if want is None:
        return False
    if change.after == "not open":  # open before; the verdict checks closed vs filtered
        return want is not PortState.OPEN
    return want.value == change.after


Rescan = Callable[[ScanRequest], ScanReport]


def confirm(
    drift: Drift,
    options: ScanOptions,
    rescan: Rescan,
    *,
    times: int = 3,
    interval: float = 0.5,
) -> Drift:
    """Probe every differing port again ``times`` times, ``interval`` seconds apart, gently; keep
    only the changes seen every time."""
    targets = tuple(
        Target(h.name, h.address, tuple(c.port for c in h.changes)) for h in drift.hosts
    )
    if not targets:
        return drift
    gentle = ScanOptions(
        timeout=options.timeout,
        min_timeout=options.min_timeout,
        retries=max(2, options.retries),
        rate=min(options.rate or 100.0, 100.0),
        concurrency=min(options.concurrency, 50),
        processes=1,
    )
    request = ScanRequest(targets, (), gentle)
    held: dict[HostKey, set[int]] = {
        (h.name, h.address): {c.port for c in h.changes} for h in drift.hosts
    }
    for attempt in range(times):
        if attempt:
            time.sleep(interval)
        report = rescan(request)
        for host, target in zip(report.hosts, targets, strict=True):
            key = (target.name, target.address)
            now = _current_states(host)
            wanted = {c.port: c.after for c in _host(drift, key).changes}
            held[key] = {p for p in held[key] if _same(now.get(p), wanted[p])}
    kept = []
    for old in drift.hosts:
        ports = held[(old.name, old.address)]
        trimmed = HostDrift(
            old.name,
            old.address,
            tuple(p for p in old.opened if p in ports),
            tuple(p for p in old.closed if p in ports),
            tuple(c for c in old.changed if c.port in ports),
        )
        if trimmed:
            kept.append(trimmed)
    rechecked = sum(len(t.ports) for t in targets)
    confirmed = sum(len(h.changes) for h in kept)
    return Drift(tuple(kept), drift.appeared, drift.disappeared, rechecked, confirmed)


def _host(drift: Drift, key: HostKey) -> HostDrift:
    found = drift.for_host(*key)
    assert found is not None
    return found


def _same(now: str | None, after: str) -> bool:
    if now is None:
        return False
    if after == "not open":
        return now != PortState.OPEN.value
    return now == after
