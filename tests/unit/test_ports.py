"""Unit tests for nornir_portscan.ports: port specs to sorted port tuples."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from nornir_portscan.errors import InputError, PortSpecError
from nornir_portscan.ports import MAX_PORT, parse_ports, top_ports

DATA_FILE = Path(__file__).parents[2] / "nornir_portscan" / "data" / "top_ports.txt"


def _has_service(name: str) -> bool:
    try:
        socket.getservbyname(name, "tcp")
    except OSError:
        return False
    return True


needs_services = pytest.mark.skipif(
    not (_has_service("ssh") and _has_service("https")),
    reason="no services database with ssh and https",
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("22", (22,)),
        ("22,80,443", (22, 80, 443)),
        ("443,80,22", (22, 80, 443)),
        (" 22 , 80 ", (22, 80)),
        ("80-83", (80, 81, 82, 83)),
        ("80 - 82", (80, 81, 82)),
        ("22,80-82,81,22", (22, 80, 81, 82)),
        ("1", (1,)),
        ("65535", (65535,)),
        ("0022", (22,)),
        ("-3", (1, 2, 3)),
        ("65533-", (65533, 65534, 65535)),
        ("100-100", (100,)),
        ("22\n,80", (22, 80)),
        ([22, "80-82", "443"], (22, 80, 81, 82, 443)),
        ([443, 22, 22], (22, 443)),
        (["22,80", 443], (22, 80, 443)),
        ((p for p in (3, 1, 2)), (1, 2, 3)),
    ],
)
def test_valid_specs(spec: str | list[int | str], expected: tuple[int, ...]) -> None:
    assert parse_ports(spec) == expected


def test_dash_alone_is_every_port() -> None:
    assert parse_ports("-") == tuple(range(1, MAX_PORT + 1))


def test_open_ranges() -> None:
    assert parse_ports("-1024") == tuple(range(1, 1025))
    assert parse_ports("60000-") == tuple(range(60000, 65536))


@needs_services
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ssh", (22,)),
        ("ssh,https", (22, 443)),
        ("SSH", (22,)),
        ("https, 22 ,ssh", (22, 443)),
        (["ssh", 80], (22, 80)),
    ],
)
def test_service_names(spec: str | list[int | str], expected: tuple[int, ...]) -> None:
    assert parse_ports(spec) == expected


def test_service_names_come_from_getservbyname(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def fake(name: str, proto: str = "tcp") -> int:
        calls.append((name, proto))
        if name == "fake-svc":
            return 4242
        raise OSError("service/proto not found")

    monkeypatch.setattr(socket, "getservbyname", fake)
    assert parse_ports("fake-svc,22") == (22, 4242)
    assert calls == [("fake-svc", "tcp")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "22,90-80",
            "invalid port range '90-80' in '22,90-80': start must be <= end, e.g. '80-90'",
        ),
        (
            "22,70000",
            "invalid port '70000' in '22,70000': ports are 1-65535, e.g. '22,80,443'",
        ),
        ("0", "invalid port '0' in '0': ports are 1-65535, e.g. '22,80,443'"),
        (
            "99999999999999999999",
            "invalid port '99999999999999999999' in '99999999999999999999': "
            "ports are 1-65535, e.g. '22,80,443'",
        ),
        (
            "0-100",
            "invalid port range '0-100' in '0-100': ports are 1-65535, e.g. '1-100'",
        ),
        (
            "60000-70000",
            "invalid port range '60000-70000' in '60000-70000': ports are 1-65535, "
            "e.g. '60000-65535'",
        ),
        (
            "70000-",
            "invalid port range '70000-' in '70000-': ports are 1-65535, e.g. '1-1024'",
        ),
        ("", "empty port list '': give ports, e.g. '22,80,443' or '1-1024'"),
        ("  ", "empty port list '  ': give ports, e.g. '22,80,443' or '1-1024'"),
        (",", "empty port list ',': give ports, e.g. '22,80,443' or '1-1024'"),
        ("22,,80", "empty token in '22,,80': remove the extra comma, e.g. '22,80'"),
        ("22,80,", "empty token in '22,80,': remove the extra comma, e.g. '22,80'"),
        (
            "8o",
            "invalid port '8o' in '8o': use a port, a range, a service name or a top-ports "
            "set, e.g. '22,8000-8100,ssh,top100'",
        ),
        (
            "22,--",
            "invalid port '--' in '22,--': use a port, a range, a service name or a top-ports "
            "set, e.g. '22,8000-8100,ssh,top100'",
        ),
        (
            "22 80",
            "invalid port '22 80' in '22 80': use a port, a range, a service name or a "
            "top-ports set, e.g. '22,8000-8100,ssh,top100'",
        ),
        (
            "top0",
            "invalid port set 'top0' in 'top0': the shipped list ranks 1000 ports, "
            "use top1 to top1000, e.g. 'top100' or 'top1000'",
        ),
        (
            "top1001",
            "invalid port set 'top1001' in 'top1001': the shipped list ranks 1000 ports, "
            "use top1 to top1000, e.g. 'top100' or 'top1000'",
        ),
        ([], "empty port list '': give ports, e.g. '22,80,443' or '1-1024'"),
        ([0, 22], "invalid port '0' in '0,22': ports are 1-65535, e.g. 22"),
        ([22, 65536], "invalid port '65536' in '22,65536': ports are 1-65535, e.g. 22"),
        ([-5], "invalid port '-5' in '-5': ports are 1-65535, e.g. 22"),
        (
            [True, 22],
            "invalid port True in 'True,22': a boolean is not a port, e.g. 22 or '22'",
        ),
        (
            [22.5],
            "invalid port 22.5 in '22.5': give port numbers or strings, e.g. [22, '80-90', 'ssh']",
        ),
        (
            [22, None],
            "invalid port None in '22,None': give port numbers or strings, "
            "e.g. [22, '80-90', 'ssh']",
        ),
        (
            b"22",
            "invalid port list b'22': give a string or a list, e.g. '22,80,443' or [22, 80]",
        ),
    ],
)
def test_invalid_specs(spec: object, message: str) -> None:
    with pytest.raises(PortSpecError) as info:
        parse_ports(spec)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_unknown_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(name: str, proto: str = "tcp") -> int:
        raise OSError("service/proto not found")

    monkeypatch.setattr(socket, "getservbyname", not_found)
    with pytest.raises(
        PortSpecError,
        match=re.escape(
            "unknown service name 'sshh' in 'sshh,80': not in the services database, "
            "e.g. 'ssh' or '22'"
        ),
    ):
        parse_ports("sshh,80")


@pytest.mark.parametrize(
    ("spec", "exclude", "expected"),
    [
        ("20-25", "22", (20, 21, 23, 24, 25)),
        ("20-25", "21-23,25", (20, 24)),
        ("20-25", [22, "24-30"], (20, 21, 23)),
        ("22,80", "443", (22, 80)),
        ("22,80", None, (22, 80)),
        ("22,80", "", (22, 80)),
        ("22,80", " ", (22, 80)),
        ("22,80", [], (22, 80)),
        ("-", "2-", (1,)),
    ],
)
def test_exclude(
    spec: str, exclude: str | list[int | str] | None, expected: tuple[int, ...]
) -> None:
    assert parse_ports(spec, exclude=exclude) == expected


@pytest.mark.parametrize(
    ("spec", "exclude", "message"),
    [
        (
            "22,80",
            "1-100",
            "no ports left after excluding '1-100' from '22,80': exclude only some of the "
            "ports, e.g. '1-1024' excluding '22'",
        ),
        (
            [22, 80],
            [80, 22],
            "no ports left after excluding '80,22' from '22,80': exclude only some of the "
            "ports, e.g. '1-1024' excluding '22'",
        ),
        (
            "22,80",
            "0,22",
            "invalid port '0' in exclude '0,22': ports are 1-65535, e.g. '22,80,443'",
        ),
        (
            "22,80",
            "30-20",
            "invalid port range '30-20' in exclude '30-20': start must be <= end, e.g. '20-30'",
        ),
    ],
)
def test_exclude_errors(
    spec: str | list[int | str], exclude: str | list[int | str], message: str
) -> None:
    with pytest.raises(PortSpecError) as info:
        parse_ports(spec, exclude=exclude)
    assert str(info.value) == message


def test_a_lone_int_is_one_port() -> None:
    # YAML gives an int for ``ports: 22``.
    assert parse_ports(22) == (22,)  # type: ignore[arg-type]


def test_port_spec_error_is_a_value_error() -> None:
    assert issubclass(PortSpecError, InputError)
    assert issubclass(PortSpecError, ValueError)
    with pytest.raises(ValueError, match="empty port list"):
        parse_ports("")


def test_messages_are_one_line() -> None:
    with pytest.raises(PortSpecError) as info:
        parse_ports("22\n80")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("invalid port '22\\n80' in '22\\n80': ")


@pytest.mark.parametrize(("name", "count"), [("top100", 100), ("top1000", 1000)])
def test_named_sets(name: str, count: int) -> None:
    ports = parse_ports(name)
    assert len(ports) == count
    assert len(set(ports)) == count
    assert ports == tuple(sorted(ports))
    assert all(1 <= p <= MAX_PORT for p in ports)
    assert ports == tuple(sorted(top_ports(count)))


def test_top100_has_the_usual_suspects() -> None:
    assert {22, 80, 443} <= set(parse_ports("top100"))


def test_named_sets_combine_with_other_tokens() -> None:
    assert parse_ports("TOP10,1") == (1, 21, 22, 23, 25, 80, 110, 139, 443, 445, 3389)
    assert parse_ports("top10", exclude="top5") == tuple(
        sorted(set(top_ports(10)) - set(top_ports(5)))
    )


def test_top_ports_is_in_frequency_order() -> None:
    assert top_ports(5) == (80, 23, 443, 21, 22)
    assert top_ports(1000)[:5] == top_ports(5)
    assert len(top_ports(1000)) == 1000
    assert len(set(top_ports(1000))) == 1000


@pytest.mark.parametrize("n", [0, -1, 1001, True, 1.5])
def test_top_ports_rejects_bad_counts(n: object) -> None:
    with pytest.raises(
        PortSpecError,
        match=re.escape(
            f"invalid top ports count {n!r}: use a whole number from 1 to 1000, e.g. top_ports(100)"
        ),
    ):
        top_ports(n)  # type: ignore[arg-type]


def test_data_file_has_a_header_and_1000_ports() -> None:
    lines = DATA_FILE.read_text(encoding="utf-8").splitlines()
    header = [line for line in lines if line.startswith("#")]
    ports = [int(line) for line in lines if line and not line.startswith("#")]
    assert header
    assert any("nmap-services" in line for line in header)
    assert len(ports) == 1000
    assert tuple(ports) == top_ports(1000)
