"""The reachability matrix of a merged report: what each vantage reaches, per target group and port.

    reachability_matrix(merged, groups, policies) -> Matrix (a Cell per vantage, group, port)

A cell counts the (target, vantage) hosts of one group scanned on one port from one vantage,
by what the port said: ``open``, ``closed``, ``filtered``, ``error`` (no answer: a lost or
failed shard, a local error, a port an interrupt left unscanned) or ``conflict`` (two shards
answered differently). Its ``verdict`` is the one state all of them share; ``error`` when some
has no answer, else ``conflict`` when some answer is in doubt, else ``mixed``. A port without an
answer is never counted closed or filtered.

Groups: ``groups`` maps a target name to its groups (Ansible: the target's inventory groups);
a target is counted in each of its groups, and a target with none is in ``ungrouped``.
Expectations: ``policies`` maps a target name to its policy per vantage (``None``: every other
vantage); a host whose policy expects a state of the port (or allows it open, or not) is
``passed`` or ``failed``; one with no answer there is ``unjudged``, never passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nornir_portscan.fleet.verdicts import CONFLICT, policy_for, port_verdict
from nornir_portscan.models import Policy, PortState

if TYPE_CHECKING:
    from nornir_portscan.fleet.merge import MergedHost, MergedReport

__all__ = ["UNGROUPED", "Cell", "Matrix", "reachability_matrix"]

UNGROUPED = "ungrouped"
_COUNTED = ("open", "closed", "filtered", "error", CONFLICT)


@dataclass(frozen=True, slots=True)
class Cell:
    """The hosts of ``group`` seen from ``vantage`` on ``port``, counted by state and by how they
    stand against their expectations."""

    vantage: str | None
    group: str
    port: int
    open: int = 0
    closed: int = 0
    filtered: int = 0
    error: int = 0
    conflict: int = 0
    passed: int = 0
    failed: int = 0
    unjudged: int = 0

    @property
    def hosts(self) -> int:
        return self.open + self.closed + self.filtered + self.error + self.conflict

    @property
    def verdict(self) -> str:
        """``open``, ``closed`` or ``filtered`` when every host said so; else ``error``,
        ``conflict`` or ``mixed``, in that order."""
        if self.error:
            return "error"
        if self.conflict:
            return CONFLICT
        said = [state for state in _COUNTED[:3] if getattr(self, state)]
        return said[0] if len(said) == 1 else "mixed"

    @property
    def judged(self) -> bool:
        """Whether some host has an expectation of this port."""
        return bool(self.passed or self.failed or self.unjudged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "vantage": self.vantage,
            "group": self.group,
            "port": self.port,
            "verdict": self.verdict,
            "hosts": self.hosts,
            **{state: getattr(self, state) for state in _COUNTED},
            "passed": self.passed,
            "failed": self.failed,
            "unjudged": self.unjudged,
        }


@dataclass(frozen=True, slots=True)
class Matrix:
    """Every non-empty cell, by vantage, group and port."""

    vantages: tuple[str | None, ...]
    groups: tuple[str, ...]
    ports: tuple[int, ...]
    cells: tuple[Cell, ...]
    # (vantage, group, "name (address)", status) of hosts with no port to count (a name that did not
    # resolve): they are in no cell, and listed so that no cell hides them
    portless: tuple[tuple[str | None, str, str, str], ...] = ()

    def cell(self, vantage: str | None, group: str, port: int) -> Cell | None:
        """The cell, or None when no host of ``group`` was scanned on ``port`` from there."""
        for cell in self.cells:
            if (cell.vantage, cell.group, cell.port) == (vantage, group, port):
                return cell
        return None

    @property
    def failed(self) -> int:
        """How many (host, port) expectations failed."""
        return sum(c.failed for c in self.cells)

    def to_dict(self) -> dict[str, Any]:
        return {
            "vantages": list(self.vantages),
            "groups": list(self.groups),
            "ports": list(self.ports),
            "cells": [c.to_dict() for c in self.cells],
            "portless": [
                {"vantage": v, "group": g, "host": h, "status": s} for v, g, h, s in self.portless
            ],
        }


def _states(host: MergedHost) -> dict[int, str]:
    """Every port of ``host`` and what it said; ``conflict`` for answers in doubt."""
    states = dict.fromkeys(host.scanned, PortState.CLOSED.value)
    states.update((p.port, p.state.value) for p in host.ports)
    states.update(dict.fromkeys(host.unscanned, PortState.ERROR.value))
    states.update(dict.fromkeys(host.conflicts, CONFLICT))
    return states


def _vantage_order(vantage: str | None) -> tuple[bool, str]:
    return (vantage is not None, vantage or "")


def reachability_matrix(
    merged: MergedReport,
    groups: Mapping[str, Iterable[str]] | None = None,
    policies: Mapping[str, Mapping[str | None, Policy]] | None = None,
) -> Matrix:
    """The matrix of ``merged``: its hosts by vantage, by the groups ``groups`` gives each
    target's name (none: ``ungrouped``) and by port, judged against ``policies`` (a target's
    policy per vantage, ``None`` for every vantage it does not name)."""
    groups = groups or {}
    policies = policies or {}
    counts: dict[tuple[str | None, str, int], dict[str, int]] = {}
    portless = []
    for host in merged.hosts:
        mine = sorted(set(groups.get(host.name) or ())) or [UNGROUPED]
        policy = policy_for(policies, host.name, host.vantage)
        states = _states(host)
        if not states:
            label = (
                host.name if host.address in (None, host.name) else f"{host.name} ({host.address})"
            )
            portless += [(host.vantage, g, label, host.status.value) for g in mine]
        for port, state in states.items():
            verdict = port_verdict(policy, port, state)
            for group in mine:
                cell = counts.setdefault((host.vantage, group, port), dict.fromkeys(_COUNTED, 0))
                cell[state] += 1
                if verdict is not None:
                    cell[verdict] = cell.get(verdict, 0) + 1
    order = sorted(counts, key=lambda k: (_vantage_order(k[0]), k[1] == UNGROUPED, k[1], k[2]))
    cells = tuple(Cell(v, g, p, **counts[(v, g, p)]) for v, g, p in order)
    return Matrix(
        vantages=tuple(sorted({k[0] for k in counts}, key=_vantage_order)),
        groups=tuple(sorted({k[1] for k in counts}, key=lambda g: (g == UNGROUPED, g))),
        ports=tuple(sorted({k[2] for k in counts})),
        cells=cells,
        portless=tuple(portless),
    )
