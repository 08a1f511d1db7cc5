"""Reading a socket's error queue (``IP_RECVERR``/``IPV6_RECVERR``): who sent an ICMP error.

Shared by the TCP and UDP socket sides, with no gevent: ``struct sock_extended_err`` and the
offender's address that follows it (``SO_EE_OFFENDER``).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct

__all__ = [
    "EE_FORMAT",
    "IPV6_RECVERR",
    "IP_RECVERR",
    "OwnAddresses",
    "ask_for_errors",
    "is_own_address",
    "offender",
    "packed",
]

IP_RECVERR = 11
IPV6_RECVERR = 25
EE_FORMAT = struct.Struct("=IBBBBII")  # struct sock_extended_err, then the sender's sockaddr
_V4_MAPPED = bytes(10) + b"\xff\xff"
_AF_INET_BYTES = struct.pack("=H", socket.AF_INET)
_AF_INET6_BYTES = struct.pack("=H", socket.AF_INET6)
_SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN})
# RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE
_ADDRESS_AND_ROUTE_GROUPS = 0x10 | 0x40 | 0x100 | 0x400


def ask_for_errors(sock: socket.socket, family: int) -> None:
    """Have the kernel queue the ICMP errors about ``sock``'s packets (``IP_RECVERR`` or
    ``IPV6_RECVERR``); a socket that refuses keeps only its errno."""
    with contextlib.suppress(OSError):
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)


def offender(data: bytes) -> bytes | None:
    """The packed address of the ICMP error's sender (``SO_EE_OFFENDER``), if given."""
    address = data[EE_FORMAT.size :]
    if len(address) >= 8 and address[:2] == _AF_INET_BYTES:
        return address[4:8]
    if len(address) >= 24 and address[:2] == _AF_INET6_BYTES:
        return _unmapped(address[8:24])
    return None


def offender_scope(data: bytes) -> int:
    """The IPv6 scope id of the ICMP error's sender (0 for IPv4 or none)."""
    address = data[EE_FORMAT.size :]
    if len(address) >= 28 and address[:2] == _AF_INET6_BYTES:
        return int(struct.unpack_from("=I", address, 24)[0])
    return 0


def is_own_address(raw: bytes, scope_id: int = 0) -> bool:
    """Whether ``raw`` (packed) is an address of this host (of this network namespace): the
    route to an own address is a local one, whose source address is the address itself. A
    connected UDP socket asks the kernel without sending anything.

    Raises ``OSError`` when this host lacks what it takes to ask (a descriptor: EMFILE,
    ENFILE; memory: ENOBUFS, ENOMEM): "not ours" would then be a guess.
    """
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    address = socket.inet_ntop(family, raw)
    sockaddr: tuple[str, int] | tuple[str, int, int, int] = (
        (address, 9) if family == socket.AF_INET else (address, 9, 0, scope_id)
    )
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect(sockaddr)
        except OSError as exc:
            if exc.errno in _SHORTAGES:
                raise
            return False  # no route to it (ENETUNREACH, ...): not one of ours
        return bool(udp.getsockname()[0].partition("%")[0] == address)


class OwnAddresses:
    """``is_own_address``, remembered until this host's addresses or routes change: a netlink
    socket subscribed to those changes is read (one non-blocking syscall) before a remembered
    answer is used, so an address that just moved here is ours at once. Without netlink
    nothing is remembered."""

    def __init__(self, limit: int = 256) -> None:
        self.known: dict[tuple[bytes, int], bool] = {}
        self.limit = limit
        try:
            watch = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK)
        except (OSError, AttributeError):
            self.changes: socket.socket | None = None
        else:
            try:
                watch.bind((0, _ADDRESS_AND_ROUTE_GROUPS))
            except OSError:
                watch.close()
                self.changes = None
            else:
                self.changes = watch

    def __call__(self, raw: bytes, scope_id: int = 0) -> bool:
        """Whether ``raw`` is ours; raises ``OSError`` as ``is_own_address`` does."""
        known = self.known
        if known and (self.changes is None or self._changed()):
            known.clear()
        key = (raw, scope_id)
        own = known.get(key)
        if own is None:
            own = is_own_address(raw, scope_id)
            if self.changes is not None and len(known) < self.limit:
                known[key] = own
        return own

    def _changed(self) -> bool:
        assert self.changes is not None
        changed = False
        while True:
            try:
                if not self.changes.recv(65536):
                    return True
            except BlockingIOError:
                return changed
            except OSError:  # ENOBUFS: changes were lost, so something changed
                return True
            changed = True

    def close(self) -> None:
        if self.changes is not None:
            self.changes.close()
            self.changes = None


def _unmapped(raw: bytes) -> bytes:
    """An IPv4-mapped IPv6 address as the IPv4 one; any other address as it is."""
    return raw[12:] if raw[:12] == _V4_MAPPED else raw


def packed(address: str) -> bytes | None:
    """``address`` packed, an IPv4-mapped one as IPv4; None if it is no address.

    >>> packed("::ffff:192.0.2.1") == packed("192.0.2.1")
    True
    >>> packed("fe80::1%eth0") == packed("fe80::1"), packed("nonsense")
    (True, None)
    """
    address = address.partition("%")[0]  # fe80::1%eth0: the zone is not part of the address
    try:
        raw = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except (OSError, ValueError):
        return None
    return _unmapped(raw)
