"""One spelling per host: the canonical form of an IP address, used for exclusions, the
dedupe of targets, the scope guard and what a worker is given.

- An IPv4-mapped IPv6 address is its IPv4 address: ``::ffff:127.0.0.1`` is scanned, excluded,
  deduplicated and reported as ``127.0.0.1`` (Linux sends a connect to a mapped address as
  IPv4 anyway).
- A zone (``%lo``, ``%1``) must name an interface of this machine (``socket.if_nametoindex``).
  On a link-local address, which needs it, it is kept and spelt as the interface's name
  (``fe80::1%2`` is ``fe80::1%eth0``); on any other address the kernel ignores it, so it is
  dropped (``::1%lo`` is ``::1``).

    >>> canonical_address("::ffff:127.0.0.1"), canonical_address("::1%lo")
    ('127.0.0.1', '::1')
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TypeAlias

__all__ = [
    "IPAddress",
    "address_problem",
    "canonical",
    "canonical_address",
    "mapped",
    "needs_zone",
    "zone_error",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"


def zone_error(zone: str) -> str | None:
    """Why ``zone`` names no interface of this machine; None when it does."""
    try:
        if zone.isascii() and zone.isdigit():
            socket.if_indextoname(int(zone))
        else:
            socket.if_nametoindex(zone)
    except (OSError, OverflowError, ValueError):
        names = ", ".join(name for _, name in socket.if_nameindex()[:6])
        return f"no interface {zone!r} on this machine (it has {names})"
    return None


def canonical(address: IPAddress) -> IPAddress:
    """``address`` in its canonical form; raises ``ValueError`` (the reason) for an unknown
    zone."""
    if address.version == 4:
        return address
    zone = address.scope_id
    if zone is not None:
        reason = zone_error(zone)
        if reason is not None:
            raise ValueError(reason)
    four = address.ipv4_mapped
    if four is not None:
        return four
    if zone is None:
        return address
    bare = ipaddress.IPv6Address(address.packed)
    if not bare.is_link_local:
        return bare
    if zone.isascii() and zone.isdigit():
        zone = socket.if_indextoname(int(zone))
    return ipaddress.IPv6Address(f"{bare}%{zone}")


def canonical_address(text: str) -> str:
    """The canonical spelling of the address ``text``; raises ``ValueError`` when ``text`` is
    not an address or its zone names no interface."""
    return str(canonical(ipaddress.ip_address(text)))


def mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    """The IPv4-mapped IPv6 spelling of ``address``, to look it up in an IPv6 block."""
    return ipaddress.IPv6Address(_MAPPED_PREFIX + address.packed)


def address_problem(text: str) -> str | None:
    """Why a worker must not be given ``text`` as an address; None when it is an address in
    its canonical form that can be connected to."""
    if _plainly_canonical(text):
        return None
    try:
        address = ipaddress.ip_address(text)
        good = canonical(address)
    except ValueError as exc:
        return str(exc) if "%" in text and ":" in text else "not an IP address"
    if needs_zone(good):
        return "a link-local address needs a zone, the interface to use"
    if str(good) != text:
        return f"not in its canonical form {str(good)!r}"
    return None


def _plainly_canonical(text: str) -> bool:
    """Whether ``text`` is certainly a canonical address that needs no zone: the common cases,
    told by inet_pton and inet_ntop ten times faster than by ipaddress."""
    if not isinstance(text, str) or "%" in text:
        return False
    if ":" not in text:  # inet_pton refuses 01.2.3.4, as ipaddress does
        try:
            socket.inet_pton(socket.AF_INET, text)
        except (OSError, ValueError):
            return False
        return True
    if "." in text:  # glibc writes ::1.2.3.4 where ipaddress writes ::102:304
        return False
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return False
    link_local = packed[0] == 0xFE and packed[1] & 0xC0 == 0x80  # fe80::/10
    # elsewhere glibc spells an address as ipaddress does (RFC 5952)
    return (
        not link_local
        and not packed.startswith(_MAPPED_PREFIX)
        and socket.inet_ntop(socket.AF_INET6, packed) == text
    )


def needs_zone(address: IPAddress) -> bool:
    """Whether ``address`` is link-local without a zone: the kernel cannot tell which link."""
    return address.version == 6 and address.is_link_local and address.scope_id is None
