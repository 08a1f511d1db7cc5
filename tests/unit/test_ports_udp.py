"""Unit tests for UDP in port specs: T:/U: qualifiers, protocol= and U:topN (nmap's -p)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from nornir_portscan.errors import OptionError, PortSpecError
from nornir_portscan.ports import (
    MAX_PORT,
    UDP,
    format_ports,
    parse_ports,
    port_label,
    top_ports,
    udp_key,
)

DATA_FILE = Path(__file__).parents[2] / "nornir_portscan" / "data" / "top_udp_ports.txt"
U = udp_key


def _has_udp_service(name: str) -> bool:
    try:
        socket.getservbyname(name, "udp")
    except OSError:
        return False
    return True


needs_services = pytest.mark.skipif(
    not (_has_udp_service("domain") and _has_udp_service("snmp")),
    reason="no services database with domain/udp and snmp/udp",
)


@pytest.mark.parametrize(
    ("spec", "protocol", "expected"),
    [
        ("U:53", "tcp", (U(53),)),
        ("U:53,161,T:22,443", "tcp", (22, 443, U(53), U(161))),
        ("22,U:53,161", "tcp", (22, U(53), U(161))),
        ("u: 53 ,T:22", "tcp", (22, U(53))),
        ("U:160-162", "tcp", (U(160), U(161), U(162))),
        ("U:65534-", "tcp", (U(65534), U(65535))),
        (["U:53", 161, "T:22", 23], "tcp", (22, 23, U(53), U(161))),
        (["U:53,161", "T:22"], "tcp", (22, U(53), U(161))),
        ("53,161", "udp", (U(53), U(161))),
        ("53,T:22", "udp", (22, U(53))),
        (53, "udp", (U(53),)),
        ([53], "both", (53, U(53))),
        ("53-54", "both", (53, 54, U(53), U(54))),
        ("22,U:53", "both", (22, U(22), U(53))),
        ("T:22,80", "udp", (22, 80)),
        ("22", "tcp", (22,)),
    ],
)
def test_qualifiers_and_protocol(
    spec: str | list[int | str], protocol: str, expected: tuple[int, ...]
) -> None:
    assert parse_ports(spec, protocol=protocol) == expected


def test_every_udp_port() -> None:
    assert parse_ports("U:-") == tuple(range(UDP + 1, UDP + MAX_PORT + 1))
    assert len(parse_ports("-", protocol="both")) == 2 * MAX_PORT


def test_udp_top_sets_are_nmaps() -> None:
    # nmap -sU --top-ports 20 (Nmap 7.93) lists these
    expected = "U:53,67-69,123,135,137-139,161-162,445,500,514,520,631,1434,1900,4500,49152"
    assert format_ports(parse_ports("U:top20")) == expected
    assert parse_ports("top20", protocol="udp") == parse_ports("U:top20")
    assert parse_ports("top3", protocol="both") == (*sorted(top_ports(3)), U(137), U(161), U(631))
    assert top_ports(3, protocol="udp") == (631, 161, 137)
    assert len(parse_ports("U:top1000")) == 1000


def test_udp_data_file_has_a_header_and_1000_ports() -> None:
    lines = DATA_FILE.read_text(encoding="utf-8").splitlines()
    header = [line for line in lines if line.startswith("#")]
    ports = [int(line) for line in lines if line and not line.startswith("#")]
    assert any("nmap-services" in line and "7.93" in line for line in header)
    assert len(ports) == len(set(ports)) == 1000
    assert tuple(ports) == top_ports(1000, protocol="udp")


@needs_services
def test_service_names_under_u_are_udp_services() -> None:
    assert parse_ports("U:domain,snmp") == (U(53), U(161))
    assert parse_ports("snmp", protocol="udp") == (U(161),)
    assert parse_ports("domain", protocol="both") == (53, U(53))


@needs_services
def test_a_service_of_one_protocol_under_both(monkeypatch: pytest.MonkeyPatch) -> None:
    def getservbyname(name: str, protocol: str) -> int:
        if (name, protocol) == ("onlytcp", "tcp"):
            return 4000
        raise OSError("service/proto not found")

    monkeypatch.setattr(socket, "getservbyname", getservbyname)
    assert parse_ports("onlytcp", protocol="both") == (4000,)
    with pytest.raises(PortSpecError) as info:
        parse_ports("U:onlytcp")
    assert str(info.value) == (
        "unknown UDP service name 'U:onlytcp' in 'U:onlytcp': not a udp service in the services "
        "database, e.g. 'U:domain' or 'U:53'"
    )


def test_exclude_takes_the_same_syntax() -> None:
    assert parse_ports("U:53,161,T:53", exclude="U:161") == (53, U(53))
    assert parse_ports("53,161", exclude="53", protocol="udp") == (U(161),)
    assert parse_ports("53", exclude="T:53", protocol="both") == (U(53),)
    assert parse_ports("U:top20", exclude="U:top10") == tuple(
        sorted(set(parse_ports("U:top20")) - set(parse_ports("U:top10")))
    )


def test_format_ports_reads_back() -> None:
    keys = parse_ports("U:53,161-162,T:22,80-82")
    assert parse_ports(format_ports(keys)) == keys
    assert [port_label(k) for k in keys[:1] + keys[-1:]] == ["22/tcp", "162/udp"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("U:", "no port after 'U:' in 'U:': a qualifier goes before a port, e.g. 'U:53,161'"),
        ("22,T:", "no port after 'T:' in '22,T:': a qualifier goes before a port, e.g. 'T:22,443'"),
        (
            "X:22",
            "unknown protocol qualifier 'X:' in 'X:22': use T: (TCP) or U: (UDP), e.g. 'T:22,U:53'",
        ),
        (
            "22,S:80",
            "unknown protocol qualifier 'S:' in '22,S:80': use T: (TCP) or U: (UDP), "
            "e.g. 'T:22,U:53'",
        ),
        (
            "U:top5000",
            "invalid port set 'U:top5000' in 'U:top5000': the shipped UDP list ranks 1000 ports, "
            "use U:top1 to U:top1000, e.g. 'U:top100' or 'U:top1000'",
        ),
        (
            "U:99999",
            "invalid port 'U:99999' in 'U:99999': ports are 1-65535, e.g. 'U:53,161'",
        ),
        (
            "U:90-80",
            "invalid port range 'U:90-80' in 'U:90-80': start must be <= end, e.g. 'U:80-90'",
        ),
        (
            "U:0-100",
            "invalid port range 'U:0-100' in 'U:0-100': ports are 1-65535, e.g. 'U:1-100'",
        ),
        ("U:53,,161", "empty token in 'U:53,,161': remove the extra comma, e.g. 'U:53,161'"),
    ],
)
def test_bad_tokens(spec: str, message: str) -> None:
    with pytest.raises(PortSpecError) as info:
        parse_ports(spec)
    assert str(info.value) == message


def test_bad_exclusion_token_names_the_exclusion() -> None:
    with pytest.raises(PortSpecError) as info:
        parse_ports("U:53", exclude="U:")
    assert str(info.value) == (
        "no port after 'U:' in exclude 'U:': a qualifier goes before a port, e.g. 'U:53,161'"
    )


@pytest.mark.parametrize("protocol", ["sctp", "", None, "UDP"])
def test_bad_protocol(protocol: object) -> None:
    with pytest.raises(OptionError) as info:
        parse_ports("53", protocol=protocol)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"invalid protocol {protocol!r}: use tcp, udp or both (what a port without T: or U: is), "
        "e.g. protocol='udp'"
    )
