"""Unit tests for nornir_portscan.targets: target specs to Targets.

Hostnames go through a fake resolver, so no test depends on DNS; the only real lookup is of
``localhost``. No test sends a packet.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest

from nornir_portscan.errors import InputError, OptionError, ScopeError, TargetSpecError
from nornir_portscan.models import AddressFamily, Target
from nornir_portscan.targets import DEFAULT_MAX_HOSTS, parse_targets, resolve_name


class FakeResolver:
    """A resolver from a table; unknown names fail like getaddrinfo."""

    def __init__(self, table: dict[str, list[str]], delay: float = 0.0) -> None:
        self.table = table
        self.delay = delay
        self.calls: list[tuple[str, int]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str, family: int) -> list[str]:
        with self._lock:
            self.calls.append((name, family))
            self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if name not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[name]


DNS = {
    "dual.test": ["::1", "127.0.0.10", "127.0.0.11"],
    "v4.test": ["127.0.0.20", "127.0.0.21"],
    "v6.test": ["::1"],
    "empty.test": [],
    "web.test": ["127.0.0.2"],
}


def pairs(targets: Iterable[Target]) -> list[tuple[str, str | None]]:
    return [(t.name, t.address) for t in targets]


def same(*addresses: str) -> list[tuple[str, str | None]]:
    return [(a, a) for a in addresses]


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["127.0.0.1"], same("127.0.0.1")),
        (["127.0.0.0/30"], same("127.0.0.0", "127.0.0.1", "127.0.0.2", "127.0.0.3")),
        (["127.0.0.5/31"], same("127.0.0.4", "127.0.0.5")),
        (["127.0.0.1/32"], same("127.0.0.1")),
        (["127.0.0.1-3"], same("127.0.0.1", "127.0.0.2", "127.0.0.3")),
        (["127.0.1-3.1"], same("127.0.1.1", "127.0.2.1", "127.0.3.1")),
        (["127.0.0.1,3,5"], same("127.0.0.1", "127.0.0.3", "127.0.0.5")),
        (["127.0.0.5,1,3-4"], same("127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5")),
        (
            ["127.0.0-1.254-"],
            same("127.0.0.254", "127.0.0.255", "127.0.1.254", "127.0.1.255"),
        ),
        (["127.0.0.-1"], same("127.0.0.0", "127.0.0.1")),
        (["127.0.0.1,127.0.0.2"], same("127.0.0.1", "127.0.0.2")),
        (["127.0.0.1 127.0.0.2,"], same("127.0.0.1", "127.0.0.2")),
        ([" 127.0.0.1\t127.0.0.2\n"], same("127.0.0.1", "127.0.0.2")),
        (["127.0.0.2", "127.0.0.1", "127.0.0.2"], same("127.0.0.2", "127.0.0.1")),
        (["127.0.0.1-2", "127.0.0.0/31"], same("127.0.0.1", "127.0.0.2", "127.0.0.0")),
        (["::1"], same("::1")),
        (["[::1]"], same("::1")),
        (["0:0:0:0:0:0:0:1"], same("::1")),
        (["::1/128"], same("::1")),
        (["[::1]/128"], same("::1")),
        (  # a mapped address is its IPv4 address
            ["::ffff:127.0.0.1/126"],
            same("127.0.0.0", "127.0.0.1", "127.0.0.2", "127.0.0.3"),
        ),
        (["127.0.0.1,::1"], same("127.0.0.1", "::1")),
        (["[::1],[::1]", "::1"], same("::1")),
        ("127.0.0.1", same("127.0.0.1")),
    ],
)
def test_valid_literals(specs: list[str], expected: list[tuple[str, str]]) -> None:
    assert pairs(parse_targets(specs)) == expected


def test_star_is_every_octet_value() -> None:
    targets = parse_targets(["127.0.0-1.*"])
    assert len(targets) == 512
    assert targets[0].address == "127.0.0.0"
    assert targets[255].address == "127.0.0.255"
    assert targets[-1].address == "127.0.1.255"


def test_targets_are_plain_models() -> None:
    assert parse_targets(["127.0.0.1"]) == (Target(name="127.0.0.1", address="127.0.0.1"),)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (
            "127.0.0.300",
            "invalid target '127.0.0.300': octet 300 is out of range 0-255, "
            "e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            "127.0.0.1-256",
            "invalid target '127.0.0.1-256': octet 256 is out of range 0-255, "
            "e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            "127.0.0.20-1",
            "invalid target '127.0.0.20-1': octet range 20-1 has start > end, "
            "e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            "127.0.0.01",
            "invalid target '127.0.0.01': octet 01 has a leading zero (octal or decimal?), "
            "e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            "127.0.1",
            "invalid target '127.0.1': an IPv4 address has 4 octets, "
            "e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            "127.0.0.0.1",
            "invalid target '127.0.0.0.1': an IPv4 address has 4 octets, "
            "e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            "127..0.1",
            "invalid target '127..0.1': an octet is empty, e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            "127.0.0.1--2",
            "invalid target '127.0.0.1--2': octet '1--2' is not a number, a range (1-20), "
            "a list (1,3,5) or '*', e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            "127.0.0.1/33",
            "invalid CIDR block '127.0.0.1/33': prefix must be 0-32 for IPv4, e.g. '127.0.0.0/24'",
        ),
        (
            "127.0.0.0/x",
            "invalid CIDR block '127.0.0.0/x': prefix must be 0-32 for IPv4, e.g. '127.0.0.0/24'",
        ),
        (
            "127.0.0.0/",
            "invalid CIDR block '127.0.0.0/': prefix must be 0-32 for IPv4, e.g. '127.0.0.0/24'",
        ),
        (
            "127.0.0.300/24",
            "invalid CIDR block '127.0.0.300/24': '127.0.0.300' is not an IPv4 address, "
            "e.g. '127.0.0.0/24'",
        ),
        (
            "localhost/24",
            "invalid CIDR block 'localhost/24': 'localhost' is not an IPv4 address, "
            "e.g. '127.0.0.0/24'",
        ),
        (
            "::1/129",
            "invalid CIDR block '::1/129': prefix must be 0-128 for IPv6, e.g. '::/120'",
        ),
        (
            "::g",
            "invalid IPv6 address '::g': only hex digits permitted in 'g' in '::g', "
            "e.g. '::1' or '[::1]'",
        ),
        (
            "[::1",
            "invalid target '[::1': close the brackets around an IPv6 address, e.g. '[::1]'",
        ),
        (
            "[::1]x",
            "invalid target '[::1]x': close the brackets around an IPv6 address, e.g. '[::1]'",
        ),
        (
            "[127.0.0.1]",
            "invalid target '[127.0.0.1]': brackets are for IPv6 addresses, "
            "e.g. '[::1]' or '127.0.0.1'",
        ),
        (
            "12345",
            "invalid target '12345': not an address or hostname, "
            "e.g. '127.0.0.1', '127.0.0.0/24', '[::1]' or 'localhost'",
        ),
        (
            "*",
            "invalid target '*': not an address or hostname, "
            "e.g. '127.0.0.1', '127.0.0.0/24', '[::1]' or 'localhost'",
        ),
        (
            "web$.test",
            "invalid target 'web$.test': not an address, range, CIDR block or hostname, "
            "e.g. '127.0.0.1', '127.0.0.0/24', '[::1]' or 'localhost'",
        ),
        (
            "-web.test",
            "invalid target '-web.test': not an address, range, CIDR block or hostname, "
            "e.g. '127.0.0.1', '127.0.0.0/24', '[::1]' or 'localhost'",
        ),
    ],
)
def test_invalid_tokens(token: str, message: str) -> None:
    resolver = FakeResolver(DNS)
    with pytest.raises(TargetSpecError) as info:
        parse_targets(["127.0.0.1", token], resolver=resolver)
    assert str(info.value) == message
    assert resolver.calls == []


def test_label_longer_than_63_is_invalid() -> None:
    name = "a" * 64 + ".test"
    with pytest.raises(TargetSpecError, match=re.escape(f"invalid target {name!r}: not an")):
        parse_targets([name], resolver=FakeResolver(DNS))


@pytest.mark.parametrize("specs", [[], [""], ["  ", ","]])
def test_no_targets(specs: list[str]) -> None:
    with pytest.raises(TargetSpecError) as info:
        parse_targets(specs)
    assert str(info.value) == (
        "no targets given: give an address, range, CIDR block or hostname, "
        "e.g. '127.0.0.1', '127.0.0.0/24', '[::1]' or 'localhost'"
    )


def test_errors_are_value_errors() -> None:
    for error in (TargetSpecError, ScopeError, OptionError):
        assert issubclass(error, InputError)
        assert issubclass(error, ValueError)


# Scope guard


def test_scope_guard_on_a_slash_8_is_fast_and_expands_nothing() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ScopeError) as info:
            parse_targets(["127.0.0.0/8"])
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == (
        "'127.0.0.0/8' expands to 16777216 hosts, more than the limit of 65536; "
        "raise max_hosts or narrow the target, e.g. '127.0.0.0/24'"
    )
    assert elapsed < 0.5
    assert peak < 1_000_000  # 16M Targets would take gigabytes


@pytest.mark.parametrize(
    ("specs", "max_hosts", "message"),
    [
        (
            ["127.*.*.*"],
            DEFAULT_MAX_HOSTS,
            "'127.*.*.*' expands to 16777216 hosts, more than the limit of 65536; "
            "raise max_hosts or narrow the target, e.g. '127.0.0.*'",
        ),
        (
            ["::ffff:127.0.0.0/104"],
            DEFAULT_MAX_HOSTS,
            "'::ffff:127.0.0.0/104' expands to 16777216 hosts, more than the limit of 65536; "
            "raise max_hosts or narrow the target, e.g. '127.0.0.0/24'",
        ),
        (
            ["127.0.0.1", "127.0.0.0/30"],
            3,
            "'127.0.0.0/30' expands to 4 hosts, more than the limit of 3; "
            "raise max_hosts or narrow the target, e.g. '127.0.0.0/31'",
        ),
        (
            ["127.0.0.0/16", "127.1.0.0/31"],
            DEFAULT_MAX_HOSTS,
            "the targets add up to 65538 hosts by '127.1.0.0/31', more than the limit of "
            "65536; raise max_hosts or give fewer targets, e.g. split them across scans",
        ),
        (
            ["127.0.0.1-2", "v4.test"],
            2,
            "the targets add up to 3 hosts by 'v4.test', more than the limit of 2; "
            "raise max_hosts or give fewer targets, e.g. split them across scans",
        ),
    ],
)
def test_scope_guard(specs: list[str], max_hosts: int, message: str) -> None:
    resolver = FakeResolver(DNS)
    with pytest.raises(ScopeError) as info:
        parse_targets(specs, max_hosts=max_hosts, resolver=resolver)
    assert str(info.value) == message
    assert resolver.calls == []  # the guard runs before any name is resolved


def test_scope_guard_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("127.0.0.1\n127.0.0.0/8\n", encoding="utf-8")
    with pytest.raises(ScopeError) as info:
        parse_targets([], files=[path])
    assert str(info.value).startswith(
        f"'127.0.0.0/8' in {str(path)!r} line 2 expands to 16777216 hosts"
    )


def test_scope_guard_allows_exactly_the_limit() -> None:
    assert len(parse_targets(["127.0.0.0/30"], max_hosts=4)) == 4
    assert len(parse_targets(["127.0.0.0/16"])) == DEFAULT_MAX_HOSTS


def test_scope_guard_counts_a_name_once_per_family() -> None:
    resolver = FakeResolver(DNS)
    assert len(parse_targets(["dual.test"], family="both", max_hosts=2, resolver=resolver)) == 2
    with pytest.raises(ScopeError, match=re.escape("'dual.test' expands to 2 hosts")):
        parse_targets(["dual.test"], family="both", max_hosts=1, resolver=resolver)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"family": "ipv5"},
            "invalid family 'ipv5': use 'ipv4', 'ipv6' or 'both', e.g. family='ipv4'",
        ),
        ({"max_hosts": 0}, "invalid max_hosts 0: use a whole number >= 1, e.g. max_hosts=65536"),
        (
            {"max_hosts": True},
            "invalid max_hosts True: use a whole number >= 1, e.g. max_hosts=65536",
        ),
    ],
)
def test_bad_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_targets(["127.0.0.1"], **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


# Hostnames


@pytest.mark.parametrize(
    ("family", "socket_family", "expected"),
    [
        ("ipv4", socket.AF_INET, [("dual.test", "127.0.0.10")]),
        ("ipv6", socket.AF_INET6, [("dual.test", "::1")]),
        ("both", socket.AF_UNSPEC, [("dual.test", "127.0.0.10"), ("dual.test", "::1")]),
    ],
)
def test_family_selection(
    family: AddressFamily, socket_family: int, expected: list[tuple[str, str]]
) -> None:
    resolver = FakeResolver(DNS)
    assert pairs(parse_targets(["dual.test"], family=family, resolver=resolver)) == expected
    assert resolver.calls == [("dual.test", socket_family)]


@pytest.mark.parametrize(
    ("name", "family", "error"),
    [
        ("nowhere.test", "ipv4", "Name or service not known"),
        ("v4.test", "ipv6", "no IPv6 address"),
        ("v6.test", "ipv4", "no IPv4 address"),
        ("empty.test", "both", "no address"),
    ],
)
def test_unresolved_names_are_targets_not_errors(
    name: str, family: AddressFamily, error: str
) -> None:
    targets = parse_targets(["127.0.0.1", name], family=family, resolver=FakeResolver(DNS))
    assert targets == (
        Target(name="127.0.0.1", address="127.0.0.1"),
        Target(name=name, address=None, error=error),
    )


def test_unresolved_names_alone_are_still_targets() -> None:
    targets = parse_targets(["nowhere.test"], resolver=FakeResolver(DNS))
    assert targets == (
        Target(name="nowhere.test", address=None, error="Name or service not known"),
    )


def test_resolver_errors_other_than_gaierror() -> None:
    def broken(name: str, family: int) -> list[str]:
        raise UnicodeError("label too long")

    targets = parse_targets(["web.test"], resolver=broken)
    assert targets == (Target(name="web.test", address=None, error="label too long"),)


def test_literals_are_kept_whatever_the_family() -> None:
    resolver = FakeResolver(DNS)
    assert pairs(parse_targets(["127.0.0.1", "::1"], family="ipv6", resolver=resolver)) == same(
        "127.0.0.1", "::1"
    )
    assert pairs(parse_targets(["::1", "127.0.0.1"], family="ipv4", resolver=resolver)) == same(
        "::1", "127.0.0.1"
    )


def test_each_name_resolves_once() -> None:
    resolver = FakeResolver(DNS)
    targets = parse_targets(
        ["web.test", "127.0.0.1", "web.test", "WEB.test"],
        resolver=resolver,
    )
    assert pairs(targets) == [
        ("web.test", "127.0.0.2"),
        ("127.0.0.1", "127.0.0.1"),
        ("WEB.test", "127.0.0.2"),
    ]
    assert resolver.calls == [("web.test", socket.AF_INET)]


def test_names_and_literals_with_the_same_address_are_both_kept() -> None:
    targets = parse_targets(["web.test", "127.0.0.2"], resolver=FakeResolver(DNS))
    assert pairs(targets) == [("web.test", "127.0.0.2"), ("127.0.0.2", "127.0.0.2")]


def test_names_resolve_in_parallel() -> None:
    names = [f"host{i}.test" for i in range(1000)]
    resolver = FakeResolver({name: ["127.0.0.1"] for name in names}, delay=0.01)
    started = time.perf_counter()
    targets = parse_targets(names, resolver=resolver)
    elapsed = time.perf_counter() - started
    assert [t.name for t in targets] == names  # order is kept
    assert len(resolver.calls) == 1000
    assert len(resolver.threads) > 1
    assert elapsed < 5  # 10 s one by one


def test_default_resolver_on_localhost() -> None:
    addresses = resolve_name("localhost", socket.AF_INET)
    assert addresses
    assert all(address.startswith("127.") for address in addresses)
    (target,) = parse_targets(["localhost"])
    assert target.name == "localhost"
    assert target.address in addresses


# Exclusions


@pytest.mark.parametrize(
    ("specs", "exclude", "expected"),
    [
        (["127.0.0.1-5"], ["127.0.0.3"], same("127.0.0.1", "127.0.0.2", "127.0.0.4", "127.0.0.5")),
        (["127.0.0.1-5"], ["127.0.0.2,4"], same("127.0.0.1", "127.0.0.3", "127.0.0.5")),
        (["127.0.0.1-5"], ["127.0.0.2-5"], same("127.0.0.1")),
        (
            ["127.0.0.0/29"],
            ["127.0.0.0/30"],
            same("127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"),
        ),
        (["127.0.0.1-3"], "127.0.0.2", same("127.0.0.1", "127.0.0.3")),
        (["127.0.0.1-3"], [], same("127.0.0.1", "127.0.0.2", "127.0.0.3")),
        (["127.0.0.1", "::1"], ["::1"], same("127.0.0.1")),
        (["127.0.0.1", "::1"], ["[::1]/128"], same("127.0.0.1")),
        (["127.0.0.1-3"], ["web.test"], same("127.0.0.1", "127.0.0.3")),
        (["127.0.0.20-22"], ["v4.test"], same("127.0.0.22")),  # every address of the name
        (["web.test", "127.0.0.1"], ["127.0.0.2"], same("127.0.0.1")),
        (["127.0.0.1-3", "nowhere.test"], ["127.0.0.0/24"], [("nowhere.test", None)]),
    ],
)
def test_exclusions(
    specs: list[str], exclude: list[str], expected: list[tuple[str, str | None]]
) -> None:
    resolver = FakeResolver(DNS)
    assert pairs(parse_targets(specs, exclude=exclude, resolver=resolver)) == expected


def test_excluded_name_is_resolved_in_the_same_family() -> None:
    resolver = FakeResolver(DNS)
    targets = parse_targets(
        ["127.0.0.10", "::1"], exclude=["dual.test"], family="ipv6", resolver=resolver
    )
    assert pairs(targets) == same("127.0.0.10")
    assert resolver.calls == [("dual.test", socket.AF_INET6)]


def test_excluding_a_slash_8_expands_nothing() -> None:
    started = time.perf_counter()
    assert pairs(parse_targets(["127.0.0.1", "::1"], exclude=["127.0.0.0/8"])) == same("::1")
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("exclude", "message"),
    [
        (
            ["nowhere.test"],
            "cannot resolve excluded host 'nowhere.test': Name or service not known; "
            "fix the name or exclude its address, e.g. '127.0.0.5'",
        ),
        (
            ["127.0.0.300"],
            "invalid target '127.0.0.300' in exclude: octet 300 is out of range 0-255, "
            "e.g. '127.0.0.1' or '127.0.0.1-20'",
        ),
        (
            ["127.0.0.0/24"],
            "no targets left after excluding '127.0.0.0/24': every target is excluded, "
            "exclude fewer addresses, e.g. '127.0.0.1-20' excluding '127.0.0.5'",
        ),
        (
            ["127.0.0.1", "127.0.0.2,3"],
            "no targets left after excluding '127.0.0.1,127.0.0.2,3': every target is "
            "excluded, exclude fewer addresses, e.g. '127.0.0.1-20' excluding '127.0.0.5'",
        ),
    ],
)
def test_exclusion_errors(exclude: list[str], message: str) -> None:
    with pytest.raises(TargetSpecError) as info:
        parse_targets(["127.0.0.1-3"], exclude=exclude, resolver=FakeResolver(DNS))
    assert str(info.value) == message


# Target files


def test_target_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text(
        "# lab hosts\n"
        "127.0.0.1 127.0.0.2,127.0.0.3\n"
        "\n"
        "   web.test   # the web server\n"
        "127.0.1.1,3 ,[::1],\n"
        "127.0.0.1\n",
        encoding="utf-8",
    )
    targets = parse_targets([], files=[path], resolver=FakeResolver(DNS))
    assert pairs(targets) == [
        *same("127.0.0.1", "127.0.0.2", "127.0.0.3"),
        ("web.test", "127.0.0.2"),
        *same("127.0.1.1", "127.0.1.3", "::1"),
    ]


def test_files_come_after_specs_in_order(tmp_path: Path) -> None:
    first = tmp_path / "first.txt"
    second = tmp_path / "second.txt"
    first.write_text("127.0.0.3\n", encoding="utf-8")
    second.write_text("127.0.0.4\n127.0.0.1\n", encoding="utf-8")
    targets = parse_targets(["127.0.0.1", "127.0.0.2"], files=[first, str(second)])
    assert pairs(targets) == same("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


def test_empty_target_file_means_no_targets(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("# nothing yet\n\n", encoding="utf-8")
    with pytest.raises(TargetSpecError, match=re.escape("no targets given: ")):
        parse_targets([], files=[path])


def test_missing_target_file(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    with pytest.raises(TargetSpecError) as info:
        parse_targets([], files=[path])
    assert str(info.value) == f"cannot read target file {str(path)!r}: No such file or directory"


def test_missing_target_file_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        TargetSpecError,
        match=re.escape("cannot read target file 'x.txt': No such file or directory"),
    ):
        parse_targets(["127.0.0.1"], files=["x.txt"])


def test_target_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(TargetSpecError) as info:
        parse_targets([], files=[tmp_path])
    assert str(info.value) == f"cannot read target file {str(tmp_path)!r}: Is a directory"


def test_target_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.txt"
    path.write_bytes(b"127.0.0.1\n\xff\xfe\n")
    with pytest.raises(TargetSpecError) as info:
        parse_targets([], files=[path])
    assert str(info.value) == (
        f"cannot read target file {str(path)!r}: not UTF-8 text (byte 0xff at line 2, "
        "offset 10); save it as UTF-8"
    )


def test_bad_token_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("127.0.0.1\n# ok\n127.0.0.1 127.0.0.300\n", encoding="utf-8")
    with pytest.raises(TargetSpecError) as info:
        parse_targets([], files=[path])
    assert str(info.value) == (
        f"invalid target '127.0.0.300' in {str(path)!r} line 3: octet 300 is out of range "
        "0-255, e.g. '127.0.0.1' or '127.0.0.1-20'"
    )


def test_a_single_path_is_one_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("127.0.0.9\n", encoding="utf-8")
    # A str is an Iterable[str] too: it must not be read as one file per character.
    assert pairs(parse_targets([], files=str(path))) == same("127.0.0.9")
    assert pairs(parse_targets([], files=path)) == same("127.0.0.9")  # type: ignore[arg-type]


def test_messages_are_one_line() -> None:
    with pytest.raises(TargetSpecError) as info:
        parse_targets(["127.0.0.1\n127.0.0.300"])
    assert "\n" not in str(info.value)
