"""What a UDP probe carries, per destination port. Pure data: no sockets.

A UDP service answers only a request it understands; an empty datagram draws a reply from
almost none. So a probe of a well-known port carries a minimal, harmless request of that
port's protocol, written here from the protocol's specification (nmap's ``nmap-payloads`` was a
reference for which ports are worth one; its file is not copied). Every other port gets an
empty datagram: a closed port still answers it with ICMP port-unreachable, and silence stays
``open|filtered``.

=====  ===========  ==================================================  ==================
port   service      payload                                             format from
=====  ===========  ==================================================  ==================
53     DNS          a query, recursion not desired, for the A record    RFC 1035 4.1
                    of ``probe.nornir-portscan.test`` (``.test`` is
                    reserved for testing, RFC 6761: nothing is looked
                    up, these are only bytes)
69     TFTP         a read request (RRQ, octet) of a file that does     RFC 1350 5
                    not exist; the server's ERROR comes from another
                    port (a new transfer id), so this probe's socket is
                    not connected and takes any port of the target
111    ONC RPC      a NULL call to portmapper (100000) version 2,       RFC 5531 8, 9;
                    AUTH_NONE                                           RFC 1833
123    NTP          a client request: version 4, mode 3 (client),       RFC 5905 7.3
                    48 bytes, a fixed transmit timestamp
137    NetBIOS-NS   a node status request (NBSTAT) for the name ``*``   RFC 1002 4.2.17
161    SNMP         a v2c GetRequest of sysDescr.0 (1.3.6.1.2.1.1.1.0)  RFC 3416, RFC 1901,
                    with community ``public``                           RFC 3418
500    IKE          an ISAKMP Main Mode message with one SA proposal    RFC 2408 3, RFC 2409
                    (AES-128-CBC, SHA-1, pre-shared key, MODP group 2,  Appendix A, RFC 3602
                    lifetime 28800 s); a responder answers a proposal
                    or a NOTIFY (NO-PROPOSAL-CHOSEN): either is open
514    syslog       nothing useful: syslog is one-way (RFC 5424,        --
                    RFC 5426), no request draws a reply; an empty
                    datagram, so a live server reads ``open|filtered``
1900   SSDP         an M-SEARCH for ``ssdp:all``                        UPnP Device
                                                                        Architecture 1.1,
                                                                        1.3.2
4500   IKE NAT-T    the port 500 message behind the 4-byte non-ESP      RFC 3948 2.2
                    marker
5353   mDNS         a legacy unicast query (source port not 5353) for   RFC 6762 6.7,
                    the PTR records of ``_services._dns-sd._udp.local`` RFC 6763 9
11211  memcached    a ``version`` command behind the UDP frame header   memcached
                                                                        protocol.txt, "UDP
                                                                        protocol"
=====  ===========  ==================================================  ==================
"""

from __future__ import annotations

import struct

__all__ = ["PAYLOADS", "payload_for"]

_QUERY_ID = 0x6E70  # "np": any fixed id; a reply echoes it


def _dns_name(name: str) -> bytes:
    """A domain name as DNS labels (RFC 1035 3.1)."""
    out = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split("."))
    return out + b"\x00"


def _dns_query(query_id: int, name: str, qtype: int, *, qclass: int = 1) -> bytes:
    """A standard query with one question and no flags set (RD=0: no recursion asked)."""
    header = struct.pack("!HHHHHH", query_id, 0x0000, 1, 0, 0, 0)
    return header + _dns_name(name) + struct.pack("!HH", qtype, qclass)


def _ber(tag: int, content: bytes) -> bytes:
    """One BER TLV (X.690 8.1), definite length."""
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _ber_int(value: int) -> bytes:
    return _ber(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _ber_oid(oid: str) -> bytes:
    arcs = [int(arc) for arc in oid.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(reversed(chunk))
    return _ber(0x06, bytes(body))


def _snmp_v2c_get(community: bytes, oid: str, request_id: int) -> bytes:
    """Message ::= SEQUENCE {version 1 (v2c), community, GetRequest-PDU (0xA0)}."""
    varbind = _ber(0x30, _ber_oid(oid) + b"\x05\x00")  # value NULL
    pdu = _ber(
        0xA0, _ber_int(request_id) + _ber_int(0) + _ber_int(0) + _ber(0x30, varbind)
    )  # request-id, error-status, error-index, variable-bindings
    return _ber(0x30, _ber_int(1) + _ber(0x04, community) + pdu)


def _netbios_name(name: bytes) -> bytes:
    """First-level encoding (RFC 1001 14.1): 16 bytes, each as two letters 'A'+nibble."""
    padded = name.ljust(16, b"\x00")
    encoded = bytes(c for byte in padded for c in (0x41 + (byte >> 4), 0x41 + (byte & 0x0F)))
    return bytes([32]) + encoded + b"\x00"


def _nbstat() -> bytes:
    header = struct.pack("!HHHHHH", _QUERY_ID, 0x0000, 1, 0, 0, 0)
    return header + _netbios_name(b"*") + struct.pack("!HH", 0x0021, 0x0001)  # NBSTAT, IN


def _ntp_client() -> bytes:
    first = (0 << 6) | (4 << 3) | 3  # LI 0, VN 4, mode 3 (client)
    transmit = struct.pack("!II", 0xE9000000, 0x6E700000)  # fixed, non-zero: echoed as origin
    return bytes([first]) + bytes(39) + transmit


def _isakmp_main_mode() -> bytes:
    """ISAKMP header + SA payload (DOI IPsec, identity only) + one proposal + one transform."""
    attributes = b"".join(
        struct.pack("!HH", 0x8000 | kind, value)  # TV attributes (RFC 2408 3.3)
        for kind, value in (
            (1, 7),  # encryption: AES-CBC (RFC 3602)
            (14, 128),  # key length
            (2, 2),  # hash: SHA
            (3, 1),  # authentication: pre-shared key
            (4, 2),  # group: MODP 1024 (group 2)
            (11, 1),  # life type: seconds
            (12, 28800),  # life duration
        )
    )
    transform = struct.pack("!BBHBBH", 0, 0, 8 + len(attributes), 1, 1, 0) + attributes
    proposal = struct.pack("!BBHBBBB", 0, 0, 8 + len(transform), 1, 1, 0, 1) + transform
    sa = struct.pack("!BBHII", 0, 0, 12 + len(proposal), 1, 1) + proposal  # DOI 1, SIT 1
    cookie = b"nornirps"  # initiator cookie: any 8 non-zero bytes
    length = 28 + len(sa)
    header = cookie + bytes(8) + struct.pack("!BBBBII", 1, 0x10, 2, 0, 0, length)
    return header + sa


def _rpc_null_call() -> bytes:
    """xid, CALL, rpcvers 2, portmapper 100000 v2, NULLPROC, AUTH_NONE cred and verifier."""
    return struct.pack("!IIIIIIIIII", 0x6E700001, 0, 2, 100000, 2, 0, 0, 0, 0, 0)


_IKE = _isakmp_main_mode()

PAYLOADS: dict[int, bytes] = {
    53: _dns_query(_QUERY_ID, "probe.nornir-portscan.test", 1),
    69: b"\x00\x01nornir-portscan-missing-file\x00octet\x00",
    111: _rpc_null_call(),
    123: _ntp_client(),
    137: _nbstat(),
    161: _snmp_v2c_get(b"public", "1.3.6.1.2.1.1.1.0", 0x6E70),
    500: _IKE,
    514: b"",
    1900: (
        b"M-SEARCH * HTTP/1.1\r\n"
        b"HOST: 239.255.255.250:1900\r\n"
        b'MAN: "ssdp:discover"\r\n'
        b"MX: 1\r\n"
        b"ST: ssdp:all\r\n"
        b"\r\n"
    ),
    4500: b"\x00\x00\x00\x00" + _IKE,
    5353: _dns_query(_QUERY_ID, "_services._dns-sd._udp.local", 12),
    11211: struct.pack("!HHHH", 0x6E70, 0, 1, 0) + b"version\r\n",
}
"""The payload of each port that gets one (see the module docstring)."""


def payload_for(port: int) -> bytes:
    """The datagram a probe of ``port`` sends: its protocol's request, else empty.

    >>> payload_for(123)[0] & 0x07  # NTP mode 3: client
    3
    >>> payload_for(40000)
    b''
    """
    return PAYLOADS.get(port, b"")
