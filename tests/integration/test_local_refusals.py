"""What this host's own kernel refused is an ``error`` with a ``local-`` reason, never a port
state; an ICMP error from another host stays ``filtered``. The engine runs inside a private
namespace whose routes and firewall do the refusing, so no packet leaves the machine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from support import CLI, REPO, in_netns, nft

pytestmark = pytest.mark.netns

ROUTES = {
    # destination: (route type, reason)
    "198.51.100.0/24": ("unreachable", "local-EHOSTUNREACH"),
    "203.0.113.0/24": ("blackhole", "local-EINVAL"),
    "192.0.2.0/24": ("prohibit", "local-EACCES"),
    "2001:db8:1::/48": ("unreachable", "local-EHOSTUNREACH"),
    "2001:db8:2::/48": ("blackhole", "local-EINVAL"),
    "2001:db8:3::/48": ("prohibit", "local-EACCES"),
}
ROUTED = {
    "198.51.100.1": "local-EHOSTUNREACH",
    "203.0.113.1": "local-EINVAL",
    "192.0.2.1": "local-EACCES",
    "2001:db8:1::1": "local-EHOSTUNREACH",
    "2001:db8:2::1": "local-EINVAL",
    "2001:db8:3::1": "local-EACCES",
    "10.99.0.255": "local-ENETUNREACH",  # the link's broadcast address
    "255.255.255.255": "local-ENETUNREACH",
    "10.250.0.1": "local-ENETUNREACH",  # no route at all
    "10.99.0.9": "local-EHOSTUNREACH",  # on the link, but no neighbour answers ARP
    "fd00:99::9": "local-EHOSTUNREACH",  # nor neighbour discovery
}
PEER, PEER6 = "10.99.0.2", "fd00:99::2"


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@pytest.fixture
def refusing(netns: str) -> Iterator[str]:
    """``netns`` with refusing routes, a veth link to a peer namespace that rejects ports 82
    and 83 with ICMP errors and drops 86, and a local firewall that rejects ports 84 and 87
    to the peer (87 with ICMP port-unreachable, which reads as ECONNREFUSED) and drops 85."""
    peer = f"pspeer-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", peer], capture_output=True).returncode:
        pytest.skip("cannot create a second network namespace")
    try:
        for destination, (kind, _) in ROUTES.items():
            _ip("-n", netns, "-6" if ":" in destination else "-4", "route", "add", kind,
                destination)  # fmt: skip
        _ip("-n", netns, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", peer)
        _ip("-n", netns, "addr", "add", "10.99.0.1/24", "dev", "a0")
        _ip("-n", netns, "link", "set", "a0", "up")
        _ip("-n", netns, "-6", "addr", "add", "fd00:99::1/64", "dev", "a0", "nodad")
        _ip("-n", peer, "addr", "add", f"{PEER}/24", "dev", "b0")
        _ip("-n", peer, "-6", "addr", "add", f"{PEER6}/64", "dev", "b0", "nodad")
        _ip("-n", peer, "link", "set", "b0", "up")
        # a failed neighbour lookup in 0.2 s, not 3 s
        for family in ("ipv4", "ipv6"):
            in_netns(netns, "sysctl", "-qw", f"net.{family}.neigh.a0.mcast_solicit=1",
                     f"net.{family}.neigh.a0.retrans_time_ms=200")  # fmt: skip
        _wait_for_neighbours(netns)
        nft(
            peer,
            """
            table inet t {
              chain input {
                type filter hook input priority 0;
                meta nfproto ipv4 tcp dport 82 reject with icmp type admin-prohibited
                meta nfproto ipv4 tcp dport 83 reject with icmp type host-unreachable
                meta nfproto ipv6 tcp dport 82 reject with icmpv6 type admin-prohibited
                meta nfproto ipv6 tcp dport 83 reject with icmpv6 type addr-unreachable
                tcp dport 86 drop
              }
            }
            """,
        )
        nft(
            netns,
            f"""
            table inet t {{
              chain output {{
                type filter hook output priority 0;
                ip daddr {PEER} tcp dport 84 reject with icmp type host-unreachable
                ip6 daddr {PEER6} tcp dport 84 reject with icmpv6 type admin-prohibited
                ip daddr {PEER} tcp dport 85 drop
                ip daddr {PEER} tcp dport 87 reject
                ip6 daddr {PEER6} tcp dport 87 reject
              }}
            }}
            """,
        )
        yield netns
    finally:
        subprocess.run(["ip", "netns", "del", peer], capture_output=True)


_REFUSED = (
    "import errno, socket, sys\n"
    "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
    "s.settimeout(0.5)\n"
    "sys.exit(s.connect_ex((sys.argv[1], 80)) != errno.ECONNREFUSED)\n"
)


def _wait_for_neighbours(ns: str) -> None:
    """Poll until the peer refuses a connect over IPv4 and IPv6 (its link takes a moment)."""
    deadline = time.monotonic() + 10
    for address in (PEER, PEER6):
        while in_netns(ns, sys.executable, "-c", _REFUSED, address).returncode:
            if time.monotonic() > deadline:
                pytest.skip(f"the peer namespace does not answer at {address}")
            time.sleep(0.05)


def _scan(ns: str, *args: str) -> tuple[int, dict[str, dict[str, object]], int]:
    done = in_netns(ns, *CLI, "--json", "-", "-p", "80-84,87", "--timeout", "2", *args,
                    cwd=str(REPO))  # fmt: skip
    report = json.loads(done.stdout)
    return done.returncode, {h["name"]: h for h in report["hosts"]}, report["probes_sent"]


def test_local_refusals_are_errors_and_network_icmp_is_filtered(refusing):
    code, hosts, probes = _scan(refusing, PEER, PEER6, *ROUTED)
    assert code == 3  # ports ended error: the scan could not tell their state
    for address, local in ((PEER, "local-EHOSTUNREACH"), (PEER6, "local-EACCES")):
        peer = hosts[address]
        assert [(p["port"], p["state"], p["reason"], p["attempts"]) for p in peer["ports"]] == [
            (82, "filtered", "admin-prohibited", 1),
            (83, "filtered", "host-unreach", 1),
            (84, "error", local, 1),  # this host's own firewall said so
            (87, "error", "local-ECONNREFUSED", 1),  # not closed: the RST never came
        ]
        assert (peer["status"], peer["closed_count"]) == ("up", 2)
    for address, reason in ROUTED.items():
        host = hosts[address]
        assert {(p["state"], p["reason"]) for p in host["ports"]} == {("error", reason)}, address
        assert (host["status"], host["error_ports"], host["filtered_ports"]) == (
            "error",
            [80, 81, 82, 83, 84, 87],
            [],
        )
        if address not in ("10.99.0.9", "fd00:99::9"):  # refused by connect(): nothing sent
            assert {p["attempts"] for p in host["ports"]} == {1}, address
    # the peers' probes and those to the neighbours that never answered: nothing else
    assert 4 * 6 <= probes <= 2 * 6 + 2 * 6 * 2


def test_an_expectation_of_filtered_fails_on_a_port_refused_locally(refusing):
    code, hosts, _ = _scan(refusing, "--expect-filtered", "82-84", PEER, "198.51.100.1")
    assert code == 3  # the check failed, and error ports make it 3, not 1
    assert hosts[PEER]["failure"] == (
        f"{PEER}: no state for ports 84,87 (local-ECONNREFUSED, local-EHOSTUNREACH); "
        "port 84 error (expected filtered)"
    )
    assert hosts["198.51.100.1"]["passed"] is False


def test_a_local_firewall_drop_is_an_error_once_the_syn_is_retransmitted(refusing):
    """Port 85 is dropped by this host's own firewall, 86 by the peer: both are silent, but
    past TCP's first retransmission (1 s) the kernel shows that nothing left for 85."""
    done = in_netns(refusing, *CLI, "--json", "-", "-p", "85,86", "--timeout", "1.5",
                    "--no-adaptive", "--retries", "0", PEER, cwd=str(REPO))  # fmt: skip
    (host,) = json.loads(done.stdout)["hosts"]
    assert [(p["port"], p["state"], p["reason"]) for p in host["ports"]] == [
        (85, "error", "local-EPERM"),
        (86, "filtered", "no-response"),
    ]


def test_an_ipv4_mapped_address_reads_its_icmp_errors_as_icmpv4(refusing):
    """An IPv6 socket to ::ffff:10.99.0.2 gets ICMPv4 errors, its own address mapped."""
    code, hosts, _ = _scan(refusing, f"::ffff:{PEER}")
    assert code == 3  # port 84 ended error
    ((_, host),) = hosts.items()
    assert [(p["port"], p["state"], p["reason"]) for p in host["ports"]] == [
        (82, "filtered", "admin-prohibited"),
        (83, "filtered", "host-unreach"),
        (84, "error", "local-EHOSTUNREACH"),
        (87, "error", "local-ECONNREFUSED"),
    ]


def test_a_loopback_reject_under_load_is_never_an_error(netns):
    """A local reject of loopback ports: the ICMP often comes while connect() holds the socket,
    a soft error that leaves the reused socket in SYN_SENT (its next connect: EALREADY). That
    is no refusal of the next port: it was reported ``error local-EALREADY`` (366 of 1,000)."""
    nft(netns, "table inet t {\n chain input {\n  type filter hook input priority 0;\n"
               "  tcp dport 1000-1999 reject\n }\n}\n")  # fmt: skip
    done = in_netns(netns, *CLI, "--json", "-", "-p", "1000-1999", "--processes", "1",
                    "--concurrency", "50", "--no-adaptive", "--timeout", "0.5", "--retries", "0",
                    "--closed", "127.0.0.1", cwd=str(REPO))  # fmt: skip
    (host,) = json.loads(done.stdout)["hosts"]
    assert host["error_ports"] == []
    # closed (the reject's ICMP read as this host's RST), or filtered where the kernel's ICMP
    # rate limit kept the reject silent
    assert {p["state"] for p in host["ports"]} <= {"closed", "filtered"}
    assert len(host["ports"]) == 1000
