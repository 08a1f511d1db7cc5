"""Turn what the kernel reports about a connect into a port state and reason. Pure functions."""

from __future__ import annotations

import errno

from nornir_portscan.models import PortState

__all__ = ["LOCAL", "classify_errno", "classify_icmp", "errno_name"]

LOCAL = None
"""Returned for a local failure: it says nothing about the port and must be retried."""

_NETWORK_ANSWERS: dict[int, tuple[PortState, str]] = {
    0: (PortState.OPEN, "syn-ack"),
    errno.ECONNREFUSED: (PortState.CLOSED, "conn-refused"),
    errno.EHOSTUNREACH: (PortState.FILTERED, "host-unreach"),
    errno.ENETUNREACH: (PortState.FILTERED, "net-unreach"),
    errno.ETIMEDOUT: (PortState.FILTERED, "no-response"),
}

# ICMP destination-unreachable codes (RFC 792, RFC 1812) and ICMPv6 (RFC 4443).
_ICMP4_REASONS = {
    0: "net-unreach",
    1: "host-unreach",
    9: "admin-prohibited",
    10: "admin-prohibited",
    13: "admin-prohibited",
}
_ICMP6_REASONS = {
    0: "net-unreach",
    1: "admin-prohibited",
    3: "host-unreach",
    5: "admin-prohibited",
    6: "admin-prohibited",
}
_ICMP4_DEST_UNREACH = 3
_ICMP6_DEST_UNREACH = 1


def classify_errno(err: int) -> tuple[PortState, str] | None:
    """Map the error of a finished connect to ``(state, reason)``.

    Returns ``None`` (``LOCAL``) when the error is local to this machine (EMFILE, ENOBUFS,
    EADDRNOTAVAIL, ...): such a probe is retried, never given a port state.

    >>> classify_errno(111)
    (<PortState.CLOSED: 'closed'>, 'conn-refused')
    >>> classify_errno(24) is None
    True
    """
    return _NETWORK_ANSWERS.get(err)


def classify_icmp(ipv6: bool, icmp_type: int, icmp_code: int) -> str | None:
    """The reason for an ICMP destination-unreachable message, or None for another message.

    >>> classify_icmp(False, 3, 13)
    'admin-prohibited'
    >>> classify_icmp(True, 1, 3)
    'host-unreach'
    """
    if ipv6:
        return (
            _ICMP6_REASONS.get(icmp_code, "host-unreach")
            if icmp_type == _ICMP6_DEST_UNREACH
            else None
        )
    if icmp_type == _ICMP4_DEST_UNREACH:
        return _ICMP4_REASONS.get(icmp_code, "host-unreach")
    return None


def errno_name(err: int) -> str:
    """``EMFILE`` for 24, ``errno-999`` for an unknown number."""
    return errno.errorcode.get(err, f"errno-{err}")
