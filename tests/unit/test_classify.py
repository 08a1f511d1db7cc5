import errno

import pytest

from nornir_portscan.classify import (
    classify_errno,
    classify_icmp,
    errno_name,
    is_transient,
    local_reason,
)
from nornir_portscan.models import PortState


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (0, (PortState.OPEN, "syn-ack")),
        # the handshake completed, then the service reset: open, as nmap -sT says
        (errno.ECONNRESET, (PortState.OPEN, "syn-ack")),
        (errno.EPIPE, (PortState.OPEN, "syn-ack")),
        (errno.ECONNREFUSED, (PortState.CLOSED, "conn-refused")),
        (errno.ETIMEDOUT, (PortState.FILTERED, "no-response")),
    ],
)
def test_network_answers(err, expected):
    assert classify_errno(err) == expected


@pytest.mark.parametrize(
    "err",
    [
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOBUFS,
        errno.ENOMEM,
        errno.EADDRNOTAVAIL,
        errno.EAGAIN,
        errno.EPERM,
        errno.EACCES,
        errno.EINVAL,
        # only with an ICMP error from the network in the error queue (classify_icmp)
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    ],
)
def test_local_failures_never_get_a_port_state(err):
    assert classify_errno(err) is None


@pytest.mark.parametrize(
    ("err", "transient"),
    [
        (errno.EMFILE, True),
        (errno.ENFILE, True),
        (errno.ENOBUFS, True),
        (errno.EADDRNOTAVAIL, True),
        (errno.EADDRINUSE, True),
        (errno.EHOSTUNREACH, False),  # a route of type unreachable
        (errno.EACCES, False),  # prohibit
        (errno.EINVAL, False),  # blackhole
        (errno.ENETUNREACH, False),  # no route, a broadcast address
        (errno.EPERM, False),  # a local firewall
    ],
)
def test_shortages_are_retried_refusals_are_not(err, transient):
    assert is_transient(err) is transient


def test_local_reasons_say_local():
    assert [local_reason(e) for e in (errno.EHOSTUNREACH, errno.EACCES, 99999)] == [
        "local-EHOSTUNREACH",
        "local-EACCES",
        "local-errno-99999",
    ]


@pytest.mark.parametrize(
    ("ipv6", "icmp_type", "code", "reason"),
    [
        (False, 3, 0, "net-unreach"),
        (False, 3, 1, "host-unreach"),
        (False, 3, 9, "admin-prohibited"),
        (False, 3, 10, "admin-prohibited"),
        (False, 3, 13, "admin-prohibited"),
        (False, 3, 4, "host-unreach"),
        (False, 11, 0, "time-exceeded"),
        (False, 12, 0, "icmp-type-12"),
        (True, 1, 0, "net-unreach"),
        (True, 1, 1, "admin-prohibited"),
        (True, 1, 3, "host-unreach"),
        (True, 3, 0, "time-exceeded"),
        (True, 4, 0, "icmp-type-4"),
    ],
)
def test_icmp_reasons(ipv6, icmp_type, code, reason):
    assert classify_icmp(ipv6, icmp_type, code) == reason


def test_errno_names():
    assert (errno_name(errno.EMFILE), errno_name(99999)) == ("EMFILE", "errno-99999")
