"""Baselines and drift: a saved JSON report compared with a new scan.

A port whose state differs is probed again, slowly and a few times, before it is called drift,
so a momentary blip (a service restarting, a lost SYN) is not reported.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nornir_portscan.audit.policy import Policy
from nornir_portscan.errors import InputError
from nornir_portscan.models import (
    HostResult,
    PortState,
    ScanOptions,
    ScanReport,
    ScanRequest,
    Target,
)
from nornir_portscan.ports import parse_ports

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
    """Read a JSON report saved earlier; raises ``InputError`` when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"cannot read baseline {str(path)!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"baseline {str(path)!r} is not JSON: {exc}") from None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, list) or not all(
        isinstance(h, dict)
        and isinstance(h.get("name"), str)
        and isinstance(h.get("ports", []), list)
        for h in hosts
    ):
        raise InputError(
            f"baseline {str(path)!r} is not a portscan JSON report: save one with "
            "'portscan --json baseline.json ...'"
        )
    return dict(data)


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
