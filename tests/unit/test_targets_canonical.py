"""One spelling per host: zones, IPv4-mapped addresses, exclusions and dedupe compare
canonical forms (nornir_portscan.addresses). No test sends a packet."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from nornir_portscan.addresses import address_problem, canonical_address
from nornir_portscan.errors import PortSpecError, TargetSpecError
from nornir_portscan.models import ScanRequest, Target
from nornir_portscan.request import TargetSpec, build_request
from nornir_portscan.targets import parse_targets

LO = socket.if_nameindex()[0]  # (index, name) of an interface this machine has
LO_INDEX, LO_NAME = LO
NO_SUCH = "nosuch0"


def addresses(specs: list[str], **kwargs: object) -> list[tuple[str, str | None]]:
    return [(t.name, t.address) for t in parse_targets(specs, **kwargs)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::FFFF:7f00:1", "127.0.0.1"),
        ("::1%lo", "::1"),
        (f"::1%{LO_INDEX}", "::1"),
        ("0:0::1", "::1"),
        (f"fe80::1%{LO_NAME}", f"fe80::1%{LO_NAME}"),
        (f"fe80::1%{LO_INDEX}", f"fe80::1%{LO_NAME}"),  # the index spelt as the name
        (f"::ffff:127.0.0.1%{LO_NAME}", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_canonical_address(text: str, expected: str) -> None:
    assert canonical_address(text) == expected


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["::ffff:127.0.0.1"], ["127.0.0.1"]),
        (["127.0.0.1", "::ffff:127.0.0.1", "[::ffff:7f00:1]"], ["127.0.0.1"]),  # one host
        (["::1", "::1%lo", f"::1%{LO_INDEX}", "[::1%lo]"], ["::1"]),
        ([f"fe80::1%{LO_INDEX}", f"fe80::1%{LO_NAME}"], [f"fe80::1%{LO_NAME}"]),
        (["::ffff:127.0.0.0/127"], ["127.0.0.0", "127.0.0.1"]),
        ([f"fe80::%{LO_NAME}/127"], [f"fe80::%{LO_NAME}", f"fe80::1%{LO_NAME}"]),
        (["::1%lo/128"], ["::1"]),
    ],
)
def test_other_spellings_are_one_host(specs: list[str], expected: list[str]) -> None:
    assert addresses(specs) == [(a, a) for a in expected]


@pytest.mark.parametrize(
    ("specs", "exclude", "left"),
    [
        (["::ffff:127.0.0.1", "127.0.0.2"], ["127.0.0.1"], ["127.0.0.2"]),
        (["127.0.0.1", "127.0.0.2"], ["::ffff:127.0.0.1"], ["127.0.0.2"]),
        (["127.0.0.1-3"], ["::ffff:127.0.0.0/126"], []),
        # ::/0 means IPv6: not the IPv4 addresses that it also spans as mapped ones
        (["127.0.0.1", "::2"], ["::/0"], ["127.0.0.1"]),
        (["127.0.0.1", "::2"], ["::ffff:0:0/96"], ["::2"]),
        (["::1%lo", "127.0.0.2"], ["::1"], ["127.0.0.2"]),
        ([f"::1%{LO_INDEX}", "127.0.0.2"], ["::1"], ["127.0.0.2"]),
        (["::1", "127.0.0.2"], ["::1%lo"], ["127.0.0.2"]),
        # a link-local exclusion without a zone holds on every link, with one only on that one
        ([f"fe80::1%{LO_NAME}", "127.0.0.2"], ["fe80::1"], ["127.0.0.2"]),
        ([f"fe80::1%{LO_NAME}", "127.0.0.2"], ["fe80::/64"], ["127.0.0.2"]),
        ([f"fe80::1%{LO_NAME}", "127.0.0.2"], [f"fe80::1%{LO_INDEX}"], ["127.0.0.2"]),
        ([f"fe80::1%{LO_NAME}", "127.0.0.2"], [f"fe80::%{LO_INDEX}/64"], ["127.0.0.2"]),
    ],
)
def test_exclusions_hold_for_every_spelling(
    specs: list[str], exclude: list[str], left: list[str]
) -> None:
    assert [t.address for t in parse_targets(specs, exclude=exclude, allow_empty=True)] == left


def test_a_link_local_exclusion_with_a_zone_spares_other_links() -> None:
    other = next((name for _, name in socket.if_nameindex() if name != LO_NAME), None)
    if other is None:
        pytest.skip("one interface only")
    specs = [f"fe80::1%{LO_NAME}", f"fe80::1%{other}"]
    assert [t.address for t in parse_targets(specs, exclude=[f"fe80::1%{other}"])] == [
        f"fe80::1%{LO_NAME}"
    ]


def test_named_hosts_and_resolved_names_are_canonical() -> None:
    request = build_request(
        [TargetSpec("web", "::ffff:127.0.0.5"), TargetSpec("db", "::1%lo")],
        "22",
        exclude=["127.0.0.5"],
        allow_empty=True,
    )
    assert [(t.name, t.address) for t in request.targets] == [("db", "::1")]

    def resolver(name: str, family: int) -> list[str]:
        return ["::ffff:127.0.0.7", "fe80::9"]  # mapped, and link-local without its zone

    targets = parse_targets(["mapped.test"], family="both", resolver=resolver)
    assert [(t.name, t.address) for t in targets] == [("mapped.test", "127.0.0.7")]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (
            f"::1%{NO_SUCH}",
            f"invalid zone in '::1%{NO_SUCH}': no interface '{NO_SUCH}' on this machine",
        ),
        ("fe80::1%99999", "invalid zone in 'fe80::1%99999': no interface '99999' on this machine"),
        (
            f"[fe80::1%{NO_SUCH}]",
            f"invalid zone in '[fe80::1%{NO_SUCH}]': no interface '{NO_SUCH}' on this machine",
        ),
        (
            f"fe80::%{NO_SUCH}/64",
            f"invalid zone in 'fe80::%{NO_SUCH}/64': no interface '{NO_SUCH}' on this machine",
        ),
        (
            "fe80::1",
            "invalid target 'fe80::1': a link-local address needs a zone, the interface to "
            "reach it on, e.g. 'fe80::1%eth0'",
        ),
        (
            "fe80::/126",
            "invalid target 'fe80::/126': a link-local block needs a zone, the interface to "
            "reach it on, e.g. 'fe80::%eth0/126'",
        ),
    ],
)
def test_bad_zones_are_input_errors(token: str, message: str) -> None:
    with pytest.raises(TargetSpecError) as caught:
        parse_targets([token])
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    if "no interface" in message:
        assert str(caught.value).endswith(
            "; give an interface of this machine, e.g. 'fe80::1%eth0' or '::1'"
        )


def test_an_unknown_zone_in_an_exclusion_is_an_input_error_too() -> None:
    with pytest.raises(TargetSpecError, match=f"invalid zone in '::1%{NO_SUCH}' in exclude"):
        parse_targets(["127.0.0.1"], exclude=[f"::1%{NO_SUCH}"])


def test_a_named_host_with_a_bad_zone_names_the_host() -> None:
    with pytest.raises(TargetSpecError) as caught:
        build_request([TargetSpec("web", f"fe80::1%{NO_SUCH}")], "22")
    assert str(caught.value).startswith(
        f"invalid zone in 'fe80::1%{NO_SUCH}' (address of target 'web'): no interface"
    )


# -- a request a worker is given: checked by the parent, whoever built it -------------------

GOOD = Target("a", "127.0.0.1")


@pytest.mark.parametrize(
    ("targets", "ports", "error", "message"),
    [
        (
            (Target("x", "not-an-ip"),),
            (22,),
            TargetSpecError,
            "invalid address 'not-an-ip' of target 'x': not an IP address; a request holds "
            "resolved addresses, build it with build_request, e.g. build_request(['127.0.0.1'], "
            "'22,443')",
        ),
        ((Target("x", "localhost"),), (22,), TargetSpecError, "of target 'x': not an IP address"),
        (
            (Target("x", "::1%lo"),),
            (22,),
            TargetSpecError,
            "invalid address '::1%lo' of target 'x': not in its canonical form '::1'",
        ),
        (
            (Target("x", f"fe80::1%{NO_SUCH}"),),
            (22,),
            TargetSpecError,
            f"of target 'x': no interface '{NO_SUCH}' on this machine",
        ),
        (
            (Target("x", "fe80::1"),),
            (22,),
            TargetSpecError,
            "of target 'x': a link-local address needs a zone",
        ),
        (
            (Target("x", "::ffff:127.0.0.1"),),
            (22,),
            TargetSpecError,
            "not in its canonical form '127.0.0.1'",
        ),
        ((Target("x", 5),), (22,), TargetSpecError, "invalid address 5 of target 'x'"),  # type: ignore[arg-type]
        (
            (GOOD,),
            (70000,),
            PortSpecError,
            "invalid port 70000 in the request's ports: use 1 to 65535",
        ),
        ((GOOD,), (0,), PortSpecError, "invalid port 0 in the request's ports"),
        (
            (GOOD,),
            ("22",),
            PortSpecError,
            "invalid port '22' (a str, not an int) in the request's ports",
        ),
        (
            (GOOD,),
            (True,),
            PortSpecError,
            "invalid port True (a bool, not an int) in the request's ports",
        ),
        ((GOOD,), (22, 22), PortSpecError, "port 22 is given twice in the request's ports"),
        ((GOOD,), [22], PortSpecError, "invalid ports [22] in the request's ports"),
        (
            (Target("x", "127.0.0.1", (22, 70000)),),
            (22,),
            PortSpecError,
            "invalid port 70000 in the ports of target 'x'",
        ),
        ([GOOD], (22,), TargetSpecError, "invalid targets [Target("),
        (("127.0.0.1",), (22,), TargetSpecError, "invalid target '127.0.0.1': give a Target"),
    ],
)
def test_a_hand_built_request_is_refused_by_the_parent(
    targets: tuple[Target, ...], ports: tuple[int, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        ScanRequest(targets, ports)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_request_changed_by_replace_is_checked_again() -> None:
    request = build_request(["127.0.0.1"], "22")
    with pytest.raises(PortSpecError, match="invalid port 70000"):
        dataclasses.replace(request, ports=(70000,))
    with pytest.raises(TargetSpecError, match="invalid address 'not-an-ip'"):
        dataclasses.replace(request, targets=(Target("x", "not-an-ip"),))


def test_what_build_request_makes_passes_the_check() -> None:
    request = build_request(
        ["127.0.0.1-3", "::1%lo", f"fe80::1%{LO_INDEX}", "::ffff:127.0.0.9"], "22,80"
    )
    assert [t.address for t in request.targets] == [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
        "::1",
        f"fe80::1%{LO_NAME}",
        "127.0.0.9",
    ]
    assert all(address_problem(t.address or "") is None for t in request.targets)
    assert ScanRequest(request.targets, request.ports) == dataclasses.replace(request)


def test_unresolved_targets_carry_no_address_and_pass() -> None:
    target = Target("nowhere.test", None, error="Name or service not known")
    assert ScanRequest((target,), (22,)).probe_count == 0


def _resolver(name: str, family: int) -> list[str]:
    return {"ll.test": ["fe80::9"], "v.test": ["127.0.0.3", "fe80::9"]}[name]


def test_a_name_with_only_zoneless_link_local_addresses_says_so() -> None:
    (target,) = parse_targets(["ll.test"], family="ipv6", resolver=_resolver)
    assert (target.address, target.error) == (
        None,
        "only link-local IPv6 addresses without a zone; give the address with its zone, "
        "e.g. 'fe80::1%eth0'",
    )


def test_an_excluded_name_leaves_out_its_zoneless_link_local_address_on_every_link() -> None:
    targets = parse_targets(
        [f"fe80::9%{LO_NAME}", "127.0.0.3", "127.0.0.4"],
        exclude=["v.test"],
        family="both",
        resolver=_resolver,
    )
    assert [t.address for t in targets] == ["127.0.0.4"]


class _TaggedInt(int):
    """As Ansible gives a templated number: an int subclass, which a worker may not unpickle."""


def test_ports_given_as_int_subclasses_become_plain_ints() -> None:
    request = build_request(
        ["127.0.0.1"], [_TaggedInt(22)], policy={"expect_open": [_TaggedInt(80)]}
    )
    assert [type(p) for p in request.ports] == [int]
    assert {type(p) for t in request.targets for p in t.ports} == {int}
    with pytest.raises(PortSpecError, match=r"invalid port 22 \(a _TaggedInt, not an int\)"):
        ScanRequest((GOOD,), (_TaggedInt(22),))


@pytest.mark.parametrize("request_", [None, ["127.0.0.1"], "127.0.0.1"])
def test_scan_refuses_what_is_not_a_request(request_: object) -> None:
    from nornir_portscan import InputError, scan

    with pytest.raises(InputError, match=r"give a ScanRequest, e\.g\. scan"):
        scan(request_)  # type: ignore[arg-type]
