"""Each (target, vantage) of a merged report judged against its expectations from that vantage.

    judge_merged(merged, policies) -> a Judgement per merged host, in host order
    port_verdict(policy, port, state) -> passed, failed, unjudged or None (no expectation)
    parse_scoped(raw) -> the policies of raw expectations per target and vantage
    judged(data, merged, raw, policies) -> the merged JSON with its verdicts (every door's)

``policies`` maps a target name to its policy per vantage; ``None`` is the policy of every
vantage the target's mapping does not name (Ansible: ``portscan_expect_*`` for every vantage,
``portscan_vantage_policy`` per vantage). A host with ports that have no answer (a lost or
failed shard, a local error, an unscanned port) or conflicting answers does not pass and is
not judged; the matrix counts the same per port (``port_verdict``).

UDP ports (port keys) are judged as a scan's (``audit.policy``): ``open|filtered`` meets no
expectation, and outside ``allowed_open`` it is ``unconfirmed`` (the matrix: ``unjudged``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nornir_portscan.audit.gates import violation_text
from nornir_portscan.audit.policy import Violation, parse_policy, port_text
from nornir_portscan.models import HostStatus, Policy, PortState
from nornir_portscan.ports import label_ports
from nornir_portscan.reports.data import port_fields

if TYPE_CHECKING:
    from nornir_portscan.fleet.merge import MergedHost, MergedReport

__all__ = [
    "CONFLICT",
    "Judgement",
    "judge_merged",
    "judged",
    "parse_scoped",
    "policy_for",
    "port_verdict",
]

CONFLICT = "conflict"  # a port two shards answered differently: its answer is in doubt
Policies = Mapping[str, Mapping[str | None, Policy]]


@dataclass(frozen=True, slots=True)
class Judgement:
    """How one (target, vantage) stands: ``passed``, why not (``failure``, one line), the
    ``violations`` of its ``policy`` (None: no expectations from there), and its
    ``unconfirmed`` UDP ports (silent, outside ``allowed_open``: not failed)."""

    passed: bool
    failure: str = ""
    violations: tuple[Violation, ...] = ()
    policy: Policy | None = None
    unconfirmed: tuple[Violation, ...] = ()

    @property
    def kind(self) -> str | None:
        """``compliant``, ``non_compliant`` or ``error`` (not judged); None without a policy."""
        if self.policy is None:
            return None
        return "compliant" if self.passed else "non_compliant" if self.violations else "error"


def policy_for(policies: Policies, name: str, vantage: str | None) -> Policy | None:
    """The policy of target ``name`` from ``vantage``; None when it expects nothing there."""
    scoped = policies.get(name) or {}
    policy = scoped.get(vantage, scoped.get(None))
    return policy if policy else None


def port_verdict(policy: Policy | None, port: int, state: str) -> str | None:
    """``passed``, ``failed`` or ``unjudged`` (no answer; or a silent UDP port an allow-list
    leaves out: maybe open, not proven) when ``policy`` expects something of ``port`` (a
    state, or not open: an allow-list that leaves it out); else None."""
    if policy is None:
        return None
    want = policy.expected(port)
    allowed = policy.allowed_open
    limited = allowed is not None and port not in allowed
    if want is None and not limited:
        return None
    if state in (PortState.ERROR.value, CONFLICT):
        return "unjudged"
    if want is not None:
        return "passed" if state == want.value else "failed"
    if state == PortState.OPEN_FILTERED.value:
        return "unjudged"
    return "failed" if state == PortState.OPEN.value else "passed"


def _label(host: MergedHost) -> str:
    return f"{host.name} ({host.address or 'no address'}) from {host.vantage or '-'}"


def judge_host(host: MergedHost, policy: Policy | None) -> Judgement:
    """One merged host against its ``policy`` from its vantage."""
    label = _label(host)
    if host.status in (HostStatus.ERROR, HostStatus.UNRESOLVED) or host.error_ports:
        return Judgement(False, f"{label}: not scanned in full ({host.error or 'error'})",
                         policy=policy)  # fmt: skip
    if host.unscanned:  # an interrupt or a host timeout: no answer, so no violation
        unscanned = label_ports(host.unscanned)
        return Judgement(
            False, f"{label}: not scanned in full (ports {unscanned} unscanned)", policy=policy
        )
    if host.conflicts:
        return Judgement(
            False,
            f"{label}: shards answered ports [{', '.join(map(port_text, host.conflicts))}] "
            "differently",
            policy=policy,
        )  # fmt: skip
    if policy is None:
        return Judgement(True)
    listed = {p.key: p for p in host.ports}
    states = dict.fromkeys(host.scanned, PortState.CLOSED.value)
    states.update((p.key, p.state.value) for p in host.ports)
    violations = []
    for port in sorted(policy.ports):
        want = policy.expected(port)
        assert want is not None
        got = states.get(port, "not scanned")
        if got != want.value:
            reason = listed[port].reason if port in listed else (
                "conn-refused" if port in states else "not-scanned"
            )  # fmt: skip
            violations.append(Violation(port, want.value, got, reason))
    unconfirmed = []
    if policy.allowed_open is not None:
        outside = [p for p in host.ports if p.key not in policy.allowed_open]
        violations += [
            Violation(p.key, "not open", "open", p.reason)
            for p in outside
            if p.state is PortState.OPEN
        ]
        unconfirmed = [
            Violation(p.key, "not open", p.state.value, p.reason)
            for p in outside
            if p.state is PortState.OPEN_FILTERED
        ]
    violations.sort(key=lambda v: v.port)
    if not violations:
        return Judgement(True, policy=policy, unconfirmed=tuple(unconfirmed))
    said = ", ".join(_said(v) for v in violations)
    return Judgement(False, f"{label}: {said}", tuple(violations), policy, tuple(unconfirmed))


def _said(violation: Violation) -> str:
    if violation.actual == PortState.OPEN_FILTERED.value:
        return violation_text(violation)
    return f"port {port_text(violation.port)} {violation.actual} (expected {violation.expected})"


def _entry(violation: Violation) -> dict[str, Any]:
    data = dataclasses.asdict(violation)
    return {**port_fields(data.pop("port")), **data}


def judge_merged(merged: MergedReport, policies: Policies | None = None) -> tuple[Judgement, ...]:
    """A ``Judgement`` per host of ``merged``, in its order."""
    policies = policies or {}
    return tuple(judge_host(h, policy_for(policies, h.name, h.vantage)) for h in merged.hosts)


def parse_scoped(raw: Mapping[str, Mapping[str | None, Mapping[str, Any] | None]]) -> Policies:
    """``{name: {vantage: Policy}}`` of raw expectations per target and vantage (``None``:
    every other vantage); raises ``InputError`` (one line) naming the target and vantage."""
    parsed: dict[str, dict[str | None, Policy]] = {}
    for name, scoped in raw.items():
        mine = parsed[name] = {}
        for vantage, data in scoped.items():
            where = f"target {name!r}" + (f" from vantage {vantage!r}" if vantage else "")
            mine[vantage] = parse_policy(data or None, where=where)
    return parsed


def judged(
    data: dict[str, Any],
    merged: MergedReport,
    raw: Mapping[str, Mapping[str | None, Any]],
    policies: Policies,
) -> dict[str, Any]:
    """The merged report's JSON ``data`` (of ``merged``) with each host judged: ``passed``,
    ``failure`` and, with expectations, ``policy`` (its ``raw`` data) and ``violations``; its
    ``failed_hosts`` (``name@vantage``) and ``compliance``. Every door writes this. A host a
    shard's own scan failed (its expectations there) does not pass either."""
    failed, counts = [], {"compliant": 0, "non_compliant": 0, "error": 0, "violations": 0}
    judgements = judge_merged(merged, policies)
    for host, judgement, model in zip(data["hosts"], judgements, merged.hosts, strict=True):
        # a shard that failed its own scan's expectations still fails (a CLI shard's --policy)
        passed = judgement.passed and model.passed
        host.update(passed=passed, failure=judgement.failure or ("" if passed else model.failure))
        if judgement.kind is not None:
            mine = raw.get(host["name"]) or {}
            host.update(
                policy=mine.get(host["vantage"], mine.get(None)),
                violations=[_entry(v) for v in judgement.violations],
            )
            if judgement.unconfirmed:
                host["unconfirmed"] = [_entry(v) for v in judgement.unconfirmed]
            counts[judgement.kind] += 1
            counts["violations"] += len(judgement.violations)
        if not passed:
            failed.append(f"{host['name']}@{host['vantage']}")
    data["failed_hosts"] = failed
    data["compliance"] = counts
    return data
