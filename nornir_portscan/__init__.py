"""nornir-portscan: a fast TCP connect port scanner.

One engine (``scan``) behind three front doors: the ``portscan`` command line, the Ansible
module ``nornir_portscan.portscan.portscan`` and the Nornir task ``portscan``.

    >>> from nornir_portscan import build_request, scan
    >>> report = scan(build_request(["127.0.0.1"], ports="22,80"))  # doctest: +SKIP
"""

from nornir_portscan.errors import (
    InputError,
    OptionError,
    PortscanError,
    PortSpecError,
    ScanError,
    ScanInterrupted,
    ScopeError,
    TargetSpecError,
)
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    PortResult,
    PortState,
    Progress,
    ScanOptions,
    ScanReport,
    ScanRequest,
    Target,
)
from nornir_portscan.ports import parse_ports
from nornir_portscan.report import host_to_dict, report_to_dict
from nornir_portscan.scanner import build_request, scan
from nornir_portscan.targets import parse_targets

__version__ = "0.1.0"

__all__ = [
    "HostResult",
    "HostStatus",
    "InputError",
    "OptionError",
    "PortResult",
    "PortSpecError",
    "PortState",
    "PortscanError",
    "Progress",
    "ScanError",
    "ScanInterrupted",
    "ScanOptions",
    "ScanReport",
    "ScanRequest",
    "ScopeError",
    "Target",
    "TargetSpecError",
    "__version__",
    "build_request",
    "host_to_dict",
    "parse_ports",
    "parse_targets",
    "report_to_dict",
    "scan",
]
