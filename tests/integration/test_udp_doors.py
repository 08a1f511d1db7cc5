"""UDP through the CLI, the Python API and the Nornir task, with real sockets on loopback: an
echo is open (udp-response), nothing bound is closed (the kernel's port-unreachable; loopback has
no ICMP rate limit), a bound socket that never answers is open|filtered."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from nornir_portscan import HostStatus, PortState, build_job, build_request, run_job, scan
from nornir_portscan.ports import parse_ports, udp_key
from tests.engine.udp_helpers import UdpServers

HOST = "127.0.93.1"
FAST = ("--timeout", "0.5", "--processes", "1")


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def udp() -> Iterator[dict[str, int]]:
    """An echo, a mute socket and a closed port on ``HOST``; a TCP listener on the echo's port
    number too."""
    servers = UdpServers()
    tcp = socket.socket()
    try:
        echo, mute = _free_udp_port(HOST), _free_udp_port(HOST)
        servers.bind(HOST, echo, echo=True)
        servers.bind(HOST, mute, echo=False)
        servers.thread.start()
        try:
            tcp.bind((HOST, echo))
            tcp.listen()
        except OSError as exc:
            pytest.skip(f"cannot listen on TCP {echo}: {exc}")
        yield {"echo": echo, "mute": mute, "closed": _free_udp_port(HOST)}
    finally:
        tcp.close()
        servers.close()


def _states(host: dict) -> dict[tuple[int, str], tuple[str, str]]:
    return {(p["port"], p["protocol"]): (p["state"], p["reason"]) for p in host["ports"]}


def test_cli_mixed_tcp_and_udp(udp, run_cli, tmp_path):
    echo, mute, closed = udp["echo"], udp["mute"], udp["closed"]
    report = tmp_path / "scan.json"
    done = run_cli("-p", f"T:{echo},U:{echo},{mute},{closed}", HOST, *FAST, "--json", str(report))
    assert done.returncode == 0, done.stderr
    (host,) = json.loads(report.read_text())["hosts"]
    assert _states(host) == {
        (echo, "tcp"): ("open", "syn-ack"),
        (echo, "udp"): ("open", "udp-response"),
        (mute, "udp"): ("open|filtered", "no-response"),
    }
    assert host["status"] == "up"
    assert parse_ports(host["scanned_ports"]) == parse_ports(f"T:{echo},U:{echo},{mute},{closed}")
    # the table labels the UDP ports: OPEN is TCP echo, then UDP echo
    row = done.stdout.splitlines()[1].split()
    assert row[:4] == [HOST, HOST, "up", f"{echo},{echo}/udp"]


def test_cli_su_makes_unqualified_ports_udp_and_su_st_both(udp, run_cli):
    echo, closed = udp["echo"], udp["closed"]
    done = run_cli("-sU", "-p", f"{echo},{closed}", HOST, *FAST, "--json", "-")
    assert done.returncode == 0, done.stderr
    (host,) = json.loads(done.stdout)["hosts"]
    assert _states(host) == {(echo, "udp"): ("open", "udp-response")}
    assert host["scanned_ports"] == "U:" + ",".join(map(str, sorted((echo, closed))))
    both = run_cli("-sU", "-sT", "-p", str(echo), HOST, *FAST, "--json", "-")
    assert both.returncode == 0, both.stderr
    (host,) = json.loads(both.stdout)["hosts"]
    assert _states(host) == {
        (echo, "tcp"): ("open", "syn-ack"),
        (echo, "udp"): ("open", "udp-response"),
    }
    assert host["scanned_ports"] == f"{echo},U:{echo}"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("-p", "22,U:"), "no port after 'U:' in '22,U:': a qualifier goes before a port, "
         "e.g. 'U:53,161'"),
        (("-p", "X:22"), "unknown protocol qualifier 'X:' in 'X:22': use T: (TCP) or U: (UDP), "
         "e.g. 'T:22,U:53'"),
        (("-sU", "-p", "top5000"), "invalid port set 'top5000' in 'top5000': the shipped UDP "
         "list ranks 1000 ports, use U:top1 to U:top1000, e.g. 'U:top100' or 'U:top1000'"),
        (("-p", "U:53", "--exclude-ports", "U:53"), "no ports left after excluding 'U:53' from "
         "'U:53': exclude only some of the ports, e.g. '1-1024' excluding '22'"),
    ],
)  # fmt: skip
def test_cli_bad_udp_tokens_are_one_line_exit_2(run_cli, args, line):
    done = run_cli(*args, HOST)
    assert (done.returncode, done.stderr, done.stdout) == (2, f"portscan: error: {line}\n", "")


def test_python_api_scan_and_build_job(udp):
    echo, mute, closed = udp["echo"], udp["mute"], udp["closed"]
    request = build_request([HOST], f"{echo},{mute},{closed}", protocol="udp", timeout=0.5,
                            processes=1)  # fmt: skip
    (host,) = scan(request).hosts
    assert host.state_of(udp_key(echo)) is PortState.OPEN
    assert host.state_of(udp_key(mute)) is PortState.OPEN_FILTERED
    assert host.state_of(udp_key(closed)) is PortState.CLOSED
    assert host.state_of(echo) is None  # TCP echo was not scanned
    assert (host.status, host.closed_count, host.rate_limited) == (HostStatus.UP, 1, False)
    audit = run_job(build_job([HOST], f"U:{echo}", expect_closed=f"U:{closed}", timeout=0.5,
                              processes=1))  # fmt: skip
    assert audit.verdicts[0].compliant is True
    (host,) = audit.report.hosts
    assert host.scanned == tuple(sorted((udp_key(echo), udp_key(closed))))


def test_a_udp_host_that_never_answers_is_no_response(udp):
    request = build_request([HOST], f"U:{udp['mute']}", timeout=0.3, processes=1)
    (host,) = scan(request).hosts
    assert host.status is HostStatus.NO_RESPONSE
    assert [(p.state, p.protocol) for p in host.ports] == [(PortState.OPEN_FILTERED, "udp")]


def test_nornir_task_scans_udp(udp, tmp_path):
    from nornir import InitNornir

    from nornir_portscan import portscan

    files = tmp_path / "inventory"
    files.mkdir()
    echo, closed = udp["echo"], udp["closed"]
    (files / "hosts.yaml").write_text(
        f"web1:\n  hostname: {HOST}\n  data:\n    portscan:\n      ports: '{echo},{closed}'\n"
        f"      exclude_ports: '{closed}'\n"
        f"dns1:\n  hostname: {HOST}\n  data:\n    portscan:\n      expect_closed: 'U:{closed}'\n"
    )
    for name in ("groups.yaml", "defaults.yaml"):
        (files / name).write_text("{}\n")
    nr = InitNornir(
        runner={"plugin": "serial"},
        inventory={"plugin": "SimpleInventory", "options": {
            "host_file": str(files / "hosts.yaml"), "group_file": str(files / "groups.yaml"),
            "defaults_file": str(files / "defaults.yaml")}},
        logging={"enabled": False},
    )  # fmt: skip
    result = nr.run(task=portscan, protocol="udp", timeout=0.5, processes=1)
    web1 = result["web1"][0].result
    assert not result["web1"][0].failed, web1
    assert _states(web1) == {(echo, "udp"): ("open", "udp-response")}
    assert web1["scanned_ports"] == f"U:{echo}"
    dns1 = result["dns1"][0]
    # dns1 scans the default ports (top1000, UDP under protocol=udp) and its expectation
    assert dns1.result["compliant"] is True, dns1.result
    assert f"{closed}" in dns1.result["scanned_ports"]
    assert dns1.result["scanned_ports"].startswith("U:")
