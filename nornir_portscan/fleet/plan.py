"""The plan of a scan shared by many scanners: who scans what, decided once, the same everywhere.

Each target is scanned from each of its vantages (default: every vantage). Within a vantage
whole hosts go to its scanners by rendezvous (highest-random-weight) hashing: a host goes to
the scanner whose weight for ``(host, scanner)`` is highest, so adding a k-th scanner moves about
1/k of the hosts and no host moves between the scanners that stay. With ``split_ports``, a
vantage with fewer hosts than scanners splits each host's ports the same way, port by port.

The weight is ``host_key * scanner_key mod 2**64`` (multiply-shift hashing): each key is a
BLAKE2b of the host or scanner name, the scanner's made odd and computed once per plan, so
a plan costs one hash per host and one multiplication per (host, scanner) pair.

The plan's ``hash`` covers the targets, the ports, the options and the scanners, in a canonical
order: reordering an inventory does not change it; changing what is scanned does.

    >>> plan = build_plan([Scanner("a"), Scanner("b")], [FleetTarget("127.0.0.1")], "22")
    >>> [len(s.targets) for s in plan.shards]
    [0, 1]
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nornir_portscan.errors import InputError
from nornir_portscan.models import ScanOptions
from nornir_portscan.ports import format_ports, parse_ports

__all__ = [
    "Assignment",
    "FleetTarget",
    "Plan",
    "Scanner",
    "Shard",
    "build_plan",
    "plan_from_dict",
    "plan_inputs",
    "rendezvous",
]

HostKey = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Scanner:
    """A machine that scans: its unique name and its vantage (None: the one default vantage).
    Several scanners may share a vantage; they split its targets."""

    name: str
    vantage: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"invalid scanner name {self.name!r}: give a name, e.g. 'scan1'")
        if self.vantage is not None and (not isinstance(self.vantage, str) or not self.vantage):
            raise InputError(
                f"invalid vantage {self.vantage!r} of scanner {self.name!r}: give a label, "
                "e.g. 'dc1', or None"
            )


@dataclass(frozen=True, slots=True)
class FleetTarget:
    """A host to scan: its name and address (None: the name is resolved where it is scanned),
    its own ports (empty: the plan's; a plan holds them sorted) and the vantages it is scanned
    from (empty: every one)."""

    name: str
    address: str | None = None
    ports: tuple[int, ...] = ()
    vantages: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"invalid target name {self.name!r}: give a name, e.g. 'web1'")
        if self.address is not None and not isinstance(self.address, str):
            raise InputError(
                f"invalid address {self.address!r} of target {self.name!r}: give a string, "
                "e.g. '127.0.0.1', or None"
            )
        if not isinstance(self.vantages, tuple) or not all(
            v is None or (isinstance(v, str) and v) for v in self.vantages
        ):
            raise InputError(
                f"invalid vantages {self.vantages!r} of target {self.name!r}: give a tuple of "
                "labels, e.g. ('dc1', 'dc2')"
            )

    @property
    def key(self) -> HostKey:
        """What identifies the host in a plan and in a merged report."""
        return (self.name, self.address)


@dataclass(frozen=True, slots=True)
class Assignment:
    """One host for one scanner: the ports it scans there (all of them unless split)."""

    name: str
    address: str | None
    ports: tuple[int, ...]

    @property
    def key(self) -> HostKey:
        return (self.name, self.address)


@dataclass(frozen=True, slots=True)
class Shard:
    """What one scanner scans, from its vantage."""

    scanner: str
    vantage: str | None
    targets: tuple[Assignment, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole plan: every shard (one per scanner, maybe empty) and the hash of its inputs."""

    hash: str
    scanners: tuple[Scanner, ...]  # canonical order: by vantage, then name
    targets: tuple[FleetTarget, ...]  # canonical order, vantages resolved
    ports: tuple[int, ...]
    options: ScanOptions
    split_ports: bool
    shards: tuple[Shard, ...] = field(repr=False)

    def shard(self, scanner: str) -> Shard:
        """The shard of ``scanner``; raises ``InputError`` for a scanner not in the plan."""
        for shard in self.shards:
            if shard.scanner == scanner:
                return shard
        names = ", ".join(repr(s.name) for s in self.scanners)
        raise InputError(f"no scanner {scanner!r} in the plan: use one of {names}")


def rendezvous(key: str, candidates: Iterable[str]) -> str:
    """The candidate with the highest weight for ``key`` (ties: the greater name).

    >>> rendezvous("127.0.0.1", ["0", "1"]) in ("0", "1")
    True
    """
    return _Rendezvous(candidates).owner(_item_key(key))


_MASK = 2**64 - 1


def _blake(text: str, person: bytes) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8, person=person).digest()
    return int.from_bytes(digest, "big")


def _item_key(text: str) -> int:
    return _blake(text, b"portscan-item")


class _Rendezvous:
    """Highest-random-weight choice among fixed candidates, their keys computed once."""

    __slots__ = ("_keys", "_names")

    def __init__(self, candidates: Iterable[str]) -> None:
        # the greater name first: ``index(max)`` then breaks a tie for it
        self._names = sorted(set(candidates), reverse=True)
        if not self._names:
            raise InputError("no candidates to choose from: give at least one")
        self._keys = [_blake(name, b"portscan-scanner") | 1 for name in self._names]

    def owner(self, item: int) -> str:
        weights = [item * key & _MASK for key in self._keys]
        return self._names[weights.index(max(weights))]


def _host_key(key: HostKey) -> str:
    return f"{key[0]}\0{key[1] or ''}"


def _vantage_order(vantage: str | None) -> tuple[bool, str]:
    return (vantage is not None, vantage or "")


def build_plan(
    scanners: Iterable[Scanner],
    targets: Iterable[FleetTarget],
    ports: str | Sequence[int | str] = "top1000",
    *,
    options: ScanOptions | None = None,
    split_ports: bool = False,
) -> Plan:
    """The deterministic plan of scanning ``targets`` with ``scanners``; raises ``InputError``
    (one line) on duplicate scanners or targets, or a vantage no scanner is in.

    Args:
        scanners: The scanners, each with its vantage.
        targets: The hosts, each with its own ports and vantages if any.
        ports: The ports of every target without its own (a port spec or a list).
        options: How each shard scans; part of the hash.
        split_ports: Split each host's ports over the scanners of a vantage that has fewer
            hosts than scanners (otherwise whole hosts only, and some scanners idle).
    """
    options = options or ScanOptions()
    default_ports = parse_ports(ports)
    fleet = sorted(scanners, key=lambda s: (_vantage_order(s.vantage), s.name))
    if not fleet:
        raise InputError("no scanners: give at least one, e.g. Scanner('scan1', 'dc1')")
    seen: set[str] = set()
    for scanner in fleet:
        if scanner.name in seen:
            raise InputError(f"scanner {scanner.name!r} is listed twice: give each a unique name")
        seen.add(scanner.name)
    vantages = sorted({s.vantage for s in fleet}, key=_vantage_order)
    hosts = _resolved(targets, vantages)
    by_scanner: dict[str, list[Assignment]] = {s.name: [] for s in fleet}
    for vantage in vantages:
        names = [s.name for s in fleet if s.vantage == vantage]
        choose = _Rendezvous(names)
        here = [t for t in hosts if vantage in t.vantages]
        split = split_ports and len(here) < len(names)
        for target in here:
            wanted = target.ports or default_ports
            host = _host_key(target.key)
            if not split:
                owner = choose.owner(_item_key(host))
                by_scanner[owner].append(Assignment(target.name, target.address, wanted))
                continue
            parts: dict[str, list[int]] = {}
            for port in wanted:
                parts.setdefault(choose.owner(_item_key(f"{host}\0{port}")), []).append(port)
            for owner in names:
                if owner in parts:
                    by_scanner[owner].append(
                        Assignment(target.name, target.address, tuple(parts[owner]))
                    )
    shards = tuple(Shard(s.name, s.vantage, tuple(by_scanner[s.name])) for s in fleet)
    digest = _digest(fleet, hosts, default_ports, options, split_ports)
    return Plan(digest, tuple(fleet), hosts, default_ports, options, split_ports, shards)


def _resolved(
    targets: Iterable[FleetTarget], vantages: Sequence[str | None]
) -> tuple[FleetTarget, ...]:
    """The targets in canonical order, each with its vantages spelt out and sorted."""
    known = set(vantages)
    found: dict[HostKey, FleetTarget] = {}
    for target in targets:
        if not isinstance(target, FleetTarget):
            raise InputError(
                f"invalid target {target!r}: give a FleetTarget, e.g. FleetTarget('web1')"
            )
        if target.key in found:
            raise InputError(
                f"target {target.name!r} ({target.address or 'no address'}) is listed twice: "
                "list each host once, with all its vantages"
            )
        wanted = set(target.vantages) or known
        unknown = sorted(wanted - known, key=_vantage_order)
        if unknown:
            shown = ", ".join(repr(v) for v in sorted(known, key=_vantage_order))
            raise InputError(
                f"target {target.name!r} is scanned from vantage {unknown[0]!r}, which no "
                f"scanner is in: use one of {shown}"
            )
        chosen = tuple(sorted(wanted, key=_vantage_order))
        try:
            own = parse_ports(_spec(target.ports)) if target.ports else ()
        except InputError as exc:
            raise type(exc)(f"ports of target {target.name!r}: {exc}") from None
        found[target.key] = dataclasses.replace(target, ports=own, vantages=chosen)
    return tuple(found[key] for key in sorted(found, key=lambda k: (k[0], k[1] or "")))


def _spec(ports: Any) -> Any:
    """A target's ports for ``parse_ports``: a tuple of ints is port keys, as a plan holds them
    (a UDP key is no port number), written as the spec they are."""
    if isinstance(ports, tuple) and all(type(p) is int for p in ports):
        return format_ports(sorted(ports), qualified=True)
    return ports


MACHINE_OPTIONS = ("processes", "concurrency")
"""Options left out of the plan's hash: a scanner with more cores or a higher open-file limit
runs its shard with more, and its answers are the same."""


def _digest(
    scanners: Sequence[Scanner],
    targets: Sequence[FleetTarget],
    ports: tuple[int, ...],
    options: ScanOptions,
    split_ports: bool,
) -> str:
    inputs = _inputs(scanners, targets, ports, options, split_ports, compact=False)
    for name in MACHINE_OPTIONS:  # each scanner sizes them to its own machine
        inputs["options"].pop(name)
    canonical = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()


ASSIGNMENT = "rendezvous/blake2b-mul64"
"""How hosts are given to scanners; in the hash, so that reports of a plan another version
assigned differently are refused rather than checked against the wrong shards."""


def _inputs(
    scanners: Sequence[Scanner],
    targets: Sequence[FleetTarget],
    ports: tuple[int, ...],
    options: ScanOptions,
    split_ports: bool,
    *,
    compact: bool = True,
) -> dict[str, Any]:
    """The plan's inputs as JSON data; the hash is over every target listed (not compact)."""
    vantages = tuple(sorted({s.vantage for s in scanners}, key=_vantage_order))
    return {
        "scanners": [[s.name, s.vantage] for s in scanners],
        "targets": _compact(targets, vantages) if compact else [_listed(t) for t in targets],
        "ports": format_ports(sorted(ports)),
        "options": {k: _plain(v) for k, v in dataclasses.asdict(options).items()},
        "split_ports": split_ports,
        "assignment": ASSIGNMENT,
    }


def _listed(target: FleetTarget) -> list[Any]:
    return [target.name, target.address, format_ports(sorted(target.ports)), list(target.vantages)]


def _compact(targets: Sequence[FleetTarget], every: tuple[str | None, ...]) -> list[list[Any]]:
    """The targets as JSON data: ``[first, count]`` for each run of consecutive addresses
    named by themselves, with the plan's ports and every vantage (an expanded CIDR is one
    entry); ``[name, address, ports, vantages]`` for any other."""
    plain: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    listed = []
    for target in targets:
        address = _literal(target.address) if target.name == target.address else None
        if address is not None and not target.ports and target.vantages == every:
            plain.append(address)
        else:
            listed.append(_listed(target))
    runs: list[list[Any]] = []
    for address in sorted(plain, key=lambda a: (a.version, a)):
        last = runs[-1] if runs else None
        if last and last[0].version == address.version and int(last[0]) + last[1] == int(address):
            last[1] += 1
        else:
            runs.append([address, 1])
    return [[str(first), count] for first, count in runs] + listed


def _literal(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an address when it is one, written the one way ``str`` writes it, with no
    zone (``fe80::1%eth0 + 1`` would lose it)."""
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return address if str(address) == text else None


_MAX_RUN = 2**24  # addresses in the runs of one plan: a /8


def _expanded(entry: Any, every: Sequence[str | None]) -> Iterable[FleetTarget]:
    """The targets of one entry of ``_compact``'s list."""
    if len(entry) == 2:
        first, count = entry
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= _MAX_RUN:
            raise ValueError(f"a run of {count!r} addresses")
        start = ipaddress.ip_address(first)
        vantages = tuple(every)
        for offset in range(count):
            address = str(start + offset)
            yield FleetTarget(address, address, (), vantages)
        return
    name, address, spec, vantages = entry
    yield FleetTarget(name, address, parse_ports(spec) if spec else (), tuple(vantages))


def _plain(value: Any) -> Any:
    """``1.0`` as ``1``: ``--timeout 1`` and ``--timeout 1.0`` are one plan."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def plan_inputs(plan: Plan) -> dict[str, Any]:
    """Everything the plan was made of, as JSON-ready data: ``plan_from_dict`` remakes it."""
    data = _inputs(plan.scanners, plan.targets, plan.ports, plan.options, plan.split_ports)
    data["hash"] = plan.hash
    return data


def plan_from_dict(data: Any, where: str = "plan") -> Plan:
    """The plan ``plan_inputs`` describes; raises ``InputError`` when ``data`` is not one or
    its ``hash`` does not match what it describes (it was edited)."""
    try:
        scanners = [Scanner(name, vantage) for name, vantage in data["scanners"]]
        every = sorted({s.vantage for s in scanners}, key=_vantage_order)
        runs = sum(e[1] for e in data["targets"] if isinstance(e, list) and len(e) == 2)
        if not isinstance(runs, int) or runs > _MAX_RUN:
            raise ValueError(f"runs of {runs!r} addresses in all, more than {_MAX_RUN}")
        targets = [t for entry in data["targets"] for t in _expanded(entry, every)]
        plan = build_plan(
            scanners,
            targets,
            data["ports"],
            options=ScanOptions(**data["options"]),
            split_ports=data["split_ports"] is True,
        )
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"{where} is not a scan plan ({type(exc).__name__}: {exc}); keep the 'shard' "
            "section the scanner wrote"
        ) from None
    if plan.hash != data.get("hash"):
        raise InputError(
            f"{where}: its hash does not match its targets, ports, options and scanners "
            "(the file was edited, or another version wrote it); scan the shard again"
        )
    return plan
