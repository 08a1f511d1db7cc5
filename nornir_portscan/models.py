"""Typed, frozen models for scan requests and results. All of them pickle.

Ports in tuples and sets (a request's, a target's, a policy's, ``HostResult.scanned``) are port
keys: a TCP port is its number, a UDP port its number plus ``ports.UDP`` (``ports.udp_key``).
A ``PortResult`` holds the number and the protocol, and its ``key``.
"""

from __future__ import annotations

import enum
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nornir_portscan.addresses import address_problem
from nornir_portscan.errors import OptionError, PortSpecError, TargetSpecError
from nornir_portscan.ports import UDP as _UDP
from nornir_portscan.states import PortState

__all__ = [
    "PARTIAL_STATUSES",
    "AddressFamily",
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
]

AddressFamily = Literal["ipv4", "ipv6", "both"]


class HostStatus(enum.StrEnum):
    """Outcome for one host."""

    UP = "up"  # a port answered (open or closed), or the host sent an ICMP error itself
    NO_RESPONSE = "no-response"  # every scanned port was filtered
    UNRESOLVED = "unresolved"  # the name did not resolve
    TIMED_OUT = "timed_out"  # the host timeout expired; results are partial
    ERROR = "error"  # only local errors; nothing is known about the host
    INTERRUPTED = "interrupted"  # the scan was interrupted part way; results are partial
    NOT_SCANNED = "not-scanned"  # the scan was interrupted before any port of the host ended


PARTIAL_STATUSES = frozenset({HostStatus.TIMED_OUT, HostStatus.INTERRUPTED, HostStatus.NOT_SCANNED})
"""Statuses of a host whose ``unscanned`` ports were not scanned: no verdict on those."""


_EXPECTED_STATE = {
    "expect_open": PortState.OPEN,
    "expect_closed": PortState.CLOSED,
    "expect_filtered": PortState.FILTERED,
}


@dataclass(frozen=True, slots=True)
class Policy:
    """What a host's ports should look like. Empty sets expect nothing.

    ``expect_open``, ``expect_closed`` and ``expect_filtered``: each port must be in that state;
    ``allowed_open``: every open port not in it is a violation (None: no allow-list).
    """

    expect_open: frozenset[int] = frozenset()
    expect_closed: frozenset[int] = frozenset()
    expect_filtered: frozenset[int] = frozenset()
    allowed_open: frozenset[int] | None = None

    @property
    def ports(self) -> frozenset[int]:
        """The ports this policy expects a state of; they must be scanned."""
        return self.expect_open | self.expect_closed | self.expect_filtered

    def __bool__(self) -> bool:
        return bool(self.ports) or self.allowed_open is not None

    def expected(self, port: int) -> PortState | None:
        """The state ``port`` must have, if any."""
        for key, state in _EXPECTED_STATE.items():
            if port in getattr(self, key):
                return state
        return None


NO_POLICY = Policy()


@dataclass(frozen=True, slots=True)
class Target:
    """One address to scan, with what is expected of it.

    ``name`` is what the user wrote (or the address itself); ``policy`` travels with the target,
    so a verdict never has to find its target again by name.
    """

    name: str
    address: str | None  # None when the name did not resolve
    ports: tuple[int, ...] = ()  # per-target ports; empty means the request's ports
    error: str | None = None  # why ``address`` is None
    policy: Policy = NO_POLICY

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
    """Extra attempts for a port that gave no response. Once a retry answered (SYNs dropped for
    a while, by loss, a full accept queue or a policer): three more than the latest attempt
    that answered, up to ten; ten, one at a time, once a host dropped a quarter of its probes."""
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
        _flag("adaptive", self.adaptive)
        _flag("include_closed", self.include_closed)
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


_EXAMPLES = {"rate": "1000", "interval": "2", "wait_timeout": "60", "min_timeout": "0.1"}


def _positive(name: str, value: float) -> None:
    seconds = "timeout" in name or name == "interval"
    # ``not value > 0`` refuses nan too
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or math.isinf(value)
    ):
        what = "a number of seconds" if seconds else "a number"
        raise OptionError(
            f"invalid {name} {value!r}: use {what} > 0, e.g. {name}={_EXAMPLES.get(name, '1.5')}"
        )


def _flag(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise OptionError(f"invalid {name} {value!r}: use True or False, e.g. {name}=True")


def _count(name: str, value: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise OptionError(
            f"invalid {name} {value!r}: use a whole number from 1 to {maximum}, e.g. {name}=100"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditOptions:
    """How to judge a scan beyond its policies; bad values raise ``OptionError``."""

    baseline: Mapping[str, Any] | None = None
    """A JSON report saved earlier (``audit.drift.load_baseline``) to compare the scan with."""
    recheck: int = 3
    """How many times to probe a difference from the baseline again before it counts."""
    wait: bool = False
    """Scan unmet expectations again until all are met or ``wait_timeout`` passes."""
    wait_timeout: float = 300.0
    """Seconds to wait at most, counted from the start of the scan."""
    interval: float = 2.0
    """Seconds between the rounds of a wait."""

    def __post_init__(self) -> None:
        recheck = self.recheck
        if isinstance(recheck, bool) or not isinstance(recheck, int) or not 0 <= recheck <= 10:
            raise OptionError(
                f"invalid recheck {self.recheck!r}: use how many times to re-probe a "
                "difference from the baseline, 0 to 10, e.g. recheck=3"
            )
        _flag("wait", self.wait)
        _positive("wait_timeout", self.wait_timeout)
        _positive("interval", self.interval)


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """Resolved targets, the default ports and the options: everything a scan needs."""

    targets: tuple[Target, ...]
    ports: tuple[int, ...]
    options: ScanOptions = field(default_factory=ScanOptions)

    def __post_init__(self) -> None:
        _check_request(self)

    def ports_for(self, target: Target) -> tuple[int, ...]:
        """The ports to scan on ``target``."""
        return target.ports or self.ports

    @property
    def probe_count(self) -> int:
        """Ports to probe over all resolved targets (first attempts only)."""
        return sum(len(self.ports_for(t)) for t in self.targets if t.address)


_BUILD = "build it with build_request, e.g. build_request(['127.0.0.1'], '22,443')"


def _check_request(request: ScanRequest) -> None:
    """Refuse a request a worker must not be given (a hand-built one: ``build_request`` makes
    only good ones): a worker resolves no name and checks no port, the parent does."""
    if not isinstance(request.options, ScanOptions):
        raise OptionError(f"invalid options {request.options!r}: give ScanOptions, {_BUILD}")
    if not isinstance(request.targets, tuple):
        raise TargetSpecError(f"invalid targets {request.targets!r}: give a tuple, {_BUILD}")
    _check_ports(request.ports, "the request's ports")
    checked: set[int] = set()  # targets share their port tuples: check each one once
    for target in request.targets:
        if not isinstance(target, Target):
            raise TargetSpecError(f"invalid target {target!r}: give a Target, {_BUILD}")
        address = target.address
        if address is not None:
            problem = address_problem(address) if isinstance(address, str) else "not a string"
            if problem is not None:
                raise TargetSpecError(
                    f"invalid address {address!r} of target {target.name!r}: {problem}; "
                    f"a request holds resolved addresses, {_BUILD}"
                )
        if target.ports and id(target.ports) not in checked:
            _check_ports(target.ports, f"the ports of target {target.name!r}")
            checked.add(id(target.ports))


def _check_ports(ports: tuple[int, ...], whose: str) -> None:
    if not isinstance(ports, tuple):
        raise PortSpecError(f"invalid ports {ports!r} in {whose}: give a tuple, {_BUILD}")
    if ports and set(map(type, ports)) == {int} and min(ports) >= 1 and max(ports) <= 65535:
        pass  # every port fine (at C speed: a request can hold 65,535 ports per target)
    else:
        _check_each_port(ports, whose)
    if len(set(ports)) != len(ports):
        twice = next(p for i, p in enumerate(ports) if p in ports[:i])
        raise PortSpecError(f"port {twice} is given twice in {whose}: give each once, {_BUILD}")


def _check_each_port(ports: tuple[int, ...], whose: str) -> None:
    for port in ports:
        # a subclass may not unpickle; a UDP port key is the port number plus ports.UDP
        if type(port) is not int or not (1 <= port <= 65535 or _UDP < port <= _UDP + 65535):
            kind = "" if type(port) is int else f" (a {type(port).__name__}, not an int)"
            raise PortSpecError(
                f"invalid port {port!r}{kind} in {whose}: use 1 to 65535 (TCP) or "
                f"ports.udp_key(1 to 65535) (UDP), {_BUILD}"
            )


@dataclass(frozen=True, slots=True)
class PortResult:
    """One port's answer."""

    port: int
    state: PortState
    reason: str  # syn-ack, conn-refused, no-response, host-unreach, ... or an errno name
    rtt_ms: float | None  # None when nothing answered
    attempts: int
    protocol: str = "tcp"  # or "udp"

    @property
    def key(self) -> int:
        """The port key (``ports.UDP`` marks UDP): what ``HostResult.scanned`` and policies
        hold."""
        return self.port + _UDP if self.protocol == "udp" else self.port


@dataclass(frozen=True, slots=True)
class HostResult:
    """One target's results. ``ports`` holds every port that is not closed (all on request);
    ``unscanned`` the ports a host timeout or an interrupt left unscanned (a partial status)."""

    name: str
    address: str | None
    status: HostStatus
    ports: tuple[PortResult, ...] = ()
    closed_count: int = 0
    error: str | None = None
    scanned: tuple[int, ...] = ()  # every port probed to the end, in request order
    vantage: str | None = None  # where the answers were seen from; None: this machine
    unscanned: tuple[int, ...] = ()  # ports not scanned (timed out, interrupted), in order
    rate_limited: bool = False  # UDP: its ICMP rate limit held back closed ports (scanned slower)

    @property
    def answered(self) -> bool:
        """Whether some port answered (open or closed), or the host itself sent an ICMP error
        (status ``up``): the network says the host is there."""
        return (
            self.status is HostStatus.UP
            or bool(self.closed_count)
            or any(p.state in (PortState.OPEN, PortState.CLOSED) for p in self.ports)
        )

    def _with_state(self, state: PortState) -> list[int]:
        return [p.key for p in self.ports if p.state is state]

    @property
    def open_ports(self) -> list[int]:
        """Open ports, sorted: port keys, TCP first, then UDP (``ports.UDP``)."""
        return self._with_state(PortState.OPEN)

    @property
    def filtered_ports(self) -> list[int]:
        """Filtered ports, sorted: port keys, TCP first, then UDP (``ports.UDP``)."""
        return self._with_state(PortState.FILTERED)

    @property
    def error_ports(self) -> list[int]:
        """Ports with a local error (no state known), sorted port keys."""
        return self._with_state(PortState.ERROR)

    def state_of(self, port: int) -> PortState | None:
        """The state of ``port`` (a port key: ``ports.udp_key(53)`` for UDP 53); None if it
        was not scanned (or the host was not reached)."""
        for result in self.ports:
            if result.key == port:
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
