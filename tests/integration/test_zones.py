"""IPv6 zones and other spellings of an address, through the real CLI and real sockets: a zone
that exists is scanned, an unknown one is bad input before any packet, and exclusions hold
for every spelling. Traffic goes to ::1, 127.0.0.1 and a veth pair inside a namespace only."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from support import REPO, closed_port, in_netns, ipv6_loopback

FAST = ("--timeout", "0.5", "--no-progress", "--processes", "1")
RunCli = Callable[..., subprocess.CompletedProcess[str]]

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")


def hosts(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    return [
        {
            "address": h["address"],
            "status": h["status"],
            "open": h["open_ports"],
            "closed": h["closed_count"],
        }
        for h in report["hosts"]
    ]


@needs_ipv6
@pytest.mark.parametrize("zone", ["lo", str(socket.if_nametoindex("lo"))])
def test_a_zone_on_loopback_scans_the_address(listeners: Any, run_cli: RunCli, zone: str) -> None:
    """``::1%lo`` used to reach the worker as written: a traceback there, then ``filtered
    no-response`` with no probe sent, and exit 0."""
    opened = listeners.open("::1")
    closed = closed_port("::1")
    done = run_cli("-p", f"{opened},{closed}", f"::1%{zone}", "--json", "-", *FAST)
    assert hosts(done) == [{"address": "::1", "status": "up", "open": [opened], "closed": 1}]
    assert json.loads(done.stdout)["probes_sent"] == 2
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("token", ["::1%nosuch0", "fe80::1%99999", "fe80::1", "[::1%nosuch0]"])
def test_an_unknown_or_missing_zone_is_bad_input(run_cli: RunCli, token: str) -> None:
    done = run_cli("-p", "22", token, *FAST)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"'{token}'" in done.stderr
    assert "e.g. 'fe80::1%eth0'" in done.stderr


@needs_ipv6
@pytest.mark.parametrize(
    ("targets", "exclude"),
    [
        (["::ffff:127.0.0.1", "::1"], "127.0.0.1"),
        (["127.0.0.1", "::1"], "::ffff:127.0.0.1"),
        (["127.0.0.1", "::1%1"], "::1"),
        (["127.0.0.1", "::1%lo"], "::1%1"),
    ],
)
def test_exclusions_hold_for_other_spellings(
    listeners: Any, run_cli: RunCli, targets: list[str], exclude: str
) -> None:
    port = listeners.open("127.0.0.1")
    listeners.open("::1", port)
    done = run_cli("-p", str(port), *targets, "--exclude", exclude, "--json", "-", *FAST)
    kept = "::1" if "127.0.0.1" in exclude else "127.0.0.1"
    assert hosts(done) == [{"address": kept, "status": "up", "open": [port], "closed": 0}]


def test_a_mapped_address_and_its_ipv4_are_one_host(listeners: Any, run_cli: RunCli) -> None:
    port = listeners.open("127.0.0.1")
    done = run_cli("-p", str(port), "127.0.0.1", "::ffff:127.0.0.1", "--json", "-", *FAST)
    assert hosts(done) == [{"address": "127.0.0.1", "status": "up", "open": [port], "closed": 0}]


# Inside the namespace: a listener on one end of a veth pair, and the CLI scanning it over the
# link from the other end, by the zone's name and by its index.
LINK_LOCAL = """
import json, socket, subprocess, sys
index = socket.if_nametoindex("psb")
listener = socket.socket(socket.AF_INET6)
listener.bind(("fe80::b", 0, 0, index))
listener.listen(16)
port = listener.getsockname()[1]
probe = socket.socket(socket.AF_INET6)
probe.bind(("fe80::b", 0, 0, index))
closed = probe.getsockname()[1]
probe.close()
out = {}
for zone in ("psa", str(socket.if_nametoindex("psa"))):
    done = subprocess.run(
        [sys.executable, "-m", "nornir_portscan", "-p", f"{port},{closed}", f"fe80::b%{zone}",
         "--json", "-", "--timeout", "0.5", "--no-progress", "--processes", "1"],
        capture_output=True, text=True, timeout=60,
    )
    out[zone] = {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
print(json.dumps({"port": port, "runs": out}))
"""


def test_a_link_local_address_is_scanned_over_its_link(netns: str) -> None:
    for cmd in (
        ["ip", "link", "add", "psa", "type", "veth", "peer", "name", "psb"],
        ["ip", "addr", "add", "fe80::a/64", "dev", "psa", "nodad"],
        ["ip", "addr", "add", "fe80::b/64", "dev", "psb", "nodad"],
        ["ip", "link", "set", "psa", "up"],
        ["ip", "link", "set", "psb", "up"],
    ):
        made = in_netns(netns, *cmd)
        if made.returncode != 0:
            pytest.skip(f"cannot set up a veth pair: {made.stderr.strip()}")
    done = in_netns(netns, sys.executable, "-c", LINK_LOCAL, cwd=REPO)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    port = outcome["port"]
    for run in outcome["runs"].values():
        assert run["code"] == 0, run["stderr"]
        assert hosts(subprocess.CompletedProcess([], 0, run["stdout"], "")) == [
            {"address": "fe80::b%psa", "status": "up", "open": [port], "closed": 1}
        ]
