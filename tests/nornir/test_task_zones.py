"""A Nornir host whose hostname carries a zone is scanned at its canonical address (it used to
be ``filtered no-response`` after a worker traceback, with no probe sent); an unknown zone
fails the host with the one-line input error."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import FAST, MakeNornir
from support import closed_port, ipv6_loopback

from nornir_portscan.nornir.tasks import portscan, scan_inventory

pytestmark = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")


def test_a_zoned_hostname_is_scanned(make_nornir: MakeNornir, listeners: Any) -> None:
    opened = listeners.open("::1")
    closed = closed_port("::1")
    nr = make_nornir({"v6": {"hostname": "::1%lo"}, "bad": {"hostname": "::1%nosuch0"}})
    result = nr.run(task=portscan, ports=f"{opened},{closed}", **FAST)
    v6 = result["v6"][0]
    assert (v6.failed, v6.result["address"], v6.result["open_ports"]) == (False, "::1", [opened])
    assert result["bad"][0].failed
    assert "invalid zone in '::1%nosuch0' (address of target 'bad'): no interface" in str(
        result["bad"][0].result
    )


def test_scan_inventory_excludes_every_spelling(make_nornir: MakeNornir, listeners: Any) -> None:
    opened = listeners.open("::1")
    nr = make_nornir(
        {
            "v6": {"hostname": "::1%lo"},
            "v4": {"hostname": "::ffff:127.0.0.1"},
            "other": {"hostname": "127.0.0.2"},
        }
    )
    listeners.open("127.0.0.1", opened)
    result = scan_inventory(nr, ports=str(opened), exclude=["::1", "127.0.0.1"], **FAST)
    entries = {name: str(multi[0].result) for name, multi in result.items()}
    assert (entries["v6"], entries["v4"]) == (  # each named as its inventory spells it
        "::1%lo excluded: not scanned",
        "::ffff:127.0.0.1 excluded: not scanned",
    )
    assert entries["other"].startswith("127.0.0.2 up")
