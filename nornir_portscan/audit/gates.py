"""Audits and change gates: a scan judged against policies, compared with a baseline, or
repeated until the expectations are met (like ``ansible.builtin.wait_for``, for many hosts and
ports at once).

Every front door uses ``run_audit``: the CLI (``--policy``, ``--baseline``, ``--wait``), the
Ansible module and the Nornir task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nornir_portscan.audit.drift import Drift, compare, confirm, unexpected_changes
from nornir_portscan.audit.policy import HostVerdict, Violation, evaluate, port_text
from nornir_portscan.errors import OptionError, ScanInterrupted
from nornir_portscan.models import (
    AuditOptions,
    HostResult,
    HostStatus,
    Policy,
    PortState,
    Progress,
    ScanReport,
    ScanRequest,
    Target,
)
from nornir_portscan.ports import label_ports

__all__ = [
    "Audit",
    "Unmet",
    "WaitResult",
    "apply_policies",
    "run_audit",
    "unconfirmed_text",
    "violation_text",
    "with_policy",
]

Scanner = Callable[..., ScanReport]
_HOST_ERRORS = frozenset(
    {
        HostStatus.UNRESOLVED,
        HostStatus.TIMED_OUT,
        HostStatus.ERROR,
        HostStatus.INTERRUPTED,
        HostStatus.NOT_SCANNED,
    }
)
_CUT_SHORT = frozenset({HostStatus.INTERRUPTED, HostStatus.NOT_SCANNED})


@dataclass(frozen=True, slots=True)
class Unmet:
    """An expectation that never converged while waiting."""

    host: str
    port: int | None  # None: the host itself could not be judged (unresolved, ...)
    expected: str
    actual: str


@dataclass(frozen=True, slots=True)
class WaitResult:
    """The outcome of waiting for expectations."""

    converged: bool
    elapsed: float
    rounds: int
    unmet: tuple[Unmet, ...] = ()
    timeout: float | None = field(default=None, compare=False)  # the wait_timeout given


@dataclass(frozen=True, slots=True)
class Audit:
    """Everything judged about a scan: per-host verdicts (aligned with ``report.hosts``; empty
    without policies), drift against a baseline, and the wait."""

    report: ScanReport
    verdicts: tuple[HostVerdict | None, ...] = ()
    drift: Drift | None = None
    wait: WaitResult | None = None

    def verdict(self, index: int) -> HostVerdict | None:
        """The verdict of ``report.hosts[index]``, if it had a policy."""
        return self.verdicts[index] if index < len(self.verdicts) else None

    def unexpected_drift(self, index: int) -> tuple[int, ...]:
        """Confirmed changes of ``report.hosts[index]`` its expectations do not explain."""
        host = self.report.hosts[index]
        changed = self.drift.for_host(host.name, host.address) if self.drift else None
        if changed is None:
            return ()
        verdict = self.verdict(index)
        return unexpected_changes(changed, verdict.policy if verdict else None)

    def unmet(self, index: int) -> tuple[Unmet, ...]:
        """The expectations of ``report.hosts[index]`` still unmet when the wait ended; empty
        without a wait. (``wait.unmet`` lists them all, by host name: with both address
        families one name has two hosts.)"""
        verdict = self.verdict(index)
        return _unmet(verdict) if self.wait is not None and verdict is not None else ()

    def failed(self, index: int) -> bool:
        """Whether ``report.hosts[index]`` fails the audit: an error (of the host or of a
        port, which has no state: the CLI exits 3 for it), a violated expectation (after the
        wait, if any) or unexpected confirmed drift."""
        verdict = self.verdict(index)
        host = self.report.hosts[index]
        return (
            host.status in _HOST_ERRORS
            or bool(host.error_ports)
            or (verdict is not None and verdict.compliant is not True)
            or bool(self.unexpected_drift(index))
        )

    def problems(self, index: int) -> tuple[str, ...]:
        """Why ``report.hosts[index]`` fails, one phrase per kind of problem; empty if it
        passes. Every front door shows these words."""
        host = self.report.hosts[index]
        problems = []
        if host.status in _HOST_ERRORS:
            status = host.status.value.replace("_", " ")
            problems.append(f"host {status}: {host.error}" if host.error else f"host {status}")
        elif host.error_ports:
            reasons = sorted({p.reason for p in host.ports if p.state is PortState.ERROR})
            problems.append(
                f"no state for port{'s' if len(host.error_ports) > 1 else ''} "
                f"{label_ports(host.error_ports)} ({', '.join(reasons)})"
            )
        verdict = self.verdict(index)
        unmet = [u for u in self.unmet(index) if u.port is not None]
        if self.wait is not None and verdict is not None and verdict.compliant is not True:
            problems.append(
                f"did not converge within {self.wait.timeout or self.wait.elapsed:g} s"
                + (": " + ", ".join(violation_text(u) for u in unmet) if unmet else "")
            )
        elif verdict is not None and verdict.violations:
            problems.append(", ".join(violation_text(v) for v in verdict.violations))
        elif verdict is not None and verdict.compliant is None and not problems:
            problems.append(f"not judged: {verdict.error or 'nothing scanned'}")
        unexpected = self.unexpected_drift(index)
        if unexpected:
            changed = self.drift.for_host(host.name, host.address) if self.drift else None
            assert changed is not None
            problems.append(
                "unexpected drift since the baseline: "
                + ", ".join(
                    f"port {port_text(c.port)} {c.before} -> {c.after}"
                    for c in changed.changes
                    if c.port in unexpected
                )
            )
        return tuple(problems)

    def failure(self, index: int) -> str:
        """``web1 (127.0.0.11): port 8080 closed (expected open)``: the one line that says why
        the host fails; empty when it passes."""
        if not self.failed(index):
            return ""
        host = self.report.hosts[index]
        label = host.name if host.address in (None, host.name) else f"{host.name} ({host.address})"
        return f"{label}: {'; '.join(self.problems(index) or ('failed',))}"

    @property
    def violated(self) -> bool:
        """True when a host broke its policy, a wait did not converge, unexpected drift was
        confirmed, or hosts appeared or disappeared since the baseline (that fails the run,
        not a host)."""
        return (
            any(v is not None and v.compliant is False for v in self.verdicts)
            or (self.wait is not None and not self.wait.converged)
            or any(self.unexpected_drift(i) for i in range(len(self.report.hosts)))
            or (self.drift is not None and bool(self.drift.appeared or self.drift.disappeared))
        )


def apply_policies(request: ScanRequest, policies: Sequence[Policy]) -> ScanRequest:
    """``request`` with ``policies[i]`` carried by ``request.targets[i]``, and the ports each
    policy expects something of added to the ports its target scans."""
    targets = []
    for target, policy in zip(request.targets, policies, strict=True):
        targets.append(with_policy(target, policy, request.ports))
    return replace(request, targets=tuple(targets))


def with_policy(target: Target, policy: Policy, default_ports: tuple[int, ...]) -> Target:
    """``target`` carrying ``policy``, scanning the ports the policy expects a state of."""
    ports = target.ports or default_ports
    extra = policy.ports.difference(ports)
    return replace(
        target, policy=policy, ports=tuple(sorted({*ports, *extra})) if extra else target.ports
    )


def run_audit(
    request: ScanRequest,
    policies: Sequence[Policy] | None = None,
    *,
    options: AuditOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    scanner: Scanner | None = None,
    **audit: Any,
) -> Audit:
    """Scan ``request`` and judge it: each target against the policy it carries, the whole scan
    against ``options`` (an ``AuditOptions``, or its fields as keywords: ``baseline``,
    ``recheck``, ``wait``, ``wait_timeout``, ``interval``).

    ``policies``, aligned with ``request.targets``, replace the targets' own. With ``wait``,
    unmet expectations are scanned again every ``interval`` seconds until all are met or
    ``wait_timeout`` passes. With a ``baseline``, differences are re-probed ``recheck`` times
    before they count. Ctrl-C at any stage raises ``ScanInterrupted`` whose ``report`` is the
    main scan's (merged with the rounds of the wait so far) and ``audit`` its judgement.
    """
    if scanner is None:
        from nornir_portscan.engine.executor import scan

        scanner = scan
    options = options if options is not None else AuditOptions(**audit)
    if policies:
        request = apply_policies(request, policies)
    if options.wait and not any(t.policy for t in request.targets):
        raise OptionError(
            "nothing to wait for: give expectations, e.g. expect_open='8080' or a policy file"
        )
    started = time.monotonic()
    try:
        report = scanner(request, progress=progress)
    except ScanInterrupted as exc:  # judge what was scanned; the rest is not judged
        raise ScanInterrupted(exc.report, _judged(exc.report, request)) from None
    audit_so_far = _judged(report, request)
    try:
        if options.wait:
            audit_so_far = _wait(request, audit_so_far, started, options, scanner)
        if options.baseline is not None:
            drift = compare(options.baseline, audit_so_far.report)
            if options.recheck > 0:
                drift = confirm(
                    drift,
                    request.options,
                    lambda r: scanner(r, progress=None),
                    times=options.recheck,
                )
            audit_so_far = replace(audit_so_far, drift=drift)
    except KeyboardInterrupt as exc:  # a re-check's partial report is not kept: the main one is
        kept = getattr(exc, "audit", None) or audit_so_far
        interrupted = replace(kept.report, interrupted=True)
        raise ScanInterrupted(interrupted, replace(kept, report=interrupted)) from None
    return audit_so_far


def _judged(report: ScanReport, request: ScanRequest) -> Audit:
    if not any(t.policy for t in request.targets):
        return Audit(report)
    return Audit(
        report,
        tuple(_judge(h, t.policy) for h, t in zip(report.hosts, request.targets, strict=True)),
    )


def _judge(host: HostResult, policy: Policy) -> HostVerdict | None:
    if not policy:
        return None
    verdict = evaluate(host, policy)
    if host.status in _CUT_SHORT:
        # An interrupt is no network answer: a port it left unscanned breaks no expectation.
        # What the scanned ports said still counts; the rest is not judged.
        found = tuple(v for v in verdict.violations if v.actual != "not scanned")
        if not found:
            return HostVerdict(host.name, None, error=host.error, policy=policy)
        return replace(verdict, compliant=False, violations=found)
    return verdict


def _wait(
    request: ScanRequest,
    audit: Audit,
    started: float,
    options: AuditOptions,
    scanner: Scanner,
) -> Audit:
    """Rescan only the violating ports until they are as expected or time runs out. An
    interrupt raises ``ScanInterrupted`` with the rounds merged so far."""
    rounds = 1
    hosts = list(audit.report.hosts)
    verdicts = list(audit.verdicts)
    try:
        while True:
            pending = [
                i for i, v in enumerate(verdicts) if v is not None and v.compliant is not True
            ]
            elapsed = time.monotonic() - started
            if not pending or elapsed + options.interval > options.wait_timeout:
                break
            time.sleep(options.interval)
            targets = []
            for i in pending:
                verdict = verdicts[i]
                assert verdict is not None
                # one port may break two rules (expect_closed and the allow-list): probe it once
                ports = tuple(sorted({v.port for v in verdict.violations}))
                target = request.targets[i]
                if verdict.compliant is None or not ports:  # not judged: try the host again
                    ports = request.ports_for(target)
                targets.append(replace(target, ports=ports))
            again = scanner(replace(request, targets=tuple(targets)), progress=None)
            rounds += 1
            for i, host in zip(pending, again.hosts, strict=True):
                hosts[i] = _merge(hosts[i], host)
                verdicts[i] = _judge(hosts[i], request.targets[i].policy)
    except KeyboardInterrupt:
        partial = Audit(replace(audit.report, hosts=tuple(hosts)), tuple(verdicts))
        raise ScanInterrupted(partial.report, partial) from None
    unmet = [u for verdict in verdicts if verdict is not None for u in _unmet(verdict)]
    elapsed = round(time.monotonic() - started, 3)
    result = WaitResult(not unmet, elapsed, rounds, tuple(unmet), options.wait_timeout)
    return Audit(replace(audit.report, hosts=tuple(hosts)), tuple(verdicts), wait=result)


def violation_text(violation: Violation | Unmet) -> str:
    """``port 8443 open (not in allowed_open)``, ``port 8080 closed (expected open)`` or
    ``port 53/udp open|filtered (no response; expected open)``."""
    port = port_text(violation.port) if violation.port is not None else "-"
    if violation.expected == "not open":
        return f"port {port} open (not in allowed_open)"
    if violation.actual == PortState.OPEN_FILTERED.value:
        return f"port {port} open|filtered (no response; expected {violation.expected})"
    return f"port {port} {violation.actual} (expected {violation.expected})"


def unconfirmed_text(entry: Violation) -> str:
    """``port 161/udp open|filtered (no response; not in allowed_open, not proven open)``: a
    ``HostVerdict.unconfirmed`` entry."""
    return (
        f"port {port_text(entry.port)} open|filtered (no response; not in allowed_open, "
        "not proven open)"
    )


def _unmet(verdict: HostVerdict) -> tuple[Unmet, ...]:
    """What a host's verdict says is still not as expected."""
    if verdict.compliant is True:
        return ()
    unjudged = (
        (Unmet(verdict.name, None, "judged", verdict.error or "unknown"),)
        if verdict.compliant is None
        else ()
    )
    return unjudged + tuple(
        Unmet(verdict.name, v.port, v.expected, v.actual) for v in verdict.violations
    )


def _merge(old: HostResult, new: HostResult) -> HostResult:
    """``old`` with the ports ``new`` probed again replaced by their new answers."""
    redone = set(new.scanned) | {p.key for p in new.ports}
    kept = [p for p in old.ports if p.key not in redone]
    ports = tuple(sorted([*kept, *new.ports], key=lambda p: p.key))
    closed_before = sum(1 for p in redone if old.state_of(p) is PortState.CLOSED)
    closed_now = sum(1 for p in new.scanned if new.state_of(p) is PortState.CLOSED)
    status = HostStatus.UP if new.status is HostStatus.UP else old.status
    known = set(old.scanned)
    added = tuple(p for p in new.scanned if p not in known)
    return replace(
        old,
        ports=ports,
        closed_count=old.closed_count - closed_before + closed_now,
        status=status,
        # a host that timed out did not scan every port: add the ones probed now
        scanned=(*old.scanned, *added) if added else old.scanned,
        rate_limited=old.rate_limited or new.rate_limited,
    )
