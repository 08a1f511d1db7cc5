"""Plain-socket probes of the lab: what a TCP connect sees, down to the ICMP type and code.

Measured on Linux 6.x with this lab (``test_lab.py`` asserts every row):

=========================  ===============  =============================================
what the target did        ``SO_ERROR``     error queue (``IP_RECVERR``/``IPV6_RECVERR``)
=========================  ===============  =============================================
IPv4 admin-prohibited      EHOSTUNREACH     origin 2 (ICMP),  type 3, code 13
IPv4 host-unreachable      EHOSTUNREACH     origin 2 (ICMP),  type 3, code 1
IPv6 admin-prohibited      EACCES           origin 3 (ICMP6), type 1, code 1
IPv6 address-unreachable   EHOSTUNREACH     origin 3 (ICMP6), type 1, code 3
closed (RST)               ECONNREFUSED     empty
=========================  ===============  =============================================

So on IPv4 the errno alone cannot tell admin-prohibited from host-unreachable: read the error
queue (``recvmsg(..., MSG_ERRQUEUE)``) after the connect fails. The kernel fails a connect in
SYN_SENT on either ICMP at once (no retransmission), and the queued ``sock_extended_err`` stays
readable after that.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from dataclasses import dataclass

__all__ = ["IcmpError", "Outcome", "classify", "probe_many"]

IP_RECVERR = 11
IPV6_RECVERR = 25
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
_EXTENDED_ERR = struct.Struct("=IBBBBII")


@dataclass(frozen=True, slots=True)
class IcmpError:
    """One ``struct sock_extended_err`` read from the error queue."""

    errno: int
    origin: int
    type: int
    code: int
    offender: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one connect attempt saw."""

    address: str
    port: int
    so_error: int | None  # None when it connected or nothing answered
    icmp: IcmpError | None
    elapsed: float
    timed_out: bool


def _offender(data: bytes) -> str | None:
    if len(data) < 8:
        return None
    family = struct.unpack_from("=H", data)[0]
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, data[4:8])
    if family == socket.AF_INET6 and len(data) >= 24:
        return socket.inet_ntop(socket.AF_INET6, data[8:24])
    return None


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def read_error_queue(sock: socket.socket) -> IcmpError | None:
    """The first extended error queued on ``sock``, if any (never blocks)."""
    try:
        _, ancdata, _, _ = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    for level, kind, data in ancdata:
        if (level, kind) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            ee_errno, origin, ee_type, code, _, _, _ = _EXTENDED_ERR.unpack_from(data)
            return IcmpError(ee_errno, origin, ee_type, code, _offender(data[16:]))
    return None


def probe_many(pairs: list[tuple[str, int]], timeout: float) -> list[Outcome]:
    """Connect to every (address, port) at once; wait at most ``timeout`` seconds in all."""
    socks: dict[int, tuple[socket.socket, str, int]] = {}
    poller = select.poll()
    outcomes: list[Outcome] = []
    start = time.monotonic()
    try:
        for address, port in pairs:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.setblocking(False)
            socks[sock.fileno()] = (sock, address, port)
            rc = sock.connect_ex((address, port))
            if rc not in (0, errno.EINPROGRESS):
                raise OSError(rc, f"connect to {address}:{port} failed at once")
            poller.register(sock, select.POLLOUT)
        while socks:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                break
            for fd, _ in poller.poll(left * 1000):
                sock, address, port = socks[fd]
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0 and not _connected(sock):
                    continue  # the ICMP is queued, SO_ERROR not set yet (Linux 5.8 on): poll on
                del socks[fd]
                poller.unregister(fd)
                outcomes.append(
                    Outcome(
                        address,
                        port,
                        err or None,
                        read_error_queue(sock),
                        time.monotonic() - start,
                        timed_out=False,
                    )
                )
                sock.close()
        for _sock, address, port in socks.values():
            outcomes.append(Outcome(address, port, None, None, timeout, timed_out=True))
    finally:
        for sock, _, _ in socks.values():
            sock.close()
    return outcomes


def classify(outcome: Outcome) -> tuple[str, str]:
    """(state, reason) in the ground truth's words."""
    if outcome.timed_out:
        return "filtered", "no-response"
    if outcome.so_error is None:
        return "open", "syn-ack"
    if outcome.so_error == errno.ECONNREFUSED:
        return "closed", "conn-refused"
    icmp = outcome.icmp
    if icmp is not None:
        admin = (icmp.origin, icmp.type, icmp.code) in (
            (SO_EE_ORIGIN_ICMP, 3, 13),  # communication administratively prohibited
            (
                SO_EE_ORIGIN_ICMP6,
                1,
                1,
            ),  # communication with destination administratively prohibited
        )
        if admin:
            return "filtered", "admin-prohibited"
        if (icmp.origin, icmp.type) in ((SO_EE_ORIGIN_ICMP, 3), (SO_EE_ORIGIN_ICMP6, 1)):
            return "filtered", "host-unreach"
    return "error", errno.errorcode.get(outcome.so_error, str(outcome.so_error))
