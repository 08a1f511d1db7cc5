"""The UDP prober against a Linux target in a namespace, its ICMP rate limit left on: a closed
port never reads open|filtered, however few errors the target sends; dropped ports do."""

from __future__ import annotations

import pytest

from tests.engine.udp_helpers import drive, namespace_pair, states

pytestmark = [pytest.mark.netns, pytest.mark.slow]

DROPPED = range(43000, 43006)
CLOSED = range(43006, 43024)


def _rules(hook: str, *rules: str) -> str:
    body = "\n".join(f"    {rule}" for rule in rules)
    return (
        f"table inet udptest {{\n  chain {hook} {{\n"
        f"    type filter hook {hook} priority 0;\n{body}\n  }}\n}}\n"
    )


def _drop(ports: range) -> str:
    return _rules("input", f"udp dport {ports.start}-{ports.stop - 1} drop")


def test_rate_limited_closed_ports_stay_closed_and_dropped_ones_are_open_filtered() -> None:
    with namespace_pair() as pair:
        pair.nft(pair.target, _drop(DROPPED))
        result = drive([(0, pair.address, [*DROPPED, *CLOSED])], netns=pair.client, retries=0)
    (unit,) = result["units"]
    expected = dict.fromkeys(DROPPED, ("open|filtered", "no-response"))
    expected.update(dict.fromkeys(CLOSED, ("closed", "port-unreach")))
    assert states(unit) == expected
    assert unit["rate_limited"]  # 18 closed ports, 6 errors in the burst: the rest waited
    # one error a second after the burst of six: the scan cannot be much faster
    assert result["elapsed"] > len(CLOSED) - 6 - 1


def test_addresses_of_one_machine_share_its_rate_limit() -> None:
    hosts = ["198.18.253.1", "198.18.253.2"]
    with namespace_pair(extra=hosts) as pair:
        pair.nft(pair.target, _drop(DROPPED))
        result = drive(
            [(i, host, [*DROPPED, *CLOSED[:10]]) for i, host in enumerate(hosts)],
            netns=pair.client,
        )
    expected = dict.fromkeys(DROPPED, ("open|filtered", "no-response"))
    expected.update(dict.fromkeys(CLOSED[:10], ("closed", "port-unreach")))
    assert [states(unit) for unit in result["units"]] == [expected, expected]


def test_an_icmp_reject_is_filtered_with_its_reason() -> None:
    with namespace_pair() as pair:
        pair.nft(
            pair.target,
            _rules(
                "input",
                "udp dport 43100 reject with icmp type admin-prohibited",
                "udp dport 43101 reject with icmp type host-unreachable",
            ),
        )
        (unit,) = drive([(0, pair.address, [43100, 43101])], netns=pair.client)["units"]
    assert states(unit) == {
        43100: ("filtered", "admin-prohibited"),
        43101: ("filtered", "host-unreach"),
    }


def test_what_this_host_refuses_is_a_local_error_never_a_port_state() -> None:
    with namespace_pair() as pair:
        pair.nft(
            pair.client,
            _rules("output", "udp dport 43200 drop", "udp dport 43201 reject"),
        )
        (unit,) = drive([(0, pair.address, [43200, 43201, 43202])], netns=pair.client)["units"]
    assert states(unit) == {
        43200: ("error", "local-EPERM"),  # the local firewall's drop fails the send
        43201: ("error", "local-EPERM"),  # a local reject fails the send too, no ICMP
        43202: ("closed", "port-unreach"),
    }


def test_a_host_timeout_leaves_rate_limited_ports_unscanned_never_open_filtered() -> None:
    with namespace_pair() as pair:
        result = drive([(0, pair.address, range(43300, 43340))], netns=pair.client, deadline=3.0)
    (unit,) = result["units"]
    found = states(unit)
    assert set(found.values()) == {("closed", "port-unreach")}
    assert 6 <= len(found) < 20  # the burst, then about one a second until the timeout
    assert sorted([*found, *unit["unscanned"]]) == list(range(43300, 43340))


@pytest.mark.parametrize("retries", [0, 1])
def test_an_on_link_address_no_one_has_is_a_local_error_not_open_filtered(retries: int) -> None:
    # The datagrams wait for a neighbour that never answers; after 3 s the kernel fails them
    # with an ICMP host-unreachable from this host. The other host answers at once, so the
    # worker has a round-trip estimate and its timeouts are short.
    with namespace_pair() as pair:
        pair.run("ip", "-n", pair.client, "route", "add", "198.18.254.0/24", "dev", pair.veth)
        result = drive(
            [(0, pair.address, [43400]), (1, "198.18.254.9", [43401, 43402])],
            netns=pair.client,
            retries=retries,
        )
    answered, phantom = result["units"]
    assert states(answered) == {43400: ("closed", "port-unreach")}
    assert states(phantom) == dict.fromkeys([43401, 43402], ("error", "local-EHOSTUNREACH"))
