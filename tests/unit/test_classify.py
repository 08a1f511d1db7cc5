import errno

import pytest

from nornir_portscan.classify import classify_errno, classify_icmp, errno_name
from nornir_portscan.models import PortState


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (0, (PortState.OPEN, "syn-ack")),
        (errno.ECONNREFUSED, (PortState.CLOSED, "conn-refused")),
        (errno.EHOSTUNREACH, (PortState.FILTERED, "host-unreach")),
        (errno.ENETUNREACH, (PortState.FILTERED, "net-unreach")),
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
    ],
)
def test_local_failures_never_get_a_port_state(err):
    assert classify_errno(err) is None


@pytest.mark.parametrize(
    ("ipv6", "icmp_type", "code", "reason"),
    [
        (False, 3, 0, "net-unreach"),
        (False, 3, 1, "host-unreach"),
        (False, 3, 9, "admin-prohibited"),
        (False, 3, 10, "admin-prohibited"),
        (False, 3, 13, "admin-prohibited"),
        (False, 11, 0, None),
        (True, 1, 0, "net-unreach"),
        (True, 1, 1, "admin-prohibited"),
        (True, 1, 3, "host-unreach"),
        (True, 3, 0, None),
    ],
)
def test_icmp_reasons(ipv6, icmp_type, code, reason):
    assert classify_icmp(ipv6, icmp_type, code) == reason


def test_errno_names():
    assert (errno_name(errno.EMFILE), errno_name(99999)) == ("EMFILE", "errno-99999")
