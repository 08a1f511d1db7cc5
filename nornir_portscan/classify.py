"""Turn what the kernel reports about a connect into a port state and reason. Pure functions.

Only the network gives a port state:

=======================  ======================  ============================================
kernel says              state / reason          because
=======================  ======================  ============================================
connected (0)            open / syn-ack          the handshake completed
ECONNRESET, EPIPE        open / syn-ack          the handshake completed, then the service
                                                 reset (tcpwrappers, an overloaded daemon);
                                                 a RST to the SYN itself is ECONNREFUSED
ECONNREFUSED             closed / conn-refused   a RST in reply to the SYN (or an ICMP
                                                 port-unreachable from the network)
ETIMEDOUT                filtered / no-response  TCP gave up: nothing came back
an ICMP error from the   filtered / ``host-      the error queue holds it, with its origin
network                  unreach``, ``net-       (``SO_EE_ORIGIN_ICMP``/``ICMP6``) and its
                         unreach``, ``admin-     sender: not this host's own address
                         prohibited``, ``time-
                         exceeded``, ``icmp-
                         type-<N>``
=======================  ======================  ============================================

Everything else is local to this machine and becomes ``error``, never a port state:

- ``local-<ERRNO>`` (``local-EHOSTUNREACH``, ``local-ENETUNREACH``, ``local-EACCES``,
  ``local-EINVAL``, ...): the local kernel refused the probe, so nothing was sent or nothing
  came back from the network. Reported at once: asking again gets the same refusal.

  - connect() failed at once: a route of type ``unreachable`` (``local-EHOSTUNREACH``),
    ``prohibit`` (``local-EACCES``) or ``blackhole`` (``local-EINVAL``), no route at all, a
    broadcast or multicast address (``local-ENETUNREACH``);
  - the only ICMP error was one this host sent about its own packet: a local firewall's
    ``reject`` (``local-ECONNREFUSED`` for its default, port-unreachable), a failed neighbour
    lookup. A local ``reject with tcp reset`` cannot be told from the target's RST;
  - ``local-EPERM``: a local firewall dropped the SYN, which shows once TCP retransmitted it
    (after 1 s: a shorter silent probe cannot tell it from the network's silence).
- ``<ERRNO>`` (``EMFILE``, ``EADDRNOTAVAIL``, ``ENOBUFS``, ...): a local resource ran short.
  Retried with back-off; reported only when it persists.
"""

from __future__ import annotations

import errno

from nornir_portscan.states import PortState

__all__ = [
    "LOCAL",
    "classify_errno",
    "classify_icmp",
    "errno_name",
    "is_transient",
    "local_reason",
]

LOCAL = None
"""Returned for a local failure or refusal: it says nothing about the port."""

_OPEN = (PortState.OPEN, "syn-ack")
_NETWORK_ANSWERS: dict[int, tuple[PortState, str]] = {
    0: _OPEN,
    errno.ECONNRESET: _OPEN,  # established, then reset: RST to a SYN is ECONNREFUSED
    errno.EPIPE: _OPEN,  # established, FIN received, then reset
    errno.ECONNREFUSED: (PortState.CLOSED, "conn-refused"),
    errno.ETIMEDOUT: (PortState.FILTERED, "no-response"),
}

# Local shortages that may pass: worth a retry after a back-off.
_TRANSIENT = frozenset(
    {
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.EAGAIN,
        errno.EINTR,
        errno.EADDRNOTAVAIL,  # ephemeral ports all in use
        errno.EADDRINUSE,  # a self-connect, a source port race
        errno.ECONNABORTED,  # a reused socket that would not connect again
    }
)

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
_ICMP4_DEST_UNREACH, _ICMP4_TIME_EXCEEDED = 3, 11
_ICMP6_DEST_UNREACH, _ICMP6_TIME_EXCEEDED = 1, 3


def classify_errno(err: int) -> tuple[PortState, str] | None:
    """Map the error of a connect whose SYN was sent to ``(state, reason)``.

    Returns ``None`` (``LOCAL``) for every other error: it is a network answer only when an
    ICMP error from the network says so (``classify_icmp``), else local to this machine.

    >>> classify_errno(111)
    (<PortState.CLOSED: 'closed'>, 'conn-refused')
    >>> classify_errno(104)
    (<PortState.OPEN: 'open'>, 'syn-ack')
    >>> classify_errno(113) is None
    True
    """
    return _NETWORK_ANSWERS.get(err)


def classify_icmp(ipv6: bool, icmp_type: int, icmp_code: int) -> str:
    """The reason for an ICMP error from the network that ended a connect.

    >>> classify_icmp(False, 3, 13)
    'admin-prohibited'
    >>> classify_icmp(True, 1, 3)
    'host-unreach'
    >>> classify_icmp(False, 11, 0)
    'time-exceeded'
    """
    unreach, exceeded = (
        (_ICMP6_DEST_UNREACH, _ICMP6_TIME_EXCEEDED)
        if ipv6
        else (_ICMP4_DEST_UNREACH, _ICMP4_TIME_EXCEEDED)
    )
    if icmp_type == unreach:
        return (_ICMP6_REASONS if ipv6 else _ICMP4_REASONS).get(icmp_code, "host-unreach")
    if icmp_type == exceeded:
        return "time-exceeded"
    return f"icmp-type-{icmp_type}"


def is_transient(err: int) -> bool:
    """Whether a local error is a shortage worth retrying (EMFILE, EADDRNOTAVAIL, ...) rather
    than a refusal that would come again (a route, a local firewall).

    >>> is_transient(24), is_transient(113)
    (True, False)
    """
    return err in _TRANSIENT


def local_reason(err: int) -> str:
    """The reason of a port the local kernel refused to probe.

    >>> local_reason(113)
    'local-EHOSTUNREACH'
    """
    return f"local-{errno_name(err)}"


def errno_name(err: int) -> str:
    """``EMFILE`` for 24, ``errno-999`` for an unknown number."""
    return errno.errorcode.get(err, f"errno-{err}")
