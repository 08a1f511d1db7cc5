"""Each UDP payload parses as its protocol, decoded here from the specifications."""

from __future__ import annotations

import struct

import pytest

from nornir_portscan.engine.udp_payloads import PAYLOADS, payload_for


def _dns_name(data: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while data[offset]:
        size = data[offset]
        labels.append(data[offset + 1 : offset + 1 + size].decode("ascii"))
        offset += 1 + size
    return ".".join(labels), offset + 1


def _dns_question(data: bytes) -> tuple[tuple[int, ...], str, int, int]:
    header = struct.unpack_from("!HHHHHH", data)
    name, offset = _dns_name(data, 12)
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    assert offset + 4 == len(data)
    return header, name, qtype, qclass


def _ber(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """(tag, content, next offset) of one TLV."""
    tag, size = data[offset], data[offset + 1]
    offset += 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    return tag, data[offset : offset + size], offset + size


def _ber_all(content: bytes) -> list[tuple[int, bytes]]:
    items, offset = [], 0
    while offset < len(content):
        tag, value, offset = _ber(content, offset)
        items.append((tag, value))
    return items


def _oid(content: bytes) -> str:
    arcs = [content[0] // 40, content[0] % 40]
    value = 0
    for byte in content[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(map(str, arcs))


def test_dns_query_asks_for_a_test_only_name_without_recursion() -> None:
    (query_id, flags, qd, an, ns, ar), name, qtype, qclass = _dns_question(PAYLOADS[53])
    assert (flags, qd, an, ns, ar) == (0, 1, 0, 0, 0)  # a query, RD=0
    assert query_id != 0
    assert name == "probe.nornir-portscan.test"  # RFC 6761 .test
    assert (qtype, qclass) == (1, 1)  # A, IN


def test_mdns_query_is_a_legacy_unicast_service_enumeration() -> None:
    (query_id, flags, qd, *_), name, qtype, qclass = _dns_question(PAYLOADS[5353])
    assert query_id != 0
    assert flags == 0
    assert qd == 1
    assert (name, qtype, qclass) == ("_services._dns-sd._udp.local", 12, 1)


def test_ntp_is_a_version_4_client_request() -> None:
    data = PAYLOADS[123]
    assert len(data) == 48
    assert (data[0] >> 6, (data[0] >> 3) & 7, data[0] & 7) == (0, 4, 3)
    assert data[40:48] != bytes(8)  # a transmit timestamp, echoed as the reply's origin


def test_snmp_is_a_v2c_get_of_sysdescr_with_community_public() -> None:
    tag, message, end = _ber(PAYLOADS[161])
    assert (tag, end) == (0x30, len(PAYLOADS[161]))
    (vtag, version), (ctag, community), (ptag, pdu) = _ber_all(message)
    assert (vtag, version, ctag, community, ptag) == (0x02, b"\x01", 0x04, b"public", 0xA0)
    (_, request_id), (_, status), (_, index), (btag, bindings) = _ber_all(pdu)
    assert request_id != b"\x00"
    assert status == index == b"\x00"
    assert btag == 0x30
    ((_, binding),) = _ber_all(bindings)
    (otag, oid), (ntag, null) = _ber_all(binding)
    assert (otag, _oid(oid), ntag, null) == (0x06, "1.3.6.1.2.1.1.1.0", 0x05, b"")


def test_netbios_is_a_node_status_request_for_star() -> None:
    data = PAYLOADS[137]
    _, flags, qd, *_ = struct.unpack_from("!HHHHHH", data)
    assert (flags, qd) == (0, 1)
    assert data[12] == 32
    encoded = data[13:45]
    decoded = bytes(((encoded[i] - 0x41) << 4) | (encoded[i + 1] - 0x41) for i in range(0, 32, 2))
    assert decoded == b"*" + bytes(15)
    assert data[45] == 0
    assert struct.unpack_from("!HH", data, 46) == (0x21, 1)  # NBSTAT, IN
    assert len(data) == 50


def _isakmp(data: bytes) -> None:
    header = struct.unpack_from("!8s8sBBBBII", data)
    icookie, rcookie, next_payload, version, exchange, flags, msgid, length = header
    assert icookie != bytes(8)
    assert rcookie == bytes(8)
    assert (next_payload, version, exchange, flags, msgid, length) == (1, 0x10, 2, 0, 0, len(data))
    nxt, _, sa_len, doi, situation = struct.unpack_from("!BBHII", data, 28)
    assert (nxt, 28 + sa_len, doi, situation) == (0, len(data), 1, 1)
    nxt, _, p_len, number, protocol, spi, transforms = struct.unpack_from("!BBHBBBB", data, 40)
    assert (nxt, 40 + p_len, number, protocol, spi, transforms) == (0, len(data), 1, 1, 0, 1)
    nxt, _, t_len, number, transform_id, _ = struct.unpack_from("!BBHBBH", data, 48)
    assert (nxt, 48 + t_len, number, transform_id) == (0, len(data), 1, 1)
    attributes = dict(struct.unpack_from("!HH", data, offset) for offset in range(56, len(data), 4))
    assert {kind & 0x7FFF: value for kind, value in attributes.items()} == {
        1: 7,
        14: 128,
        2: 2,
        3: 1,
        4: 2,
        11: 1,
        12: 28800,
    }
    assert all(kind & 0x8000 for kind in attributes)  # TV form


def test_ike_is_one_main_mode_proposal() -> None:
    _isakmp(PAYLOADS[500])


def test_ike_nat_traversal_is_the_same_behind_the_non_esp_marker() -> None:
    assert PAYLOADS[4500][:4] == bytes(4)
    _isakmp(PAYLOADS[4500][4:])


def test_tftp_is_a_read_request_in_octet_mode() -> None:
    data = PAYLOADS[69]
    assert data[:2] == b"\x00\x01"
    filename, mode, rest = data[2:].split(b"\x00")
    assert (mode, rest) == (b"octet", b"")
    assert b"missing" in filename


def test_rpc_is_a_null_call_to_portmapper() -> None:
    fields = struct.unpack("!IIIIIIIIII", PAYLOADS[111])
    assert fields[1:] == (0, 2, 100000, 2, 0, 0, 0, 0, 0)


def test_ssdp_is_an_m_search() -> None:
    request, _, body = PAYLOADS[1900].partition(b"\r\n\r\n")
    lines = request.decode("ascii").split("\r\n")
    assert lines[0] == "M-SEARCH * HTTP/1.1"
    assert body == b""
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers == {
        "HOST": "239.255.255.250:1900",
        "MAN": '"ssdp:discover"',
        "MX": "1",
        "ST": "ssdp:all",
    }


def test_memcached_is_a_version_command_in_one_frame() -> None:
    data = PAYLOADS[11211]
    assert struct.unpack_from("!HHHH", data)[1:] == (0, 1, 0)
    assert data[8:] == b"version\r\n"


@pytest.mark.parametrize("port", [514, 7, 40000, 0, 65535])
def test_other_ports_get_an_empty_datagram(port: int) -> None:
    assert payload_for(port) == b""
