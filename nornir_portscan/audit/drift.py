"""Baselines and drift: a saved JSON report compared with a new scan.

A port whose state differs is probed again, slowly and a few times, before it is called drift,
so a momentary blip (a service restarting, a lost SYN) is not reported.

Hosts are compared per vantage: a host seen from one vantage is compared with the same host
seen from the same vantage only (a merged report of many vantages against a merged baseline,
``compare_states``). A vantage on one side only is reported once, as a vantage that appeared
or disappeared, not as every host of it.

UDP ports (port keys) drift like TCP ones, with one more state, ``open|filtered`` (no answer):
``open|filtered -> open`` is a port that opened (a new exposure); ``open -> open|filtered`` is
not a port that closed: the port no longer answers, which proves nothing closed, so it is a
``changed`` entry (re-checked like every change, and drift when confirmed), never in
``closed``. Every other change to or from ``open|filtered`` is a ``changed`` entry too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nornir_portscan.addresses import canonical_address
from nornir_portscan.audit.policy import Policy, port_text
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
from nornir_portscan.ports import MAX_PORT, UDP

__all__ = [
    "Drift",
    "HostDrift",
    "PortChange",
    "change_text",
    "compare",
    "compare_states",
    "confirm",
    "confirm_with",
    "load_baseline",
    "report_spec_keys",
    "unexpected_changes",
]

HostKey = tuple[str, str | None]  # (name, address)
SeenKey = tuple[str, str | None, str | None]  # (name, address, vantage)


@dataclass(frozen=True, slots=True)
class PortChange:
    """A port (a port key) whose state is not what it was."""

    port: int
    before: str
    after: str


def change_text(change: PortChange) -> str:
    """``port 22 open -> not open``, ``port 53/udp open -> open|filtered``."""
    return f"port {port_text(change.port)} {change.before} -> {change.after}"


@dataclass(frozen=True, slots=True)
class HostDrift:
    """How one host changed (port keys). ``opened``: now open, not before; ``closed``: open
    before, now closed or filtered; ``changed``: every other change of state (closed <->
    filtered, and every change to or from ``open|filtered``: ``open -> open|filtered`` too)."""

    name: str
    address: str | None
    opened: tuple[int, ...] = ()
    closed: tuple[int, ...] = ()
    changed: tuple[PortChange, ...] = ()
    vantage: str | None = None  # where both were seen from

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
    # "name (address)" (and " from VANTAGE") in the scan, not in the baseline; a vantage not in
    # the baseline at all is one entry, "vantage 'dc2' (8 hosts)"
    appeared: tuple[str, ...] = ()
    disappeared: tuple[str, ...] = ()  # in the baseline, not in the scan
    rechecked: int = 0  # differing ports probed again
    confirmed: int = 0  # of those, still different every time
    vantages_appeared: tuple[str | None, ...] = ()  # in the scan only (None: no vantage)
    vantages_disappeared: tuple[str | None, ...] = ()  # in the baseline only
    # changes a re-check could not answer (its scanner gone, a local error), none contradicted:
    # neither confirmed nor dismissed
    unchecked: tuple[HostDrift, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.hosts or self.appeared or self.disappeared)

    def in_baseline(self, name: str, address: str | None, vantage: str | None = None) -> bool:
        """Whether the host was in the baseline, seen from ``vantage`` (it did not appear
        since)."""
        return vantage not in self.vantages_appeared and (
            _label((name, address, vantage)) not in self.appeared
        )

    def for_host(
        self, name: str, address: str | None, vantage: str | None = None
    ) -> HostDrift | None:
        """The drift of one host seen from ``vantage``, if it changed."""
        for host in self.hosts:
            if (host.name, host.address, host.vantage) == (name, address, vantage):
                return host
        return None


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON report saved earlier; raises ``InputError`` when it is not one.

    Everything ``compare`` reads is checked here, so a bad baseline fails before the scan, not
    after it: the report version (1.x), and each host's name, address, scanned ports and port
    entries (a port 1-65535, a protocol ``tcp`` or ``udp`` when given, and a state), each host
    and each port once.
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
    seen: dict[SeenKey, int] = {}
    for number, entry in enumerate(hosts, start=1):
        key = _check_host(entry, f"{where}: host {number}")
        if key in seen:
            raise InputError(
                f"{where}: host {number} ({show(key[0])}): listed twice (also host "
                f"{seen[key]}, with the same name, address and vantage); {_SAVE_ONE}"
            )
        seen[key] = number
    return dict(data)


_MAX_BASELINE_BYTES = 128 * 2**20
_SAVE_ONE = "save a baseline with 'portscan --json baseline.json ...'"
# The major version of reports.data.REPORT_VERSION (imported from there, it would be a cycle):
# minor versions only add keys, so any 1.x report is read.
_READABLE_VERSIONS = re.compile(r"1\.[0-9]+")
_STATES = tuple(state.value for state in PortState)
_PORT_SPEC = re.compile(r"([TU]:)?[0-9]+(-[0-9]+)?(,([TU]:)?[0-9]+(-[0-9]+)?)*")
_PROTOCOLS = ("tcp", "udp")
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


def _check_host(entry: Any, where: str) -> SeenKey:
    """Check one host entry of a baseline; its (name, address, vantage)."""
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
    vantage = entry.get("vantage")
    if vantage is not None and (not isinstance(vantage, str) or not vantage):
        raise _bad(where, "vantage", "a vantage label or null", vantage)
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
        protocol = port.get("protocol", "tcp")
        if protocol not in _PROTOCOLS:
            raise _bad(at, "protocol", "tcp or udp", protocol)
        state = _required(port, "state", at)
        if state not in _STATES:
            raise _bad(at, "state", f"{', '.join(_STATES[:-1])} or {_STATES[-1]}", state)
        key = value + UDP if protocol == "udp" else value
        if key in seen:
            raise InputError(
                f"{at}: port {port_text(key)} is listed twice (also port entry {seen[key]}); "
                f"{_SAVE_ONE}"
            )
        seen[key] = number
    return _canonical(entry, "name"), _canonical(entry, "address"), vantage


def _canonical(entry: dict[str, Any], key: str) -> Any:
    """``entry[key]`` in the canonical spelling if it is an address (made so in ``entry``):
    another spelling (mapped, upper case, uncompressed) is the same host."""
    value = entry[key]
    if _is_address(value):
        with contextlib.suppress(ValueError):  # a zone with no interface here: as it is
            entry[key] = value = canonical_address(value)
    return value


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
    """A port spec as a report writes it: numbers and ranges only (UDP ones after ``U:``),
    nothing to look up."""
    if not spec:
        return True
    if not _PORT_SPEC.fullmatch(spec) or len(spec) > 12 * MAX_PORT:
        return False
    try:
        report_spec_keys(spec)
    except ValueError:
        return False
    return True


def report_spec_keys(spec: str) -> list[int]:
    """The port keys of a port spec as a report writes it (``format_ports``): numbers and
    ranges, the ones after ``U:`` UDP (up to a ``T:``). Raises ``ValueError`` for anything
    else; a spec that repeats a port is refused.

    >>> report_spec_keys("22,80-81,U:53,161")
    [22, 80, 81, 1000053, 1000161]
    """
    keys: list[int] = []
    base = 0
    for item in spec.split(",") if spec else ():
        if item[:2] in ("T:", "U:"):
            base = UDP if item[0] == "U" else 0
        first, _, last = item.removeprefix("T:").removeprefix("U:").partition("-")
        low, high = int(first), int(last or first)
        if not 1 <= low <= high <= MAX_PORT:
            raise ValueError(f"bad port range {item!r}")
        keys.extend(range(base + low, base + high + 1))
    if len(set(keys)) != len(keys):
        raise ValueError("a port is listed twice")
    return keys


def _baseline_states(entry: Mapping[str, Any]) -> dict[int, str]:
    """Port key -> state for every port the baseline host entry knows."""
    states: dict[int, str] = {}
    scanned = entry.get("scanned_ports") or ""
    if scanned:
        states.update(dict.fromkeys(report_spec_keys(scanned), PortState.CLOSED.value))
    for port in entry.get("ports", []):
        key = int(port["port"]) + (UDP if port.get("protocol") == "udp" else 0)
        states[key] = str(port["state"])
    return states


def _current_states(host: HostResult) -> dict[int, str]:
    states = dict.fromkeys(host.scanned, PortState.CLOSED.value)
    states.update((p.key, p.state.value) for p in host.ports)
    return states


def _label(key: SeenKey) -> str:
    name, address, vantage = key
    shown = name if address in (None, name) else f"{name} ({address})"
    return shown if vantage is None else f"{shown} from {vantage}"


def _vantage_label(vantage: str | None, hosts: int) -> str:
    where = "no vantage" if vantage is None else f"vantage {vantage!r}"
    return f"{where} ({hosts} host{'' if hosts == 1 else 's'})"


def compare(baseline: Mapping[str, Any], report: ScanReport) -> Drift:
    """Every difference between ``baseline`` (a JSON report) and ``report``, unconfirmed."""
    after = {(h.name, h.address, h.vantage): _current_states(h) for h in report.hosts}
    return compare_states(baseline, after)


def compare_states(
    baseline: Mapping[str, Any], after: Mapping[SeenKey, Mapping[int, str]]
) -> Drift:
    """Every difference between ``baseline`` (a JSON report, maybe of many vantages) and the
    port states of each host now, by (name, address, vantage); unconfirmed. Hosts without an
    address are left out; ``error`` says nothing about a port."""
    before_all = {
        (h["name"], h.get("address"), h.get("vantage")): h
        for h in baseline["hosts"]
        if h.get("address")
    }
    after = {key: states for key, states in after.items() if key[1]}
    old_vantages = {key[2] for key in before_all}
    new_vantages = {key[2] for key in after}
    gone = _sorted_vantages(old_vantages - new_vantages)
    new = _sorted_vantages(new_vantages - old_vantages)
    before = _match_by_address(
        {k: h for k, h in before_all.items() if k[2] in new_vantages},
        {k for k in after if k[2] in old_vantages},
    )
    drifts = []
    for key, now in after.items():
        if key not in before:
            continue
        old = _baseline_states(before[key])
        opened, closed, changed = [], [], []
        for port in sorted(old.keys() & now.keys()):
            was, state = old[port], now[port]
            if was == state or PortState.ERROR.value in (was, state):
                continue  # an error says nothing about the port
            if state == PortState.OPEN.value:
                opened.append(port)
            elif was == PortState.OPEN.value and state != PortState.OPEN_FILTERED.value:
                closed.append(port)  # silence after an answer proves nothing closed
            else:
                changed.append(PortChange(port, was, state))
        name, address, vantage = key
        drift = HostDrift(name, address, tuple(opened), tuple(closed), tuple(changed), vantage)
        if drift:
            drifts.append(drift)
    count = _count_by_vantage
    return Drift(
        tuple(drifts),
        appeared=(
            *(_label(k) for k in after if k[2] in old_vantages and k not in before),
            *(_vantage_label(v, count(after, v)) for v in new),
        ),
        disappeared=(
            *(_label(k) for k in before if k not in after),
            *(_vantage_label(v, count(before_all, v)) for v in gone),
        ),
        vantages_appeared=new,
        vantages_disappeared=gone,
    )


def _sorted_vantages(vantages: set[str | None]) -> tuple[str | None, ...]:
    return tuple(sorted(vantages, key=lambda v: (v is not None, v or "")))


def _count_by_vantage(hosts: Mapping[SeenKey, Any], vantage: str | None) -> int:
    return sum(1 for key in hosts if key[2] == vantage)


def _match_by_address(
    before: dict[SeenKey, Mapping[str, Any]], current: set[SeenKey]
) -> dict[SeenKey, Mapping[str, Any]]:
    """Pair a baseline host saved under another name (``portscan --json 127.0.0.11``) with the
    current host of the same address (inventory host ``web1``), from the same vantage, where
    that is one to one."""
    missing: dict[tuple[str | None, str | None], list[SeenKey]] = {}
    for key in current - before.keys():
        missing.setdefault((key[1], key[2]), []).append(key)
    orphans: dict[tuple[str | None, str | None], list[SeenKey]] = {}
    for key in before.keys() - current:
        orphans.setdefault((key[1], key[2]), []).append(key)
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
    """Probe every differing port again ``times`` times, ``interval`` seconds apart, gently,
    from here (the scan's own vantage); keep only the changes seen every time."""
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
    rounds: dict[SeenKey, list[Mapping[int, str]]] = {}
    for attempt in range(times):
        if attempt:
            time.sleep(interval)
        report = rescan(request)
        for host, old in zip(report.hosts, drift.hosts, strict=True):
            rounds.setdefault((old.name, old.address, old.vantage), []).append(
                _current_states(host)
            )
    # here a re-check that could not answer is as good as one that did not see it again
    return dataclasses.replace(confirm_with(drift, rounds), unchecked=())


def confirm_with(drift: Drift, rounds: Mapping[SeenKey, Sequence[Mapping[int, str]]]) -> Drift:
    """``drift`` with only the changes every re-check of their host saw again. ``rounds``
    maps (name, address, vantage) to the port states each re-check from that vantage found.
    A change some re-check contradicted is a blip, and dropped; one that some re-check did
    not answer (no re-check of its host, an ``error``, a port missing) and none contradicted
    is neither confirmed nor dropped: it goes to ``unchecked``."""
    confirmed: dict[SeenKey, set[int]] = {}
    unanswered: dict[SeenKey, set[int]] = {}
    for old in drift.hosts:
        key = (old.name, old.address, old.vantage)
        seen = rounds.get(key) or ({},)
        for change in old.changes:
            said = [now.get(change.port) for now in seen]
            answered = [s for s in said if s not in (None, PortState.ERROR.value)]
            if not all(_same(s, change.after) for s in answered):
                continue  # contradicted: a blip
            kind = confirmed if len(answered) == len(said) else unanswered
            kind.setdefault(key, set()).add(change.port)
    kept, unchecked = _only(drift.hosts, confirmed), _only(drift.hosts, unanswered)
    return dataclasses.replace(
        drift,
        hosts=kept,
        rechecked=sum(len(h.changes) for h in drift.hosts),
        confirmed=sum(len(h.changes) for h in kept),
        unchecked=unchecked,
    )


def _only(hosts: Sequence[HostDrift], ports: Mapping[SeenKey, set[int]]) -> tuple[HostDrift, ...]:
    """``hosts`` with only the changes of ``ports``, each host that keeps one."""
    kept = []
    for old in hosts:
        mine = ports.get((old.name, old.address, old.vantage), set())
        trimmed = dataclasses.replace(
            old,
            opened=tuple(p for p in old.opened if p in mine),
            closed=tuple(p for p in old.closed if p in mine),
            changed=tuple(c for c in old.changed if c.port in mine),
        )
        if trimmed:
            kept.append(trimmed)
    return tuple(kept)


def _same(now: str | None, after: str) -> bool:
    if now is None:
        return False
    if after == "not open":
        return now != PortState.OPEN.value
    return now == after
