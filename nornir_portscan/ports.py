"""Port specifications: ``"22,80,8000-8100,ssh,top100,U:53,161"`` to a sorted tuple of port keys.

The syntax follows nmap's ``-p``. Tokens are separated by commas; whitespace around a token is
ignored. A token is one of:

- a port: ``22``
- a range: ``8000-8100``; open ranges ``-1024`` (1-1024) and ``60000-`` (60000-65535); ``-``
  alone is every port, 1-65535
- a service name from the system services database: ``ssh``, ``https`` (``domain`` under
  ``U:`` is looked up as a UDP service)
- a named set of the most often open ports: ``top100``, ``top1000`` (any ``topN`` with N from 1
  to 1000 works); ``U:top20`` are the top 20 UDP ports, in nmap's order too

and may start with a protocol qualifier, ``T:`` (TCP) or ``U:`` (UDP), which holds for it and
every token after it until the next qualifier: ``U:53,161,T:22,443`` is UDP 53 and 161, TCP 22
and 443. A token without a qualifier before it is of the ``protocol`` the caller gives:
``"tcp"`` (the default), ``"udp"``, or ``"both"`` (one TCP and one UDP port per token; nmap's
``-sS -sU``).

UDP ports come back as port keys (``udp_key``): the number plus ``UDP``, after every TCP port.

A list (for example from YAML: ``[22, "80-90", "ssh"]``) is accepted too; each item is parsed like
a token (a string item may itself hold commas), and a qualifier holds across items.

    >>> parse_ports("443, 80-82,22,80")
    (22, 80, 81, 82, 443)
    >>> parse_ports([22, "8000-8002"], exclude="8001")
    (22, 8000, 8002)
    >>> parse_ports("U:53,161,T:22")
    (22, 1000053, 1000161)
    >>> parse_ports("53", protocol="both")
    (53, 1000053)
    >>> top_ports(3)
    (80, 23, 443)
    >>> top_ports(3, protocol="udp")
    (631, 161, 137)
"""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Iterable
from importlib import resources

from nornir_portscan.errors import OptionError, PortSpecError

__all__ = [
    "MAX_PORT",
    "PROTOCOLS",
    "UDP",
    "format_ports",
    "label_ports",
    "parse_ports",
    "port_label",
    "port_number",
    "port_protocol",
    "top_ports",
    "udp_key",
]

MAX_PORT = 65535
"""The highest port number; the lowest is 1."""

UDP = 1_000_000
"""What marks a port key as UDP.

Every tuple or set of ports in the models holds *port keys*: a TCP port is its number, a UDP
port is its number plus ``UDP`` (UDP 53 is ``1000053``, easy to read in a debugger and out of
reach of a typo of a TCP port). So a mixed scan sorts TCP first, then UDP (as nmap lists them),
and a TCP-only scan is exactly what it always was.

    >>> udp_key(53), port_number(udp_key(53)), port_protocol(udp_key(53)), port_protocol(53)
    (1000053, 53, 'udp', 'tcp')
"""


def udp_key(port: int) -> int:
    """The port key of UDP port ``port``."""
    return port + UDP


def port_number(key: int) -> int:
    """The port number of a port key."""
    return key % UDP


def port_protocol(key: int) -> str:
    """``"tcp"`` or ``"udp"``: the protocol of a port key."""
    return "udp" if key > UDP else "tcp"


def port_label(key: int) -> str:
    """A port key as people read it: ``22/tcp``, ``53/udp``.

    >>> port_label(22), port_label(udp_key(53))
    ('22/tcp', '53/udp')
    """
    return f"{key % UDP}/{port_protocol(key)}"


PROTOCOLS = ("tcp", "udp", "both")
"""What a port without a qualifier is: ``parse_ports(..., protocol=...)``."""

_RANK_FILES = {"tcp": "data/top_ports.txt", "udp": "data/top_udp_ports.txt"}
_PACKAGE = __name__.rpartition(".")[0]
_OFFSETS = {"tcp": (0,), "udp": (UDP,), "both": (0, UDP)}
_QUALIFIERS = {"T": (0,), "U": (UDP,)}
_EXAMPLES = {"": "22,80,443", "T": "22,443", "U": "53,161"}

_RANGE = re.compile(r"([0-9]*)\s*-\s*([0-9]*)")
_NUMBER = re.compile(r"[0-9]+")
_TOP = re.compile(r"top([0-9]+)", re.IGNORECASE)
_QUALIFIER = re.compile(r"([A-Za-z]):(.*)", re.DOTALL)
# Names in services databases: letters first, then letters, digits and a little punctuation.
_SERVICE = re.compile(r"[A-Za-z][A-Za-z0-9._+/-]*")
# More than five digits cannot be a port; checked before int() so huge inputs stay cheap.
_MAX_DIGITS = 5


def parse_ports(
    spec: str | Iterable[int | str],
    *,
    exclude: str | Iterable[int | str] | None = None,
    protocol: str = "tcp",
) -> tuple[int, ...]:
    """Parse a port specification into sorted, unique port keys.

    Args:
        spec: Comma-separated tokens such as ``"22,80,8000-8100,ssh,top100,U:53"``, or a list
            of port numbers and tokens such as ``[22, "80-90", "ssh"]``.
        exclude: Ports to leave out, in the same syntax. ``None``, ``""`` or an empty list
            exclude nothing.
        protocol: What a port without a ``T:``/``U:`` qualifier is: ``"tcp"``, ``"udp"`` or
            ``"both"``.

    Returns:
        The port keys, sorted ascending (TCP, then UDP), each once.

    Raises:
        PortSpecError: A token is not a valid port, range, service name or port set; the
            spec is empty; or the exclusions leave no port. The message is one line that names
            the bad token and shows a valid form.
        OptionError: ``protocol`` is not one of ``PROTOCOLS``.
    """
    offsets = _offsets(protocol)
    shown, ports = _parse(spec, context="", offsets=offsets)
    if exclude is not None and not (isinstance(exclude, str) and not exclude.strip()):
        shown_exclude, removed = _parse(
            exclude, context="exclude ", offsets=offsets, allow_empty=True
        )
        ports -= removed
        if not ports:
            raise PortSpecError(
                f"no ports left after excluding {shown_exclude!r} from {shown!r}: "
                "exclude only some of the ports, e.g. '1-1024' excluding '22'"
            )
    return tuple(sorted(ports))


def top_ports(n: int, *, protocol: str = "tcp") -> tuple[int, ...]:
    """Return the ``n`` ports most often found open, most frequent first: port numbers of
    ``protocol`` (``"tcp"`` or ``"udp"``).

    The order comes from the open-frequency column of nmap's ``nmap-services``; the first ``n``
    are the same set as ``nmap --top-ports n`` (``nmap -sU --top-ports n``).

    Args:
        n: How many ports, from 1 to 1000.
        protocol: ``"tcp"`` or ``"udp"``.

    Returns:
        The ports in frequency order (not sorted by number).

    Raises:
        PortSpecError: ``n`` is not a whole number from 1 to 1000.
    """
    if protocol not in _RANK_FILES:
        raise OptionError(
            f"invalid protocol {protocol!r}: use 'tcp' or 'udp', e.g. top_ports(20, protocol='udp')"
        )
    ranked = _ranked_ports(protocol)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(ranked):
        raise PortSpecError(
            f"invalid top ports count {n!r}: use a whole number from 1 to {len(ranked)}, "
            "e.g. top_ports(100)"
        )
    return ranked[:n]


@functools.cache
def _ranked_ports(protocol: str = "tcp") -> tuple[int, ...]:
    """The shipped list of ``protocol``, loaded on first use."""
    source = resources.files(_PACKAGE).joinpath(_RANK_FILES[protocol])
    text = source.read_text(encoding="utf-8")
    return tuple(
        int(line) for line in (raw.strip() for raw in text.splitlines()) if line and line[0] != "#"
    )


def _offsets(protocol: object) -> tuple[int, ...]:
    """What a port without a qualifier adds to its number: one offset per protocol."""
    offsets = _OFFSETS.get(protocol) if isinstance(protocol, str) else None
    if offsets is None:
        raise OptionError(
            f"invalid protocol {protocol!r}: use tcp, udp or both (what a port without T: or "
            "U: is), e.g. protocol='udp'"
        )
    return offsets


def _parse(
    spec: object, *, context: str, offsets: tuple[int, ...], allow_empty: bool = False
) -> tuple[str, set[int]]:
    """Parse ``spec`` (a string or a list of items) into a set of port keys.

    ``context`` is ``""`` or ``"exclude "``; it goes in front of the quoted spec in messages.
    ``offsets`` are what a port without a qualifier adds to its number.
    Returns the spec as shown in messages and the ports.
    """
    shown, tokens = _tokens(spec, context)
    where = f"in {context}{shown!r}"
    texts = [t.strip() for t in tokens if isinstance(t, str)]
    if not tokens or (len(texts) == len(tokens) and not any(texts)):
        if allow_empty:
            return shown, set()
        raise PortSpecError(
            f"empty port list {context}{shown!r}: give ports, e.g. '22,80,443' or '1-1024'"
        )

    ports: set[int] = set()
    for token in tokens:
        if isinstance(token, int):
            if not 1 <= token <= MAX_PORT:
                raise PortSpecError(
                    f"invalid port {str(token)!r} {where}: ports are 1-{MAX_PORT}, e.g. 22"
                )
            # a plain int: not a subclass (Ansible tags its values)
            ports.update(int(token) + offset for offset in offsets)
            continue
        text = shown_token = token.strip()
        qualifier = ""
        if match := _QUALIFIER.fullmatch(text):
            letter, text = match.group(1).upper(), match.group(2).strip()
            qualifier = letter + ":"
            if letter not in _QUALIFIERS:
                raise PortSpecError(
                    f"unknown protocol qualifier {match.group(1) + ':'!r} {where}: "
                    "use T: (TCP) or U: (UDP), e.g. 'T:22,U:53'"
                )
            if not text:
                raise PortSpecError(
                    f"no port after {shown_token!r} {where}: a qualifier goes before a port, "
                    f"e.g. '{qualifier}{_EXAMPLES[letter]}'"
                )
            offsets = _QUALIFIERS[letter]
        quiet = len(offsets) > 1  # a service of only one protocol is that protocol's port
        results = [
            _parse_token(text, tokens, where, offset, shown_token, qualifier, quiet=quiet)
            for offset in offsets
        ]
        if all(found is None for found in results):  # a service name neither protocol has
            _parse_token(text, tokens, where, offsets[0], shown_token, qualifier)
        for offset, found in zip(offsets, results, strict=True):
            if found is not None:
                ports.update(found if not offset else (port + offset for port in found))
    return shown, ports


def _tokens(spec: object, context: str) -> tuple[str, list[str | int]]:
    """Split ``spec`` into tokens: strings still to parse and port numbers given as ints.

    Returns the spec as shown in messages and the tokens.
    """
    if isinstance(spec, str):
        return spec, list(spec.split(","))
    if isinstance(spec, int) and not isinstance(spec, bool):
        # A lone number, as YAML gives for ``ports: 22``.
        return str(spec), [spec]
    if not isinstance(spec, Iterable) or isinstance(spec, bytes | bytearray):
        raise PortSpecError(
            f"invalid port list {spec!r}: give a string or a list, e.g. '22,80,443' or [22, 80]"
        )
    items = list(spec)
    shown = ",".join(str(item) for item in items)
    tokens: list[str | int] = []
    for item in items:
        if isinstance(item, bool):
            raise PortSpecError(
                f"invalid port {item!r} in {context}{shown!r}: a boolean is not a port, "
                "e.g. 22 or '22'"
            )
        if isinstance(item, int):
            tokens.append(item)
        elif isinstance(item, str):
            tokens.extend(item.split(","))
        else:
            raise PortSpecError(
                f"invalid port {item!r} in {context}{shown!r}: give port numbers or strings, "
                "e.g. [22, '80-90', 'ssh']"
            )
    return shown, tokens


def _parse_token(
    token: str,
    tokens: list[str | int],
    where: str,
    offset: int,
    shown: str,
    qualifier: str,
    *,
    quiet: bool = False,
) -> Iterable[int] | None:
    """Parse one stripped string token (its qualifier taken off) into port numbers of the
    protocol ``offset`` marks; ``tokens``, ``where``, ``shown`` (the token as written) and
    ``qualifier`` are for messages. ``quiet``: None for a service name the protocol lacks."""
    if not token:
        kept = ",".join(str(t).strip() for t in tokens if str(t).strip())
        raise PortSpecError(f"empty token {where}: remove the extra comma, e.g. {kept!r}")

    if _NUMBER.fullmatch(token):
        port = _port_number(token)
        if port is None:
            raise PortSpecError(
                f"invalid port {shown!r} {where}: ports are 1-{MAX_PORT}, "
                f"e.g. '{qualifier}{_EXAMPLES[qualifier[:1]]}'"
            )
        return (port,)

    if match := _RANGE.fullmatch(token):
        start_text, end_text = match.groups()
        start = _port_number(start_text) if start_text else 1
        end = _port_number(end_text) if end_text else MAX_PORT
        if start is None or end is None:
            raise PortSpecError(
                f"invalid port range {shown!r} {where}: ports are 1-{MAX_PORT}, "
                f"e.g. '{qualifier}{_clamped_example(start_text, end_text)}'"
            )
        if start > end:
            raise PortSpecError(
                f"invalid port range {shown!r} {where}: start must be <= end, "
                f"e.g. '{qualifier}{end}-{start}'"
            )
        return range(start, end + 1)

    protocol = "udp" if offset else "tcp"
    if match := _TOP.fullmatch(token):
        ranked = _ranked_ports(protocol)
        count = _port_number(match.group(1))
        if count is None or count > len(ranked):
            what, q = ("", "") if protocol == "tcp" else (" UDP", qualifier or "U:")
            raise PortSpecError(
                f"invalid port set {shown!r} {where}: the shipped{what} list ranks "
                f"{len(ranked)} ports, use {q}top1 to {q}top{len(ranked)}, "
                f"e.g. '{q}top100' or '{q}top1000'"
            )
        return ranked[:count]

    if _SERVICE.fullmatch(token):
        port = _service_port(token, protocol)
        if port is None and not quiet:
            if protocol == "tcp":
                raise PortSpecError(
                    f"unknown service name {shown!r} {where}: not in the services database, "
                    f"e.g. '{qualifier}ssh' or '{qualifier}22'"
                )
            raise PortSpecError(
                f"unknown UDP service name {shown!r} {where}: not a udp service in the "
                f"services database, e.g. '{qualifier}domain' or '{qualifier}53'"
            )
        return None if port is None else (port,)

    raise PortSpecError(
        f"invalid port {shown!r} {where}: use a port, a range, a service name or a top-ports "
        "set, e.g. '22,8000-8100,ssh,top100'"
    )


def _port_number(digits: str) -> int | None:
    """``digits`` as a port number, or None when it is out of 1-65535."""
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        return None
    value = int(digits)
    return value if 1 <= value <= MAX_PORT else None


def _clamped_example(start_text: str, end_text: str) -> str:
    """A valid range near an out-of-bounds one: ``0-100`` suggests ``1-100``."""

    def clamp(text: str, default: int) -> int:
        if not text:
            return default
        if len(text.lstrip("0")) > _MAX_DIGITS:
            return MAX_PORT
        return min(max(int(text), 1), MAX_PORT)

    start, end = clamp(start_text, 1), clamp(end_text, MAX_PORT)
    return f"{start}-{end}" if start < end else "1-1024"


def _service_port(name: str, protocol: str) -> int | None:
    """Look ``name`` up in the services database (exact spelling first, then lower case)."""
    for candidate in dict.fromkeys((name, name.lower())):
        try:
            port = socket.getservbyname(candidate, protocol)
        except (OSError, ValueError):
            continue
        if 1 <= port <= MAX_PORT:
            return port
    return None


def format_ports(ports: Iterable[int], *, qualified: bool = False) -> str:
    """The shortest port spec for sorted port keys, the inverse of ``parse_ports``: UDP ports
    follow ``U:``, as in nmap's ``-p``. ``qualified``: TCP ports follow ``T:``, so that the spec
    reads the same whatever ``protocol`` parses it.

    >>> format_ports([22, 80, 81, 82, 443])
    '22,80-82,443'
    >>> format_ports([22, udp_key(53), udp_key(161), udp_key(162)])
    '22,U:53,161-162'
    >>> format_ports([22, udp_key(53)], qualified=True)
    'T:22,U:53'
    >>> format_ports([])
    ''
    """
    parts: list[str] = []
    runs: list[tuple[int, int]] = []
    for port in ports:
        if runs and port == runs[-1][1] + 1 and (port > UDP) == (runs[-1][1] > UDP):
            runs[-1] = (runs[-1][0], port)
        else:
            runs.append((port, port))
    marked = False  # "U:" written: the ports after it are UDP
    for first, last in runs:
        text = str(first % UDP) if first == last else f"{first % UDP}-{last % UDP}"
        if first > UDP and not marked:
            text, marked = "U:" + text, True
        elif qualified and not parts and first < UDP:
            text = "T:" + text
        parts.append(text)
    return ",".join(parts)


def label_ports(ports: Iterable[int]) -> str:
    """Sorted port keys as a table shows them: TCP as ``format_ports`` writes them, each run of
    UDP ports followed by ``/udp``.

    >>> label_ports([22, 80, 81, udp_key(53), udp_key(161), udp_key(162)])
    '22,80-81,53/udp,161-162/udp'
    """
    keys = list(ports)
    tcp = [key for key in keys if key < UDP]
    udp = [key - UDP for key in keys if key > UDP]
    runs = [format_ports(tcp)] if tcp else []
    runs += [f"{run}/udp" for run in format_ports(udp).split(",")] if udp else []
    return ",".join(runs)
