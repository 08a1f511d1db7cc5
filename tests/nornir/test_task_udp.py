"""The Nornir task's one-line summaries of UDP ports, against real UDP sockets on loopback: an
echo is open, a bound socket that never answers is open|filtered, nothing bound is closed."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST
from nornir_utils.plugins.functions import print_result
from support import Listeners

from nornir_portscan.nornir.tasks import portscan, scan_inventory
from tests.engine.udp_helpers import UdpServers

HOST = "127.0.94.1"


def free_udp_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def udp() -> Iterator[UdpServers]:
    servers = UdpServers()
    servers.thread.start()
    yield servers
    servers.close()


def test_the_summary_line_shows_udp_ports(
    make_nornir, udp: UdpServers, listeners: Listeners, capsys: pytest.CaptureFixture[str]
) -> None:
    echo, mute, closed = free_udp_port(), free_udp_port(), free_udp_port()
    udp.bind(HOST, echo, echo=True)
    udp.bind(HOST, mute, echo=False)
    tcp = listeners.open(HOST)
    nr = make_nornir({"h": {"hostname": HOST}})
    result = nr.run(task=portscan, ports=f"T:{tcp},U:{echo},{mute},{closed}", **FAST)
    entry = result["h"][0].result
    assert not result["h"][0].failed, entry
    assert str(entry) == (f"{HOST} up: open {tcp},{echo}/udp; open|filtered {mute}/udp; closed 1")
    print_result(result)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert f"\n{HOST} up: open {tcp},{echo}/udp; open|filtered {mute}/udp; closed 1\n" in out


def test_udp_drift_is_labelled_udp(make_nornir, udp: UdpServers, tmp_path: Path) -> None:
    echo, later = free_udp_port(), free_udp_port()
    udp.bind(HOST, echo, echo=True)
    nr = make_nornir({"h": {"hostname": HOST}})
    saved = tmp_path / "before.json"
    ports = f"U:{echo},{later}"
    assert scan_inventory(nr, ports=ports, reports={"json": saved}, **FAST).failed is False
    udp.close()  # both closed now: echo was open, later stays closed
    udp2 = UdpServers()
    try:
        udp2.bind(HOST, later, echo=True)
        udp2.thread.start()
        after = nr.run(task=portscan, ports=ports, baseline=saved, recheck=1, **FAST)
    finally:
        udp2.close()
    entry = after["h"][0].result
    assert entry["drift"]["udp_opened"] == [later], entry
    assert entry["drift"]["udp_closed"] == [echo], entry
    assert str(entry).endswith(f"drift: opened {later}/udp, closed {echo}/udp"), str(entry)
