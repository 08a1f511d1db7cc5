"""build_request with named targets, the adapters' way in (inventory hosts)."""

import pytest

from nornir_portscan import PortSpecError, Target, TargetSpecError, build_request
from nornir_portscan.errors import ScopeError
from nornir_portscan.request import TargetSpec


def test_named_literals_keep_their_names_and_own_ports():
    request = build_request(
        [TargetSpec("web1", "127.0.0.11", "22,80"), TargetSpec("v6", "[::1]"),
         TargetSpec("127.0.0.12")],
        "443", exclude_ports="80",
    )  # fmt: skip
    assert request.targets == (
        Target("web1", "127.0.0.11", (22,)),
        Target("v6", "::1", ()),
        Target("127.0.0.12", "127.0.0.12", ()),
    )
    assert [request.ports_for(t) for t in request.targets] == [(22,), (443,), (443,)]


def test_named_hostnames_resolve_in_both_families():
    request = build_request([TargetSpec("lo", "localhost")], "22", family="both")
    assert {t.name for t in request.targets} == {"lo"}
    assert "127.0.0.1" in {t.address for t in request.targets}


@pytest.mark.parametrize("address", ["127.0.0.0/24", "127.0.0.0/31", "127.0.0.1-2", "::1/128"])
def test_a_named_target_must_be_one_host(address):
    with pytest.raises(TargetSpecError) as caught:
        build_request([TargetSpec("many", address)], "22")
    assert str(caught.value) == (
        f"invalid address {address!r} of target 'many': give one address or hostname, not a "
        "range or block, e.g. '127.0.0.1'"
    )


def test_exclusions_and_the_scope_guard_hold_for_named_targets():
    specs = [TargetSpec(f"h{i}", f"127.0.0.{i}") for i in (1, 2, 3)]
    request = build_request(specs, "22", exclude=["127.0.0.2"])
    assert [t.name for t in request.targets] == ["h1", "h3"]
    with pytest.raises(ScopeError, match=r"2 hosts by '127.0.0.2' \(address of target 'h2'\), "):
        build_request(specs, "22", max_hosts=1)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (None, "invalid targets None: give a list of targets, e.g. ['127.0.0.1']"),
        (b"127.0.0.1", "invalid targets b'127.0.0.1': give a list of targets, e.g. ['127.0.0.1']"),
        (5, "invalid targets 5: give a list of targets, e.g. ['127.0.0.1']"),
        ([1], "invalid target 1: give a string or a TargetSpec, e.g. '127.0.0.1'"),
    ],
)
def test_targets_of_the_wrong_type_say_what_is_expected(targets, message):
    with pytest.raises(TargetSpecError) as caught:
        build_request(targets, "22")
    assert str(caught.value) == message


def test_one_string_is_one_spec_as_for_exclude():
    """Not one target per character ('invalid target '1''), and not refused: a spec may hold
    several targets anyway."""
    request = build_request("127.0.0.1,127.0.0.2", "22", exclude="127.0.0.2")
    assert [t.address for t in request.targets] == ["127.0.0.1"]
    assert [t.name for t in build_request(TargetSpec("web", "127.0.0.3"), "22").targets] == ["web"]


def test_bad_own_ports_name_the_token():
    with pytest.raises(PortSpecError, match="invalid port '70000'"):
        build_request([TargetSpec("web1", "127.0.0.11", "22,70000")], "22")


def test_each_target_carries_its_own_policy_with_both_families():
    """A string target and a dict target of one name: each address has its own target's policy
    (the Ansible door matched them by walking names backwards, and crossed them)."""
    request = build_request(
        ["127.0.0.1", TargetSpec("127.0.0.1", "::1", policy={"expect_open": "8080"})],
        "22",
        family="both",
        policy={"expect_closed": "23"},
    )
    assert [
        (t.name, t.address, t.ports, sorted(t.policy.expect_open)) for t in request.targets
    ] == [
        ("127.0.0.1", "127.0.0.1", (22, 23), []),
        ("127.0.0.1", "::1", (22, 23, 8080), [8080]),
    ]
    assert all(t.policy.expect_closed == frozenset({23}) for t in request.targets)


def test_a_named_host_beats_a_plain_spec_of_the_same_host_and_twice_is_refused():
    own = TargetSpec("127.0.0.1", "127.0.0.1", ports="80", policy={"expect_open": "80"})
    (target,) = build_request(["127.0.0.1", own], "22").targets
    assert (target.ports, sorted(target.policy.expect_open)) == ((80,), [80])
    other = TargetSpec("127.0.0.1", "127.0.0.1", ports="443")
    with pytest.raises(TargetSpecError) as caught:
        build_request([own, other], "22")
    assert str(caught.value) == (
        "target '127.0.0.1' (127.0.0.1) is given twice, with other ports or expectations; give "
        "each host once, e.g. one entry per name"
    )
