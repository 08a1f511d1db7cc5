"""Typed, frozen models for scan requests and results. All of them pickle."""

from __future__ import annotations

import enum
import math
import socket
from dataclasses import dataclass, field
from typing import Literal

from nornir_portscan.errors import OptionError

__all__ = [
    "AddressFamily",
    "HostResult",
    "HostStatus",
    "PortResult",
    "PortState",
    "Progress",
    "ScanOptions",
    "ScanReport",
    "ScanRequest",
    "Target",
]

AddressFamily = Literal["ipv4", "ipv6", "both"]


class PortState(enum.StrEnum):
    """What the network said about a port; ``ERROR`` means it said nothing we could trust."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    ERROR = "error"


class HostStatus(enum.StrEnum):
    """Outcome for one host."""

    UP = "up"  # at least one port answered (open or closed)
    NO_RESPONSE = "no-response"  # every scanned port was filtered
    UNRESOLVED = "unresolved"  # the name did not resolve
    TIMED_OUT = "timed_out"  # the host timeout expired; results are partial
    ERROR = "error"  # only local errors; nothing is known about the host


@dataclass(frozen=True, slots=True)
class Target:
    """One address to scan. ``name`` is what the user wrote (or the address itself)."""

    name: str
    address: str | None  # None when the name did not resolve
    ports: tuple[int, ...] = ()  # per-target ports; empty means the request's ports
    error: str | None = None  # why ``address`` is None

    @property
    def family(self) -> int:
        """The socket address family of ``address``."""
        return socket.AF_INET6 if self.address and ":" in self.address else socket.AF_INET


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanOptions:
    """How to scan. Every field has a sane default; bad values raise ``OptionError``."""

    timeout: float = 1.0
    """Connect timeout in seconds: the ceiling of the adaptive per-probe timeout."""
    min_timeout: float = 0.1
    """Floor of the adaptive timeout, in seconds."""
    adaptive: bool = True
    """Learn each host's round-trip time and wait srtt + 4*rttvar instead of ``timeout``."""
    retries: int = 1
    """Extra attempts for a port that gave no response; one more once some port answered only
    its last attempt (SYNs dropped for a while, by a full accept queue or a policer)."""
    rate: float | None = None
    """Global limit in probes per second, shared by all workers; None for no limit."""
    concurrency: int = 1000
    """Probes in flight per worker process."""
    host_concurrency: int | None = None
    """Probes in flight per host (across all workers); None for no cap."""
    processes: int | None = None
    """Worker processes; None for one per CPU."""
    host_timeout: float | None = None
    """Give up on a host after this many seconds; its results so far are kept."""
    include_closed: bool = False
    """List closed ports in ``HostResult.ports`` (they are always counted)."""

    def __post_init__(self) -> None:
        _positive("timeout", self.timeout)
        _positive("min_timeout", self.min_timeout)
        if self.min_timeout > self.timeout:
            raise OptionError(
                f"invalid min_timeout {self.min_timeout!r}: it must not exceed timeout "
                f"{self.timeout!r}, e.g. min_timeout=0.1 with timeout=1.0"
            )
        if not isinstance(self.retries, int) or not 0 <= self.retries <= 10:
            raise OptionError(f"invalid retries {self.retries!r}: use 0 to 10, e.g. retries=1")
        if self.rate is not None:
            _positive("rate", self.rate)
        _count("concurrency", self.concurrency, 100_000)
        if self.host_concurrency is not None:
            _count("host_concurrency", self.host_concurrency, 100_000)
        if self.processes is not None:
            _count("processes", self.processes, 256)
        if self.host_timeout is not None:
            _positive("host_timeout", self.host_timeout)


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise OptionError(
            f"invalid {name} {value!r}: use a number of seconds > 0, e.g. {name}=1.5"
            if "timeout" in name
            else f"invalid {name} {value!r}: use a number > 0, e.g. {name}=1000"
        )
    if math.isnan(value) or math.isinf(value):
        raise OptionError(f"invalid {name} {value!r}: use a finite number, e.g. {name}=1.5")


def _count(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise OptionError(
            f"invalid {name} {value!r}: use a whole number from 1 to {maximum}, e.g. {name}=100"
        )


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """Resolved targets, the default ports and the options: everything a scan needs."""

    targets: tuple[Target, ...]
    ports: tuple[int, ...]
    options: ScanOptions = field(default_factory=ScanOptions)

    def ports_for(self, target: Target) -> tuple[int, ...]:
        """The ports to scan on ``target``."""
        return target.ports or self.ports

    @property
    def probe_count(self) -> int:
        """Ports to probe over all resolved targets (first attempts only)."""
        return sum(len(self.ports_for(t)) for t in self.targets if t.address)


@dataclass(frozen=True, slots=True)
class PortResult:
    """One port's answer."""

    port: int
    state: PortState
    reason: str  # syn-ack, conn-refused, no-response, host-unreach, ... or an errno name
    rtt_ms: float | None  # None when nothing answered
    attempts: int


@dataclass(frozen=True, slots=True)
class HostResult:
    """One target's results. ``ports`` holds every port that is not closed (all on request)."""

    name: str
    address: str | None
    status: HostStatus
    ports: tuple[PortResult, ...] = ()
    closed_count: int = 0
    error: str | None = None
    scanned: tuple[int, ...] = ()  # every port probed to the end, in request order

    def _with_state(self, state: PortState) -> list[int]:
        return [p.port for p in self.ports if p.state is state]

    @property
    def open_ports(self) -> list[int]:
        """Open ports, sorted."""
        return self._with_state(PortState.OPEN)

    @property
    def filtered_ports(self) -> list[int]:
        """Filtered ports, sorted."""
        return self._with_state(PortState.FILTERED)

    @property
    def error_ports(self) -> list[int]:
        """Ports with a local error (no state known), sorted."""
        return self._with_state(PortState.ERROR)

    def state_of(self, port: int) -> PortState | None:
        """The state of ``port``; None if it was not scanned (or the host was not reached)."""
        for result in self.ports:
            if result.port == port:
                return result.state
        if self.address is not None and port in self.scanned:
            return PortState.CLOSED
        return None


@dataclass(frozen=True, slots=True)
class ScanReport:
    """The result of one scan."""

    hosts: tuple[HostResult, ...]
    options: ScanOptions
    started: float  # Unix time
    finished: float  # Unix time
    probes_sent: int
    warnings: tuple[str, ...] = ()
    interrupted: bool = False

    @property
    def duration(self) -> float:
        """Wall time of the scan in seconds."""
        return max(0.0, self.finished - self.started)

    @property
    def rate(self) -> float:
        """Achieved probes per second."""
        return self.probes_sent / self.duration if self.duration else 0.0


@dataclass(frozen=True, slots=True)
class Progress:
    """Passed to a progress callback: probes done of the total first attempts."""

    done: int
    total: int
    elapsed: float
