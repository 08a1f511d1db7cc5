"""Messages between the executor (parent) and its worker processes, and their framing.

Frames are a 4-byte little-endian length and a pickle. Both ends are this package, started by
the parent with the same interpreter, so pickle is safe here: nothing else writes to the pipes.
"""

from __future__ import annotations

import pickle
import socket
import struct
from dataclasses import dataclass
from typing import Any

_HEADER = struct.Struct("<I")

# A port result on the wire: (port, state, reason, rtt_ms or None, attempts).
WirePort = tuple[int, str, str, float | None, int]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Sent once to every worker before any unit."""

    concurrency: int
    rate: float | None  # this worker's share of the global rate, probes/s
    host_concurrency: int | None  # this worker's share of the per-host cap
    min_timeout: float
    max_timeout: float
    adaptive: bool
    retries: int
    include_closed: bool


@dataclass(frozen=True, slots=True)
class Unit:
    """A chunk of one host's ports."""

    unit_id: int
    host_id: int
    address: str
    ports: tuple[int, ...]
    srtt: float | None  # the host's round-trip estimate so far, seconds
    rttvar: float | None
    deadline: float | None  # time.monotonic() after which no new probe starts (host timeout)
    protocol: str = "tcp"  # "udp": the worker's UdpProber probes these ports


@dataclass(frozen=True, slots=True)
class UnitDone:
    """The results of a unit: every port that is not closed (closed too on request)."""

    unit_id: int
    ports: list[WirePort]
    closed_count: int
    probes_sent: int
    srtt: float | None
    rttvar: float | None
    unscanned: list[int]  # ports not probed because the host timeout expired
    rate_limited: bool = False  # UDP: the host's ICMP rate limit held back its closed ports
    replied: bool = False  # an ICMP error came from the target itself: the host is up


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """The worker's effective settings, with a warning when it had to lower them."""

    concurrency: int
    warning: str | None


@dataclass(frozen=True, slots=True)
class Progressed:
    """Ports finished since the last message. A worker reports every port of a unit finished
    before it sends the unit's ``UnitDone``; the executor hands out work by the ports that
    are not yet reported, so one slow port does not hold back a whole unit's credit."""

    ports: int


STOP = "stop"


def sockaddr(address: str, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """What to connect to: ``address`` (a canonical address from the parent) and ``port``.

    A zone (``fe80::1%eth0``) becomes the scope id of a 4-tuple: in a 2-tuple Python sets the
    scope id to 0 whatever the string says, and the kernel refuses a link-local connect
    without one (EINVAL).
    """
    host, _, zone = address.partition("%")
    if not zone:
        return (address, port)
    try:
        scope_id = socket.if_nametoindex(zone)  # not cached: an index can change meanwhile
    except OSError:
        scope_id = 0  # the interface went away after the parent checked it: a local error
    return (host, port, 0, scope_id)


def frame(message: Any) -> bytes:
    """Encode one message."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Accumulates bytes and yields whole messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return the messages now complete."""
        buffer = self._buffer
        buffer += data
        messages = []
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + size
            if len(buffer) < end:
                break
            messages.append(pickle.loads(buffer[offset + _HEADER.size : end]))  # noqa: S301
            offset = end
        del buffer[:offset]
        return messages
