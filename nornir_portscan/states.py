"""``PortState``, apart from the other models so that a worker, which needs only it, does not
build them all. ``nornir_portscan.models`` re-exports it."""

from __future__ import annotations

import enum

__all__ = ["PortState"]


class PortState(enum.StrEnum):
    """What the network said about a port; ``ERROR`` means it said nothing we could trust."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    OPEN_FILTERED = "open|filtered"  # UDP: no answer after every attempt (nmap's word)
    ERROR = "error"
