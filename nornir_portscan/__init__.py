"""nornir-portscan: a fast TCP connect port scanner.

One engine (``scan``) behind three front doors: the ``portscan`` command line, the Ansible
module ``nornir_portscan.portscan.portscan`` and the Nornir task ``portscan``.

    >>> from nornir_portscan import build_request, scan
    >>> report = scan(build_request(["127.0.0.1"], ports="22,80"))  # doctest: +SKIP

Names are imported on first use (PEP 562), so a worker process pays only for what it needs and
the engine never imports nornir unless the Nornir task is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nornir_portscan.audit.gates import Audit
    from nornir_portscan.engine.executor import scan
    from nornir_portscan.engine.processes import WorkerPool
    from nornir_portscan.engine.service import ScanService
    from nornir_portscan.errors import (
        InputError,
        OptionError,
        PortscanError,
        PortSpecError,
        ReportError,
        ReportPathError,
        ScanError,
        ScanInterrupted,
        ScopeError,
        TargetSpecError,
    )
    from nornir_portscan.fleet import (
        FleetTarget,
        MergedReport,
        Plan,
        Scanner,
        Shard,
        build_plan,
        merge_reports,
        missing_shards,
    )
    from nornir_portscan.models import (
        AuditOptions,
        HostResult,
        HostStatus,
        Policy,
        PortResult,
        PortState,
        Progress,
        ScanOptions,
        ScanReport,
        ScanRequest,
        Target,
    )
    from nornir_portscan.nornir.processors import ProgressBar
    from nornir_portscan.nornir.tasks import portscan, scan_inventory
    from nornir_portscan.pipeline import Job, build_job, run_job
    from nornir_portscan.ports import parse_ports
    from nornir_portscan.reports.data import host_entry, report_to_dict
    from nornir_portscan.reports.files import ReportFiles, write_reports
    from nornir_portscan.request import TargetSpec, build_request
    from nornir_portscan.targets import parse_targets

__version__ = "0.1.0"

_EXPORTS = {
    "nornir_portscan.errors": [
        "InputError",
        "OptionError",
        "PortSpecError",
        "PortscanError",
        "ReportError",
        "ReportPathError",
        "ScanError",
        "ScanInterrupted",
        "ScopeError",
        "TargetSpecError",
    ],
    "nornir_portscan.audit.gates": ["Audit"],
    "nornir_portscan.fleet": [
        "FleetTarget",
        "MergedReport",
        "Plan",
        "Scanner",
        "Shard",
        "build_plan",
        "merge_reports",
        "missing_shards",
    ],
    "nornir_portscan.models": [
        "AuditOptions",
        "HostResult",
        "HostStatus",
        "Policy",
        "PortResult",
        "PortState",
        "Progress",
        "ScanOptions",
        "ScanReport",
        "ScanRequest",
        "Target",
    ],
    "nornir_portscan.pipeline": ["Job", "build_job", "run_job"],
    "nornir_portscan.reports.files": ["ReportFiles", "write_reports"],
    "nornir_portscan.ports": ["parse_ports"],
    "nornir_portscan.nornir.processors": ["ProgressBar"],
    "nornir_portscan.reports.data": ["host_entry", "report_to_dict"],
    "nornir_portscan.engine.executor": ["scan"],
    "nornir_portscan.engine.processes": ["WorkerPool"],
    "nornir_portscan.engine.service": ["ScanService"],
    "nornir_portscan.request": ["TargetSpec", "build_request"],
    "nornir_portscan.targets": ["parse_targets"],
    "nornir_portscan.nornir.tasks": ["portscan", "scan_inventory"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "Audit",
    "AuditOptions",
    "FleetTarget",
    "HostResult",
    "HostStatus",
    "InputError",
    "Job",
    "MergedReport",
    "OptionError",
    "Plan",
    "Policy",
    "PortResult",
    "PortSpecError",
    "PortState",
    "PortscanError",
    "Progress",
    "ProgressBar",
    "ReportError",
    "ReportFiles",
    "ReportPathError",
    "ScanError",
    "ScanInterrupted",
    "ScanOptions",
    "ScanReport",
    "ScanRequest",
    "ScanService",
    "Scanner",
    "ScopeError",
    "Shard",
    "Target",
    "TargetSpec",
    "TargetSpecError",
    "WorkerPool",
    "__version__",
    "build_job",
    "build_plan",
    "build_request",
    "host_entry",
    "merge_reports",
    "missing_shards",
    "parse_ports",
    "parse_targets",
    "portscan",
    "report_to_dict",
    "run_job",
    "scan",
    "scan_inventory",
    "write_reports",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nornir_portscan' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "nornir":
            raise
        raise ImportError(
            f"nornir_portscan.{name} is the Nornir task and needs Nornir: "
            "pip install 'nornir-portscan[nornir]'"
        ) from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
