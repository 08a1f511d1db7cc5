"""Exceptions raised by nornir-portscan.

The tree::

    PortscanError                      base of everything raised on purpose
    ├── InputError (also ValueError)   bad user input, raised before any packet is sent
    │   ├── PortSpecError              a bad port, range, service name or port set
    │   ├── TargetSpecError            a bad address, range, CIDR block, hostname or target file
    │   ├── ScopeError                 the targets expand to more hosts than allowed
    │   ├── OptionError                a bad option value (timeout, rate, concurrency, ...)
    │   └── ReportPathError            a report cannot be written where asked (checked before
    │                                  the scan: no such directory, not writable, a directory)
    └── ScanError                      the scan itself could not run (no worker could start)
        └── ReportError                a report could not be written after the scan (disk full);
                                       the results stand, the previous file is intact

    ScanInterrupted (KeyboardInterrupt) Ctrl-C during a scan; ``.report`` holds the partial report
                                       (the main scan's when a re-check or wait is interrupted)

Every ``InputError`` message is one line that names the bad token and shows a valid form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nornir_portscan.audit.gates import Audit
    from nornir_portscan.models import ScanReport

__all__ = [
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
]


class PortscanError(Exception):
    """Base class of the errors nornir-portscan raises on purpose."""


class InputError(PortscanError, ValueError):
    """Bad user input; raised before any packet is sent."""


class PortSpecError(InputError):
    """A port specification that cannot be parsed."""


class TargetSpecError(InputError):
    """A target specification that cannot be parsed or read."""


class ScopeError(InputError):
    """The targets expand to more hosts than the scope guard allows."""


class OptionError(InputError):
    """An option value out of range."""


class ReportPathError(InputError):
    """A report destination that cannot be written; found before the scan starts."""


class ScanError(PortscanError):
    """The scan could not run (for example, no worker process could be started)."""


class ReportError(ScanError):
    """A report could not be written after the scan; the previous file, if any, is intact."""


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during a scan. ``report`` is the partial report gathered so far; ``audit`` its
    judgement, when the interrupt came after the main scan (during a wait or a re-check)."""

    def __init__(self, report: ScanReport, audit: Audit | None = None) -> None:
        super().__init__("scan interrupted")
        self.report = report
        self.audit = audit
