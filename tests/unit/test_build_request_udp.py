"""UDP ports through build_request and build_job: T:/U: in every port list, and protocol=
saying what a port without a qualifier is (the ports, exclusions, targets' own and every
expectation alike)."""

import pytest

from nornir_portscan import OptionError, PortSpecError, build_job, build_request
from nornir_portscan.ports import udp_key
from nornir_portscan.request import TargetSpec

U = udp_key


def test_u_ports_are_keys_in_the_request():
    request = build_request(["127.0.0.1"], "T:22,U:53,161", exclude_ports="U:161")
    assert request.ports == (22, U(53))


def test_expect_closed_u161_is_the_udp_key_and_is_scanned():
    request = build_request(["127.0.0.1"], "22", policy={"expect_closed": "U:161"})
    (target,) = request.targets
    assert target.policy.expect_closed == frozenset({U(161)})
    assert request.ports_for(target) == (22, U(161))


def test_protocol_udp_holds_for_every_port_list():
    request = build_request(
        [TargetSpec("web1", "127.0.0.11", "53,T:22", policy={"expect_open": "53"}), "127.0.0.1"],
        "161,162",
        exclude_ports="162",
        policy={"expect_closed": "1234", "allowed_open": "53,T:22"},
        protocol="udp",
    )
    plain, web1 = request.targets  # named targets after the plain ones
    assert request.ports == (U(161),)
    assert web1.policy.expect_open == frozenset({U(53)})
    assert web1.policy.allowed_open == frozenset({22, U(53)})
    assert request.ports_for(web1) == (22, U(53), U(1234))
    assert request.ports_for(plain) == (U(161), U(1234))


def test_protocol_both_makes_a_tcp_and_a_udp_port_of_each():
    request = build_request(["127.0.0.1"], "53", protocol="both")
    assert request.ports == (53, U(53))


def test_a_tcp_request_is_what_it_always_was():
    assert build_request(["127.0.0.1"], "22,80").ports == (22, 80)


def test_build_job_takes_the_protocol():
    job = build_job(["127.0.0.1"], "top3", protocol="udp", expect_open="U:53")
    (target,) = job.request.targets
    assert job.request.ports_for(target) == (U(53), U(137), U(161), U(631))


def test_a_bad_protocol_is_one_line():
    with pytest.raises(OptionError) as caught:
        build_job(["127.0.0.1"], "53", protocol="sctp")
    assert str(caught.value) == (
        "invalid protocol 'sctp': use tcp, udp or both (what a port without T: or U: is), "
        "e.g. protocol='udp'"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ports": "U:"}, "no port after 'U:' in 'U:': a qualifier goes before a port, e.g. "
         "'U:53,161'"),
        ({"ports": "22", "expect_open": "X:22"}, "expect_open: unknown protocol qualifier 'X:' in "
         "'X:22': use T: (TCP) or U: (UDP), e.g. 'T:22,U:53'"),
        ({"ports": "U:top5000"}, "invalid port set 'U:top5000' in 'U:top5000': the shipped UDP "
         "list ranks 1000 ports, use U:top1 to U:top1000, e.g. 'U:top100' or 'U:top1000'"),
    ],
)  # fmt: skip
def test_bad_udp_tokens_name_themselves(kwargs, message):
    with pytest.raises(PortSpecError) as caught:
        build_job(["127.0.0.1"], **kwargs)
    assert str(caught.value) == message


def test_a_targets_own_bad_udp_ports_name_the_target():
    with pytest.raises(PortSpecError) as caught:
        build_request([TargetSpec("web1", "127.0.0.11", "U:0")], "22")
    assert str(caught.value) == (
        "ports of target 'web1': invalid port 'U:0' in 'U:0': ports are 1-65535, e.g. 'U:53,161'"
    )


def test_a_policy_file_reads_with_the_scans_protocol(tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text("defaults:\n  expect_closed: '161'\nhosts:\n  127.0.0.1:\n"
                      "    expect_open: 'T:22,U:53'\n")  # fmt: skip
    (target,) = build_job(["127.0.0.1"], "U:1", policy_file=policy, protocol="udp").request.targets
    assert target.policy.expect_closed == frozenset({U(161)})
    assert target.policy.expect_open == frozenset({22, U(53)})
    (tcp,) = build_job(["127.0.0.1"], "U:1", policy_file=policy).request.targets
    assert tcp.policy.expect_closed == frozenset({161})
