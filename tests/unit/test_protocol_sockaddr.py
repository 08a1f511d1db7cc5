"""What a worker connects to: a zone reaches the kernel as a scope id."""

from __future__ import annotations

import socket

from nornir_portscan.engine.protocol import sockaddr


def test_an_address_without_a_zone_is_a_pair() -> None:
    assert sockaddr("127.0.0.1", 22) == ("127.0.0.1", 22)
    assert sockaddr("::1", 22) == ("::1", 22)


def test_a_zone_is_the_scope_id_of_a_four_tuple() -> None:
    assert sockaddr("fe80::1%lo", 22) == ("fe80::1", 22, 0, socket.if_nametoindex("lo"))


def test_an_interface_gone_since_the_parent_checked_is_scope_id_0() -> None:
    # the connect then fails locally (EINVAL): an error, never a port state
    assert sockaddr("fe80::1%nosuch0", 22) == ("fe80::1", 22, 0, 0)
