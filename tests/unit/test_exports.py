"""The public API, locked: adding or removing a name is a decision, made here."""

import subprocess
import sys

import nornir_portscan

PUBLIC = [
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


def test_the_public_api_is_exactly_this():
    assert nornir_portscan.__all__ == PUBLIC
    assert sorted(dir(nornir_portscan)) == sorted(PUBLIC)


def test_every_exported_name_resolves():
    for name in nornir_portscan.__all__:
        assert getattr(nornir_portscan, name) is not None, name


def test_input_errors_are_value_errors():
    for name in ("InputError", "OptionError", "PortSpecError", "ReportPathError", "ScopeError",
                 "TargetSpecError"):
        assert issubclass(getattr(nornir_portscan, name), ValueError), name
    assert issubclass(nornir_portscan.ReportError, nornir_portscan.ScanError)


def test_the_pipeline_imports_neither_nornir_ansible_nor_gevent():
    """The engine's parent side and every layer but the Nornir door run without them."""
    code = (
        "import sys, nornir_portscan.pipeline, nornir_portscan.cli;"
        "import nornir_portscan.engine.executor;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('nornir', 'ansible', 'gevent')];"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def test_nornir_is_optional():
    """Without Nornir the engine, the pipeline and the CLI work; the task says what to install."""
    code = (
        "import sys; sys.modules['nornir'] = None\n"
        "import nornir_portscan\n"
        "from nornir_portscan import build_job, scan\n"
        "try:\n"
        "    nornir_portscan.portscan\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == (
        "nornir_portscan.portscan is the Nornir task and needs Nornir: "
        "pip install 'nornir-portscan[nornir]'\n"
    )
