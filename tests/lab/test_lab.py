"""The lab checked with plain sockets (no scanner): states, ICMP details, latency, cleanup."""

from __future__ import annotations

import errno
import json
import statistics
import subprocess
import time

import pytest

from .lab import Lab, status, up
from .sockprobe import SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6, classify, probe_many
from .truth import (
    ADMIN,
    CLOSED,
    DROP,
    OPEN,
    UNREACH,
    V6_LINK_TARGETS,
    LabConfig,
    client_ruleset,
    ground_truth,
    host_ports,
    make_plan,
    syn_policer,
    targets_ruleset,
)

# --- the plan (pure, runs anywhere) -------------------------------------------------------


def test_host_ports_mix_every_kind() -> None:
    assert host_ports(0) == {
        22: OPEN,
        80: OPEN,
        443: OPEN,
        21: OPEN,
        20000: OPEN,
        445: DROP,
        23: DROP,
        113: ADMIN,
        135: ADMIN,
        5060: UNREACH,
        1433: UNREACH,
    }
    for index in range(16):
        verdicts = set(host_ports(index).values())
        assert verdicts == {OPEN, DROP, ADMIN, UNREACH}


def test_an_open_block_is_open_on_every_host_through_one_wildcard_listener_a_port() -> None:
    plan = make_plan(LabConfig(hosts=3, hosts6=1, open_block=2))
    assert all(plan.ports[a][30000] == OPEN and plan.ports[a][30001] == OPEN for a in plan.ports)
    binds = plan.listeners()
    assert ("0.0.0.0", 30001) in binds
    assert ("::", 30001) in binds
    assert not [b for b in binds if b[1] >= 30000 and b[0] not in ("0.0.0.0", "::")]


def test_the_syn_policer_is_a_hashlimit_per_destination() -> None:
    rule = " ".join(syn_policer(LabConfig(prefix="npx", syn_limit=20)))
    assert rule == (
        "-p tcp --syn -m hashlimit --hashlimit-name npxsyn --hashlimit-mode dstip "
        "--hashlimit-above 20/sec --hashlimit-burst 5 -j DROP"
    )


def test_plan_addresses_and_blocks() -> None:
    plan = make_plan(LabConfig(hosts=256, hosts6=3))
    assert plan.hosts4[0] == "198.18.1.0"
    assert plan.hosts4[-1] == "198.18.1.255"
    assert plan.hosts6 == ("fd00:1ab:0:1::1", "fd00:1ab:0:1::2", "fd00:1ab:0:1::3")
    assert plan.local_blocks(4) == ["198.18.1.0/24", "198.19.0.1/32"]
    assert plan.local_blocks(6) == [
        "fd00:1ab:0:1::1/128",
        "fd00:1ab:0:1::2/127",
        "fd00:1ab:0:2::1/128",
    ]


def test_ground_truth_lists_every_host() -> None:
    truth = ground_truth(make_plan(LabConfig(hosts=4, hosts6=2)))
    assert sorted(truth["hosts"]) == sorted(
        [
            "198.18.1.0",
            "198.18.1.1",
            "198.18.1.2",
            "198.18.1.3",
            "198.19.0.1",
            "fd00:1ab:0:1::1",
            "fd00:1ab:0:1::2",
            "fd00:1ab:0:2::1",
        ]
    )
    assert truth["hosts"]["198.18.1.1"]["ports"]["25"] == {"state": "open", "reason": "syn-ack"}
    assert truth["hosts"]["198.18.1.1"]["default"] == {"state": "closed", "reason": "conn-refused"}
    assert truth["hosts"]["198.19.0.1"] == {
        "family": "ipv4",
        "status": "no-response",
        "ports": {},
        "default": {"state": "filtered", "reason": "no-response"},
    }
    json.dumps(truth)


def test_rulesets_name_every_reject_kind() -> None:
    rules = targets_ruleset(make_plan(LabConfig(hosts=2, hosts6=2)))
    for action in (
        "reject with icmp type admin-prohibited",
        "reject with icmp type host-unreachable",
        "reject with icmpv6 type admin-prohibited",
        "reject with icmpv6 type addr-unreachable",
        "ip daddr @down4 drop",
        "ip6 daddr @down6 drop",
    ):
        assert action in rules
    assert "numgen" not in client_ruleset(LabConfig())
    assert "numgen random mod 10000 < 250 drop" in client_ruleset(LabConfig(loss=2.5))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hosts", 5000, "invalid hosts 5000: use 0 to 4096, e.g. 256"),
        ("loss", 100, "invalid loss 100: use a percent from 0 to 99, e.g. 1"),
        ("prefix", "a-b", "invalid prefix 'a-b': use up to 8 letters/digits, e.g. npl"),
    ],
)
def test_config_errors_show_a_valid_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        LabConfig(**{field: value})  # type: ignore[arg-type]
    assert str(info.value) == message


# --- the running lab ----------------------------------------------------------------------


def _sample(lab: Lab, count: int = 4) -> list[str]:
    return lab.hosts4[:count] + lab.hosts6[:count]


@pytest.mark.netns
def test_routes_stay_inside_the_lab(lab: Lab) -> None:
    def run(*argv: str) -> str:
        return subprocess.run(
            [*lab.netns_exec, *argv], capture_output=True, text=True, check=True
        ).stdout

    assert run("ip", "route", "show", "default").strip() == ""
    assert run("ip", "-6", "route", "show", "default").strip() == ""
    for address in [*_sample(lab, 2), *lab.down4, *lab.down6]:
        assert f"dev {lab.config.client_veth} " in run("ip", "route", "get", address)
    # Nothing of the lab shows in the namespace pytest runs in.
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f" {lab.config.client_veth}@" not in links


@pytest.mark.netns
def test_up_again_is_a_no_op(lab: Lab) -> None:
    before = status(lab.config.prefix)["state"]
    _, built = up(lab.config)
    assert built is False
    assert status(lab.config.prefix)["state"] == before


@pytest.mark.netns
def test_special_ports_match_the_ground_truth(lab: Lab) -> None:
    """Every non-closed port of a sample of hosts, a few closed ones and the down hosts."""
    pairs = [(a, p) for a in _sample(lab) for p in lab.special_ports]
    pairs += [(a, p) for a in lab.down4 + lab.down6 for p in (22, 80, 1)]
    with lab.entered():
        outcomes = probe_many(pairs, timeout=0.5 + lab.config.latency_ms / 1000)
    got = {(o.address, o.port): classify(o) for o in outcomes}
    want = {pair: lab.expected(*pair) for pair in pairs}
    assert got == want


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_open_and_closed(lab: Lab, family: str) -> None:
    host = lab.hosts4[5] if family == "ipv4" else lab.hosts6[5]
    pairs = [
        (host, 22),
        (host, 80),
        (host, 443),
        (host, 20005),
        (host, 3306),
        (host, 5432),
        (host, 1),
    ]
    with lab.entered():
        outcomes = probe_many(pairs, timeout=1.0)
    assert {(o.port, classify(o)) for o in outcomes} == {
        (22, OPEN),
        (80, OPEN),
        (443, OPEN),
        (20005, OPEN),
        (3306, OPEN),
        (5432, CLOSED),
        (1, CLOSED),
    }
    refused = next(o for o in outcomes if o.port == 1)
    assert refused.so_error == errno.ECONNREFUSED
    assert refused.icmp is None


@pytest.mark.netns
def test_dropped_port_and_down_host_say_nothing(lab: Lab) -> None:
    with lab.entered():
        outcomes = probe_many(
            [(lab.hosts4[0], 445), (lab.hosts6[0], 23), (lab.down4[0], 22), (lab.down6[0], 22)],
            timeout=0.4,
        )
    assert all(o.timed_out for o in outcomes)


# (address picker, port, SO_ERROR, ee_origin, ee_type, ee_code)
ICMP_CASES = [
    pytest.param("v4", 113, errno.EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 3, 13, id="v4-admin-prohibited"),
    pytest.param("v4", 5060, errno.EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 3, 1, id="v4-host-unreachable"),
    pytest.param("v6", 113, errno.EACCES, SO_EE_ORIGIN_ICMP6, 1, 1, id="v6-admin-prohibited"),
    pytest.param(
        "v6", 5060, errno.EHOSTUNREACH, SO_EE_ORIGIN_ICMP6, 1, 3, id="v6-addr-unreachable"
    ),
]


@pytest.mark.netns
@pytest.mark.parametrize(("family", "port", "so_error", "origin", "icmp_type", "code"), ICMP_CASES)
def test_icmp_reject_details(
    lab: Lab, family: str, port: int, so_error: int, origin: int, icmp_type: int, code: int
) -> None:
    """What a TCP connect gets for each ICMP reject: the errno and the error-queue entry."""
    host = lab.hosts4[7] if family == "v4" else lab.hosts6[7]
    with lab.entered():
        (outcome,) = probe_many([(host, port)], timeout=2.0)
    assert not outcome.timed_out
    assert outcome.so_error == so_error
    assert outcome.icmp is not None
    assert (outcome.icmp.errno, outcome.icmp.origin, outcome.icmp.type, outcome.icmp.code) == (
        so_error,
        origin,
        icmp_type,
        code,
    )
    # IPv4 answers from the target's own address; IPv6 picks the namespace's interface address,
    # as a router on the path would.
    assert outcome.icmp.offender == (host if family == "v4" else V6_LINK_TARGETS)
    # "Quickly": one round trip, not a retransmission timeout.
    assert outcome.elapsed < lab.config.latency_ms / 1000 + 0.2


@pytest.mark.netns
def test_reject_bursts_are_not_rate_limited(lab: Lab) -> None:
    """Hundreds of rejects at once all arrive: the targets' ICMP rate limit is off."""
    pairs = [(a, p) for a in lab.hosts4[:100] + lab.hosts6[:16] for p in (113, 5060)]
    with lab.entered():
        outcomes = probe_many(pairs, timeout=1.0 + lab.config.latency_ms / 1000)
    wrong = [
        (o.address, o.port, classify(o))
        for o in outcomes
        if classify(o) != lab.expected(o.address, o.port)
    ]
    assert wrong == []


@pytest.mark.netns
def test_added_latency(lab: Lab) -> None:
    """A connect's round trip is the configured latency plus well under a few milliseconds."""
    samples = []
    with lab.entered():
        for round_ in range(10):
            pairs = [(lab.hosts4[round_], 1), (lab.hosts6[round_ % len(lab.hosts6)], 1)]
            samples += [o.elapsed for o in probe_many(pairs, timeout=2.0)]
            time.sleep(0.01)
    median_ms = statistics.median(samples) * 1000
    print(
        f"lab latency {lab.config.latency_ms} ms: connect RTT median {median_ms:.2f} ms, "
        f"min {min(samples) * 1000:.2f}, max {max(samples) * 1000:.2f}"
    )
    assert lab.config.latency_ms <= median_ms <= lab.config.latency_ms + 3
