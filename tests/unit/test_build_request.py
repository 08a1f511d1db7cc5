"""build_request with named targets, the adapters' way in (inventory hosts)."""

import pytest

from nornir_portscan import PortSpecError, Target, TargetSpecError, build_request
from nornir_portscan.engine.executor import TargetSpec


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


def test_a_named_target_must_be_one_host():
    with pytest.raises(TargetSpecError) as caught:
        build_request([TargetSpec("many", "127.0.0.0/24")], "22")
    assert str(caught.value) == (
        "target 'many': address '127.0.0.0/24' is more than one host; give one address or "
        "hostname, e.g. '127.0.0.1'"
    )


def test_bad_own_ports_name_the_token():
    with pytest.raises(PortSpecError, match="invalid port '70000'"):
        build_request([TargetSpec("web1", "127.0.0.11", "22,70000")], "22")
