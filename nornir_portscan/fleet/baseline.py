"""A merged report against a merged baseline, per vantage, and the re-check from each vantage.

    merged_drift(baseline, merged) -> Drift (each (target, vantage) against the same only)
    rechecks(drift, merged) -> the differing ports, per scanner of their vantage, to probe again
    confirm_rechecks(drift, merged, answers) -> Drift (only what every re-check saw again)
    drift_section(drift, rechecks, policies) -> the merged JSON's ``drift`` and ``recheck``
    with_drift(data, merged, baseline, policies, answers) -> the judged JSON with its drift

A re-check must probe from the vantage that saw the change: the controller that merges sees
none of them. So the differing ports of a (target, vantage) go to the scanner that answered
them (one of that vantage's), which probes them again and returns its answers. A change a
re-check contradicted is a blip, dropped; one that no re-check from its vantage could answer
(the scanner gone, a local error) is ``unchecked``: neither confirmed nor dismissed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nornir_portscan.audit.drift import (
    Drift,
    SeenKey,
    compare_states,
    confirm_with,
    unexpected_changes,
)
from nornir_portscan.fleet.merge import MergedReport
from nornir_portscan.models import Policy, PortState
from nornir_portscan.ports import UDP, format_ports, parse_ports
from nornir_portscan.reports.data import port_fields

__all__ = [
    "Recheck",
    "confirm_rechecks",
    "drift_section",
    "merged_drift",
    "rechecks",
    "with_drift",
]


@dataclass(frozen=True, slots=True)
class Recheck:
    """Ports of one host for one scanner to probe again, from its vantage."""

    scanner: str
    vantage: str | None
    name: str
    address: str | None
    ports: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """A target entry as the ``portscan`` module takes it (name, address, ports)."""
        return {"name": self.name, "address": self.address, "ports": format_ports(self.ports)}


def _states(merged: MergedReport) -> dict[SeenKey, dict[int, str]]:
    """Every answer of every (target, vantage); a port in conflict or unscanned is ``error``
    (it says nothing about the port)."""
    found = {}
    for host in merged.hosts:
        states = dict.fromkeys(host.scanned, PortState.CLOSED.value)
        states.update((p.key, p.state.value) for p in host.ports)
        states.update(dict.fromkeys((*host.unscanned, *host.conflicts), PortState.ERROR.value))
        found[(host.name, host.address, host.vantage)] = states
    return found


def merged_drift(baseline: Mapping[str, Any], merged: MergedReport) -> Drift:
    """Every difference between ``baseline`` (a merged report's JSON, or any JSON report) and
    ``merged``, each (target, vantage) against the same (target, vantage); unconfirmed."""
    return compare_states(baseline, _states(merged))


def rechecks(drift: Drift, merged: MergedReport) -> tuple[Recheck, ...]:
    """Who probes each differing port again: the scanner that gave its answer now (a closed
    port, not listed: the host's first scanner; every scanner of a host is of its vantage)."""
    hosts = {(h.name, h.address, h.vantage): h for h in merged.hosts}
    wanted: dict[tuple[str, str, str | None], list[int]] = {}
    vantages: dict[str, str | None] = {}
    for changed in drift.hosts:
        host = hosts.get((changed.name, changed.address, changed.vantage))
        if host is None or not host.scanners:
            continue
        by_port = {p.key: p.scanner for p in host.ports}
        for change in changed.changes:
            scanner = by_port.get(change.port, host.scanners[0])
            vantages[scanner] = host.vantage
            key = (scanner, host.name, host.address)
            wanted.setdefault(key, []).append(change.port)
    return tuple(
        Recheck(scanner, vantages[scanner], name, address, tuple(sorted(ports)))
        for (scanner, name, address), ports in sorted(
            wanted.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "")
        )
    )


def _entry_states(entry: Mapping[str, Any]) -> dict[int, str]:
    scanned = entry.get("scanned_ports") or ""
    states = dict.fromkeys(parse_ports(scanned) if scanned else (), PortState.CLOSED.value)
    states.update(
        (int(p["port"]) + (UDP if p.get("protocol") == "udp" else 0), str(p["state"]))
        for p in entry.get("ports") or ()
    )
    return states


def _split(key: str, ports: tuple[int, ...] | list[int]) -> dict[str, list[int]]:
    """``{key: TCP ports}``, and ``udp_<key>`` with the UDP ones when there are any."""
    udp = [p - UDP for p in ports if p > UDP]
    return {key: [p for p in ports if p < UDP], **({f"udp_{key}": udp} if udp else {})}


def confirm_rechecks(
    drift: Drift,
    merged: MergedReport,
    answers: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
) -> Drift:
    """``drift`` with only the changes every re-check of them saw again from their vantage.

    Args:
        answers: Per scanner, its re-check rounds, each a list of host entries (``name``,
            ``address``, ``scanned_ports``, ``ports``, as every report holds them). A scanner
            answers for its own vantage only (the plan's, through ``merged.shards``); the
            scanners of one host's split ports answer its round ``i`` together.
    """
    vantage_of = {s.scanner: s.vantage for s in merged.shards}
    rounds: dict[SeenKey, list[dict[int, str]]] = {}
    for scanner, said in answers.items():
        if scanner not in vantage_of:
            continue  # not a scanner of this plan: its answers are from nowhere known
        for number, entries in enumerate(said):
            for entry in entries:
                key = (str(entry["name"]), entry.get("address"), vantage_of[scanner])
                mine = rounds.setdefault(key, [])
                mine += [{} for _ in range(number + 1 - len(mine))]
                mine[number].update(_entry_states(entry))  # split ports: the same round
    return confirm_with(drift, rounds)


def drift_section(
    drift: Drift,
    recheck: Sequence[Recheck] = (),
    policies: Mapping[str, Mapping[str | None, Policy]] | None = None,
) -> dict[str, Any]:
    """The merged report's ``drift`` and ``recheck`` keys: what changed per (target, vantage),
    which changes its expectations from that vantage do not explain (``unexpected``), what
    each scanner is to probe again."""
    policies = policies or {}
    hosts = []
    for host in drift.hosts:
        scoped = policies.get(host.name) or {}
        policy = scoped.get(host.vantage, scoped.get(None))
        hosts.append(
            {
                "name": host.name,
                "address": host.address,
                "vantage": host.vantage,
                **_split("opened", host.opened),
                **_split("closed", host.closed),
                "changed": [
                    {**port_fields(c.port), "before": c.before, "after": c.after}
                    for c in host.changed
                ],
                **_split("unexpected", unexpected_changes(host, policy)),
            }
        )
    unchecked = [
        {
            "name": host.name,
            "address": host.address,
            "vantage": host.vantage,
            **_split("ports", tuple(c.port for c in host.changes)),
        }
        for host in drift.unchecked
    ]
    lists: dict[str, list[dict[str, Any]]] = {}
    for item in recheck:
        lists.setdefault(item.scanner, []).append(item.to_dict())
    return {
        "drift": {
            "drifted": bool(drift),
            "hosts_changed": len(drift.hosts),
            "appeared": list(drift.appeared),
            "disappeared": list(drift.disappeared),
            "vantages_appeared": list(drift.vantages_appeared),
            "vantages_disappeared": list(drift.vantages_disappeared),
            "rechecked": drift.rechecked,
            "confirmed": drift.confirmed,
            "unchecked": unchecked,
            "hosts": hosts,
        },
        "recheck": lists,
    }


def with_drift(
    data: dict[str, Any],
    merged: MergedReport,
    baseline: Mapping[str, Any],
    policies: Mapping[str, Mapping[str | None, Policy]] | None = None,
    answers: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]] | None = None,
) -> dict[str, Any]:
    """The judged merged JSON ``data`` with its ``drift`` against ``baseline`` (a loaded
    merged report), each (target, vantage) against the same, and ``recheck``: per scanner,
    the differing ports it is to probe again from its vantage. With ``answers`` (``{scanner:
    rounds}``), only the changes each re-check saw again (``confirming``); a (target,
    vantage) with confirmed drift its expectations do not explain does not pass."""
    drift = merged_drift(baseline, merged)
    again = rechecks(drift, merged)
    if answers is not None:
        drift = confirm_rechecks(drift, merged, answers)
    data.update(drift_section(drift, again, policies))
    data["drift"]["confirming"] = answers is not None
    if answers is None:
        return data
    unexpected = {
        (h["name"], h["address"], h["vantage"]): h
        for h in data["drift"]["hosts"]
        if h["unexpected"] or h.get("udp_unexpected")
    }
    for host in data["hosts"]:
        changed = unexpected.get((host["name"], host["address"], host["vantage"]))
        if changed is None:
            continue
        said = ", ".join(
            [f"port {p}" for p in changed["unexpected"]]
            + [f"port {p}/udp" for p in changed.get("udp_unexpected", ())]
        )
        label = f"{host['name']} ({host['address'] or 'no address'}) from {host['vantage'] or '-'}"
        why = f"unexpected drift since the baseline: {said}"
        failure = f"{host['failure']}; {why}" if host["failure"] else f"{label}: {why}"
        host.update(passed=False, failure=failure)
        name = f"{host['name']}@{host['vantage']}"
        if name not in data["failed_hosts"]:
            data["failed_hosts"].append(name)
    return data
