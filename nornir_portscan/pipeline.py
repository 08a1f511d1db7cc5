"""The one path from settings to reports that every front door takes.

    settings -> ``build_job`` -> ``Job`` (one validated request, audit options, report files)
             -> ``run_job``  -> ``Audit`` (scan, then the wait and the drift re-checks)
             -> ``write_reports`` / ``host_entry`` (what each door shows)

``build_job`` checks every input, reads every input file and checks every report destination
before the first packet is sent; a door only maps its idioms (argparse, Nornir inventory data,
Ansible arguments and host variables) onto its arguments and renders the outcome.

    >>> job = build_job(["127.0.0.1"], "22,8080", expect_open="8080")  # doctest: +SKIP
    >>> audit = run_job(job)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nornir_portscan.audit.drift import load_baseline
from nornir_portscan.audit.gates import Audit, Scanner, run_audit
from nornir_portscan.audit.policy import POLICY_KEYS, load_policy_file
from nornir_portscan.errors import OptionError
from nornir_portscan.models import AddressFamily, AuditOptions, Progress, ScanRequest
from nornir_portscan.reports.files import ReportFiles, write_reports
from nornir_portscan.request import PortsSpec, TargetSpec, build_request
from nornir_portscan.targets import DEFAULT_MAX_HOSTS

__all__ = ["Job", "build_job", "number", "run_job", "write_reports"]

PathArg = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Job:
    """Everything a run needs, validated: the request (targets carrying their expectations),
    how to audit it, and the report files to write."""

    request: ScanRequest
    audit: AuditOptions = field(default_factory=AuditOptions)
    reports: ReportFiles = field(default_factory=ReportFiles)


def build_job(
    targets: str | TargetSpec | Iterable[str | TargetSpec],
    ports: PortsSpec = "top1000",
    *,
    exclude: Iterable[str] = (),
    exclude_ports: PortsSpec | None = None,
    target_files: Iterable[PathArg] = (),
    family: AddressFamily = "ipv4",
    max_hosts: int = DEFAULT_MAX_HOSTS,
    expect_open: PortsSpec | None = None,
    expect_closed: PortsSpec | None = None,
    expect_filtered: PortsSpec | None = None,
    allowed_open: PortsSpec | None = None,
    policy_file: PathArg | None = None,
    baseline: PathArg | None = None,
    recheck: int = 3,
    wait: bool = False,
    wait_timeout: float = 300.0,
    interval: float = 2.0,
    reports: ReportFiles | Mapping[str, PathArg | None] | None = None,
    allow_empty: bool = False,
    protocol: str = "tcp",
    **options: Any,
) -> Job:
    """Check every setting and input file; raises an ``InputError`` (one line) before anything
    is sent.

    Args:
        targets: Target specs (``127.0.0.1-20``, ``localhost``, ...) and ``TargetSpec`` hosts.
        ports: The ports of every target without its own: ``22,443,U:53,161`` (``T:`` and
            ``U:`` as nmap's ``-p``; ``U:top20``).
        exclude: Targets never scanned, for ``targets`` and ``TargetSpec`` hosts alike; a
            hostname excludes every address it resolves to.
        exclude_ports: Ports never scanned, own ports included.
        target_files: Files of target specs (``-iL``).
        family: ``ipv4``, ``ipv6`` or ``both``: the addresses of a hostname to scan.
        max_hosts: Refuse more hosts than this, counted before exclusions.
        expect_open: Ports that must be open on every target (the call's expectations; a
            policy file's groups and hosts and a target's own replace them key by key).
        expect_closed: Ports that must be closed.
        expect_filtered: Ports that must be filtered.
        allowed_open: The only ports allowed open.
        policy_file: A YAML policy file (defaults, groups, hosts).
        baseline: A JSON report saved earlier: report drift against it.
        recheck: Re-probe a difference from the baseline this many times before it counts.
        wait: Scan unmet expectations again until they are met or ``wait_timeout`` passes.
        wait_timeout: Seconds to wait at most, from the start of the scan.
        interval: Seconds between wait rounds.
        reports: Files to write: ``ReportFiles`` or a mapping of its fields.
        allow_empty: A job of no targets, rather than an error, when ``exclude`` removes all
            (a door that scans one inventory host at a time).
        protocol: What a port without ``T:`` or ``U:`` is, in every port list (ports,
            exclude_ports, targets' own, expectations): ``tcp``, ``udp`` (nmap's ``-sU``) or
            ``both`` (``-sS -sU``).
        **options: The fields of ``ScanOptions``.
    """
    audit = AuditOptions(recheck=recheck, wait=wait, wait_timeout=wait_timeout, interval=interval)
    files = _report_files(reports)
    files.check()
    expectations = dict(
        zip(POLICY_KEYS, (expect_open, expect_closed, expect_filtered, allowed_open), strict=True)
    )
    book = load_policy_file(policy_file) if policy_file is not None else None
    loaded = load_baseline(baseline) if baseline is not None else None
    request = build_request(
        targets,
        ports,
        exclude=exclude,
        exclude_ports=exclude_ports,
        target_files=target_files,
        family=family,
        max_hosts=max_hosts,
        policy=expectations,
        policy_book=book,
        allow_empty=allow_empty,
        protocol=protocol,
        **options,
    )
    if wait and not any(t.policy for t in request.targets):
        raise OptionError(
            "nothing to wait for: give expectations, e.g. expect_open='8080', a policy file, "
            "or a host's own"
        )
    return Job(request, replace(audit, baseline=loaded), files)


def run_job(
    job: Job,
    *,
    progress: Callable[[Progress], None] | None = None,
    scanner: Scanner | None = None,
) -> Audit:
    """Scan and judge ``job``; the reports are not written (``write_reports`` does that, so a
    door keeps the results when a write fails). Ctrl-C raises ``ScanInterrupted``: its
    ``report`` is the main scan's (partial if the main scan was interrupted), its ``audit``
    the judgement so far when the interrupt came later."""
    return run_audit(job.request, options=job.audit, progress=progress, scanner=scanner)


def _report_files(reports: ReportFiles | Mapping[str, PathArg | None] | None) -> ReportFiles:
    if reports is None or isinstance(reports, ReportFiles):
        return reports or ReportFiles()
    try:
        return ReportFiles(**reports)
    except TypeError:
        known = "json, xml, table, markdown, html"
        unknown = sorted(set(reports) - set(known.split(", ")))
        raise OptionError(
            f"unknown report format {unknown[0] if unknown else reports!r}: use {known}, "
            "e.g. reports={'json': 'scan.json'}"
        ) from None


def number(value: Any) -> Any:
    """A number a text-based door was given as text (a command line, a templated Ansible
    value): an int or a float when it reads as one, else the text unchanged, so that the one
    check of the setting names it in the same words through every door."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
