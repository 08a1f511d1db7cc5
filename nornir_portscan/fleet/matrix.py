"""The reachability matrix of a merged report: what each vantage reaches, per target group and port.

    reachability_matrix(merged, groups, policies) -> Matrix (a Cell per vantage, group and run
        of ports that say the same)

A cell counts the (target, vantage) hosts of one group scanned on a run of ports (``first`` to
``last``) from one vantage, the same counts on each port of the run, by what the port said:
``open``, ``closed``, ``filtered``, ``error`` (no answer: a lost or failed shard, a local
error, a port an interrupt left unscanned) or ``conflict`` (two shards answered differently).
Its ``verdict`` is the one state all of them share; ``error`` when some has no answer, else
``conflict`` when some answer is in doubt, else ``mixed``. A port without an answer is never
counted closed or filtered.

Groups: ``groups`` maps a target name to its groups (Ansible: the target's inventory groups);
a target is counted in each of its groups, and a target with none is in ``ungrouped``.
Expectations: ``policies`` maps a target name to its policy per vantage (``None``: every other
vantage); a host whose policy expects a state of the port (or allows it open, or not) is
``passed`` or ``failed``; one with no answer there is ``unjudged``, never passed.

UDP ports are port keys (``ports.UDP``): a run never mixes protocols, and a UDP cell counts
``open_filtered`` too (a port that never answered; outside an allow-list it is ``unjudged``),
and says ``"protocol": "udp"`` in its JSON, its ``first`` and ``last`` port numbers.

Memory and time follow the runs, not the ports: each host adds its counts as changes at the
edges of its runs of scanned ports and at its listed ports, and one sweep over the sorted edges
makes the cells (60 hosts of every port from 2 vantages: a few cells, not 393,210).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nornir_portscan.fleet.verdicts import CONFLICT, policy_for, port_verdict
from nornir_portscan.models import Policy, PortState
from nornir_portscan.ports import UDP

if TYPE_CHECKING:
    from nornir_portscan.fleet.merge import MergedHost, MergedReport

__all__ = ["UNGROUPED", "Cell", "Matrix", "reachability_matrix"]

UNGROUPED = "ungrouped"
_COUNTED = ("open", "closed", "filtered", "error", CONFLICT)
_SILENT = "open_filtered"  # counted after the verdicts: a field a TCP cell never sets


@dataclass(frozen=True, slots=True)
class Cell:
    """The hosts of ``group`` seen from ``vantage`` on each port ``first`` to ``last``, counted
    by state and by how they stand against their expectations (the same on every port)."""

    vantage: str | None
    group: str
    first: int
    last: int
    open: int = 0
    closed: int = 0
    filtered: int = 0
    error: int = 0
    conflict: int = 0
    passed: int = 0
    failed: int = 0
    unjudged: int = 0
    open_filtered: int = 0  # UDP: no answer after every attempt

    @property
    def ports(self) -> range:
        """The port keys of the run."""
        return range(self.first, self.last + 1)

    @property
    def hosts(self) -> int:
        return (
            self.open + self.closed + self.filtered + self.error + self.conflict
            + self.open_filtered
        )  # fmt: skip

    @property
    def verdict(self) -> str:
        """``open``, ``closed``, ``filtered`` or ``open|filtered`` when every host said so;
        else ``error``, ``conflict`` or ``mixed``, in that order."""
        if self.error:
            return "error"
        if self.conflict:
            return CONFLICT
        said = [state for state in (*_COUNTED[:3], _SILENT) if getattr(self, state)]
        if len(said) != 1:
            return "mixed"
        return PortState.OPEN_FILTERED.value if said[0] == _SILENT else said[0]

    @property
    def judged(self) -> bool:
        """Whether some host has an expectation of this port."""
        return bool(self.passed or self.failed or self.unjudged)

    def to_dict(self) -> dict[str, Any]:
        udp = self.first > UDP
        return {
            "vantage": self.vantage,
            "group": self.group,
            **({"protocol": "udp"} if udp else {}),
            "first": self.first % UDP,
            "last": self.last % UDP,
            "verdict": self.verdict,
            "hosts": self.hosts,
            **{state: getattr(self, state) for state in _COUNTED},
            **({_SILENT: self.open_filtered} if udp else {}),
            "passed": self.passed,
            "failed": self.failed,
            "unjudged": self.unjudged,
        }


@dataclass(frozen=True, slots=True)
class Matrix:
    """Every non-empty cell, by vantage, group and first port."""

    vantages: tuple[str | None, ...]
    groups: tuple[str, ...]
    ports: tuple[int, ...]
    cells: tuple[Cell, ...]
    # (vantage, group, "name (address)", status) of hosts with no port to count (a name that did not
    # resolve): they are in no cell, and listed so that no cell hides them
    portless: tuple[tuple[str | None, str, str, str], ...] = ()

    def cell(self, vantage: str | None, group: str, port: int) -> Cell | None:
        """The cell of ``port``, or None when no host of ``group`` was scanned on it from there."""
        for cell in self.cells:
            if (cell.vantage, cell.group) == (vantage, group) and cell.first <= port <= cell.last:
                return cell
        return None

    @property
    def failed(self) -> int:
        """How many (host, port) expectations failed."""
        return sum(c.failed * len(c.ports) for c in self.cells)

    def to_dict(self) -> dict[str, Any]:
        udp = [p - UDP for p in self.ports if p > UDP]
        return {
            "vantages": list(self.vantages),
            "groups": list(self.groups),
            "ports": [p for p in self.ports if p < UDP],
            **({"udp_ports": udp} if udp else {}),
            "cells": [c.to_dict() for c in self.cells],
            "portless": [
                {"vantage": v, "group": g, "host": h, "status": s} for v, g, h, s in self.portless
            ],
        }


_ORDER = (*_COUNTED, "passed", "failed", "unjudged", _SILENT)
_INDEX = {name: i for i, name in enumerate(_ORDER)}
Deltas = dict[int, list[int]]  # port -> the change of each count there (_ORDER)


def _runs(ports: Iterable[int]) -> list[tuple[int, int]]:
    """``ports`` as sorted runs ``(first, last)``; a run of every port is found in C time."""
    ordered = sorted(set(ports))
    if not ordered:
        return []
    if ordered[-1] - ordered[0] + 1 == len(ordered):
        return [(ordered[0], ordered[-1])]
    runs = []
    first = last = ordered[0]
    for port in ordered[1:]:
        if port != last + 1:
            runs.append((first, last))
            first = port
        last = port
    runs.append((first, last))
    return runs


def _add(deltas: Deltas, first: int, last: int, name: str, count: int = 1) -> None:
    """Count ``name`` ``count`` times more on each port ``first`` to ``last``."""
    at = _INDEX[name]
    deltas.setdefault(first, [0] * len(_ORDER))[at] += count
    deltas.setdefault(last + 1, [0] * len(_ORDER))[at] -= count


def _host_deltas(host: MergedHost, policy: Policy | None, deltas: Deltas) -> bool:
    """Add ``host``'s counts to ``deltas``; False when it has no port to count. Its scanned
    ports are closed but the listed ones, unscanned ones are ``error``, conflicts
    ``conflict``; each judged by ``policy`` as ``port_verdict`` does."""
    scanned = set(host.scanned)
    special = {p.key: p.state.value for p in host.ports}
    special.update(dict.fromkeys(host.unscanned, PortState.ERROR.value))
    special.update(dict.fromkeys(host.conflicts, CONFLICT))
    if not scanned and not special:
        return False
    closed = PortState.CLOSED.value
    limited = policy is not None and policy.allowed_open is not None
    bulk = "passed" if limited else None  # a closed port an allow-list leaves out passes
    if policy is not None:  # closed ports with an expectation of their own: judged one by one
        special.update((p, closed) for p in set(policy.ports) & scanned if p not in special)
    for first, last in _runs(scanned):
        _add(deltas, first, last, closed)
        if bulk is not None:
            _add(deltas, first, last, bulk)
    if policy is not None and policy.allowed_open is not None:  # allowed: no verdict if closed
        quiet = (policy.allowed_open & scanned) - special.keys()
        for first, last in _runs(quiet):
            _add(deltas, first, last, "passed", -1)
    for port, state in special.items():
        if port in scanned:  # not the bulk closed (and its verdict) on this port
            _add(deltas, port, port, closed, -1)
            if bulk is not None:
                _add(deltas, port, port, bulk, -1)
        _add(deltas, port, port, _SILENT if state == PortState.OPEN_FILTERED.value else state)
        verdict = port_verdict(policy, port, state)
        if verdict is not None:
            _add(deltas, port, port, verdict)
    return True


def _cells(vantage: str | None, group: str, deltas: Deltas) -> list[Cell]:
    """The cells of one vantage and group: one sweep over the edges of ``deltas``."""
    cells: list[Cell] = []
    counts = [0] * len(_ORDER)
    edges = sorted(deltas)
    for edge, end in itertools.pairwise(edges):
        counts = [c + d for c, d in zip(counts, deltas[edge], strict=True)]
        if not any(counts):
            continue
        last = cells[-1] if cells else None
        if last is not None and last.last == edge - 1 and _counts(last) == counts:
            cells[-1] = Cell(vantage, group, last.first, end - 1, *counts)
        else:
            cells.append(Cell(vantage, group, edge, end - 1, *counts))
    return cells


def _counts(cell: Cell) -> list[int]:
    return [getattr(cell, name) for name in _ORDER]


def _vantage_order(vantage: str | None) -> tuple[bool, str]:
    return (vantage is not None, vantage or "")


def reachability_matrix(
    merged: MergedReport,
    groups: Mapping[str, Iterable[str]] | None = None,
    policies: Mapping[str, Mapping[str | None, Policy]] | None = None,
) -> Matrix:
    """The matrix of ``merged``: its hosts by vantage, by the groups ``groups`` gives each
    target's name (none: ``ungrouped``) and by runs of ports, judged against ``policies`` (a
    target's policy per vantage, ``None`` for every vantage it does not name)."""
    groups = groups or {}
    policies = policies or {}
    by_key: dict[tuple[str | None, str], Deltas] = {}
    portless = []
    for host in merged.hosts:
        mine = sorted(set(groups.get(host.name) or ())) or [UNGROUPED]
        policy = policy_for(policies, host.name, host.vantage)
        deltas: Deltas = {}
        if not _host_deltas(host, policy, deltas):
            label = (
                host.name if host.address in (None, host.name) else f"{host.name} ({host.address})"
            )
            portless += [(host.vantage, g, label, host.status.value) for g in mine]
            continue
        for group in mine:
            into = by_key.setdefault((host.vantage, group), {})
            for port, change in deltas.items():
                have = into.get(port)
                if have is None:
                    into[port] = list(change)
                else:
                    into[port] = [a + b for a, b in zip(have, change, strict=True)]
    order = sorted(by_key, key=lambda k: (_vantage_order(k[0]), k[1] == UNGROUPED, k[1]))
    cells = tuple(cell for key in order for cell in _cells(*key, by_key[key]))
    ports = sorted({(c.first, c.last) for c in cells})
    return Matrix(
        vantages=tuple(sorted({c.vantage for c in cells}, key=_vantage_order)),
        groups=tuple(sorted({c.group for c in cells}, key=lambda g: (g == UNGROUPED, g))),
        ports=tuple(_union(ports)),
        cells=cells,
        portless=tuple(portless),
    )


def _union(runs: Iterable[tuple[int, int]]) -> Iterable[int]:
    """Every port of sorted, maybe overlapping ``runs``, once, in order."""
    upto = 0
    for first, last in runs:
        yield from range(max(first, upto + 1), last + 1)
        upto = max(upto, last)
