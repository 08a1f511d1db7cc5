"""Audits and change gates: a scan judged against policies, compared with a baseline, or
repeated until the expectations are met (like ``ansible.builtin.wait_for``, for many hosts and
ports at once).

Every front door uses ``run_audit``: the CLI (``--policy``, ``--baseline``, ``--wait``), the
Ansible module and the Nornir task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from nornir_portscan.audit.drift import Drift, compare, confirm, unexpected_changes
from nornir_portscan.audit.policy import HostVerdict, Policy, evaluate
from nornir_portscan.errors import OptionError
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    PortState,
    Progress,
    ScanReport,
    ScanRequest,
    Target,
)

__all__ = ["Audit", "Unmet", "WaitResult", "apply_policies", "run_audit"]

Scanner = Callable[..., ScanReport]
_HOST_ERRORS = frozenset({HostStatus.UNRESOLVED, HostStatus.TIMED_OUT, HostStatus.ERROR})


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
        """Whether ``report.hosts[index]`` fails the audit: an error, a violated expectation
        (after the wait, if any) or unexpected confirmed drift."""
        verdict = self.verdict(index)
        return (
            self.report.hosts[index].status in _HOST_ERRORS
            or (verdict is not None and verdict.compliant is not True)
            or bool(self.unexpected_drift(index))
        )

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
    """Add the ports each target's policy expects something of to the ports it scans."""
    if not any(p.ports for p in policies):
        return request
    targets = []
    for target, policy in zip(request.targets, policies, strict=True):
        ports = request.ports_for(target)
        extra = policy.ports - set(ports)
        targets.append(replace(target, ports=tuple(sorted({*ports, *extra}))) if extra else target)
    return replace(request, targets=tuple(targets))


def run_audit(
    request: ScanRequest,
    policies: Sequence[Policy] | None = None,
    *,
    baseline: Mapping[str, Any] | None = None,
    wait: bool = False,
    wait_timeout: float = 300.0,
    interval: float = 2.0,
    recheck: int = 3,
    progress: Callable[[Progress], None] | None = None,
    scanner: Scanner | None = None,
) -> Audit:
    """Scan ``request`` and judge it.

    ``policies`` align with ``request.targets``. With ``wait``, unmet expectations are scanned
    again every ``interval`` seconds until all are met or ``wait_timeout`` passes. With a
    ``baseline`` (a JSON report), differences are re-probed ``recheck`` times before they count.
    """
    if scanner is None:
        from nornir_portscan.engine.executor import scan

        scanner = scan
    if wait and not (policies and any(policies)):
        raise OptionError(
            "nothing to wait for: give expectations, e.g. expect_open='8080' or a policy file"
        )
    if wait_timeout <= 0 or interval <= 0:
        raise OptionError(
            f"invalid wait_timeout {wait_timeout!r} or interval {interval!r}: use seconds > 0, "
            "e.g. wait_timeout=60 interval=2"
        )
    policies = list(policies) if policies else []
    if policies:
        request = apply_policies(request, policies)
    started = time.monotonic()
    report = scanner(request, progress=progress)
    verdicts: list[HostVerdict | None] = [
        evaluate(h, p) if p else None for h, p in zip(report.hosts, policies, strict=False)
    ]
    waited = None
    if wait:
        report, verdicts, waited = _wait(
            request, report, verdicts, policies, started, wait_timeout, interval, scanner
        )
    drift = None
    if baseline is not None:
        drift = compare(baseline, report)
        if recheck > 0:
            drift = confirm(
                drift, request.options, lambda r: scanner(r, progress=None), times=recheck
            )
    return Audit(report, tuple(verdicts), drift, waited)


def _wait(
    request: ScanRequest,
    report: ScanReport,
    verdicts: list[HostVerdict | None],
    policies: list[Policy],
    started: float,
    wait_timeout: float,
    interval: float,
    scanner: Scanner,
) -> tuple[ScanReport, list[HostVerdict | None], WaitResult]:
    """Rescan only the violating ports until they are as expected or time runs out."""
    rounds = 1
    hosts = list(report.hosts)
    while True:
        pending = [i for i, v in enumerate(verdicts) if v is not None and v.compliant is not True]
        elapsed = time.monotonic() - started
        if not pending or elapsed + interval > wait_timeout:
            break
        time.sleep(interval)
        targets, index = [], []
        for i in pending:
            verdict = verdicts[i]
            assert verdict is not None
            # one port may break two rules (expect_closed and the allow-list): probe it once
            ports = tuple(sorted({v.port for v in verdict.violations}))
            target = request.targets[i]
            if verdict.compliant is None or not ports:  # not judged: try the host again
                ports = request.ports_for(target)
            targets.append(Target(target.name, target.address, ports, target.error))
            index.append(i)
        again = scanner(replace(request, targets=tuple(targets)), progress=None)
        rounds += 1
        for i, host in zip(index, again.hosts, strict=True):
            hosts[i] = _merge(hosts[i], host)
            verdicts[i] = evaluate(hosts[i], policies[i])
    unmet = [u for verdict in verdicts if verdict is not None for u in _unmet(verdict)]
    result = WaitResult(not unmet, round(time.monotonic() - started, 3), rounds, tuple(unmet))
    return replace(report, hosts=tuple(hosts)), verdicts, result


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
    redone = set(new.scanned) | {p.port for p in new.ports}
    kept = [p for p in old.ports if p.port not in redone]
    ports = tuple(sorted([*kept, *new.ports], key=lambda p: p.port))
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
    )
