"""Port specifications: ``"22,80,8000-8100,ssh,top100"`` to a sorted tuple of port numbers.

The syntax follows nmap's ``-p``. Tokens are separated by commas; whitespace around a token is
ignored. A token is one of:

- a port: ``22``
- a range: ``8000-8100``; open ranges ``-1024`` (1-1024) and ``60000-`` (60000-65535); ``-``
  alone is every port, 1-65535
- a service name from the system services database: ``ssh``, ``https``
- a named set of the most often open TCP ports: ``top100``, ``top1000`` (any ``topN`` with N from 1
  to 1000 works)

A list (for example from YAML: ``[22, "80-90", "ssh"]``) is accepted too; each item is parsed like
a token (a string item may itself hold commas).

    >>> parse_ports("443, 80-82,22,80")
    (22, 80, 81, 82, 443)
    >>> parse_ports([22, "8000-8002"], exclude="8001")
    (22, 8000, 8002)
    >>> top_ports(3)
    (80, 23, 443)
"""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Iterable
from importlib import resources

from nornir_portscan.errors import PortSpecError

__all__ = [
    "MAX_PORT",
    "UDP",
    "format_ports",
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


_TOP_PORTS_FILE = "data/top_ports.txt"
_PACKAGE = __name__.rpartition(".")[0]

_RANGE = re.compile(r"([0-9]*)\s*-\s*([0-9]*)")
_NUMBER = re.compile(r"[0-9]+")
_TOP = re.compile(r"top([0-9]+)", re.IGNORECASE)
# Names in services databases: letters first, then letters, digits and a little punctuation.
_SERVICE = re.compile(r"[A-Za-z][A-Za-z0-9._+/-]*")
# More than five digits cannot be a port; checked before int() so huge inputs stay cheap.
_MAX_DIGITS = 5


def parse_ports(
    spec: str | Iterable[int | str],
    *,
    exclude: str | Iterable[int | str] | None = None,
) -> tuple[int, ...]:
    """Parse a port specification into sorted, unique port numbers.

    Args:
        spec: Comma-separated tokens such as ``"22,80,8000-8100,ssh,top100"``, or a list of
            port numbers and tokens such as ``[22, "80-90", "ssh"]``.
        exclude: Ports to leave out, in the same syntax. ``None``, ``""`` or an empty list
            exclude nothing.

    Returns:
        The ports, sorted ascending, each once.

    Raises:
        PortSpecError: A token is not a valid port, range, service name or port set; the
            spec is empty; or the exclusions leave no port. The message is one line that names
            the bad token and shows a valid form.
    """
    shown, ports = _parse(spec, context="")
    if exclude is not None and not (isinstance(exclude, str) and not exclude.strip()):
        shown_exclude, removed = _parse(exclude, context="exclude ", allow_empty=True)
        ports -= removed
        if not ports:
            raise PortSpecError(
                f"no ports left after excluding {shown_exclude!r} from {shown!r}: "
                "exclude only some of the ports, e.g. '1-1024' excluding '22'"
            )
    return tuple(sorted(ports))


def top_ports(n: int) -> tuple[int, ...]:
    """Return the ``n`` TCP ports most often found open, most frequent first.

    The order comes from the open-frequency column of nmap's ``nmap-services``; the first ``n``
    are the same set as ``nmap --top-ports n``.

    Args:
        n: How many ports, from 1 to 1000.

    Returns:
        The ports in frequency order (not sorted by number).

    Raises:
        PortSpecError: ``n`` is not a whole number from 1 to 1000.
    """
    ranked = _ranked_ports()
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(ranked):
        raise PortSpecError(
            f"invalid top ports count {n!r}: use a whole number from 1 to {len(ranked)}, "
            "e.g. top_ports(100)"
        )
    return ranked[:n]


@functools.cache
def _ranked_ports() -> tuple[int, ...]:
    """The shipped list, loaded on first use."""
    text = resources.files(_PACKAGE).joinpath(_TOP_PORTS_FILE).read_text(encoding="utf-8")
    return tuple(
        int(line) for line in (raw.strip() for raw in text.splitlines()) if line and line[0] != "#"
    )


def _parse(spec: object, *, context: str, allow_empty: bool = False) -> tuple[str, set[int]]:
    """Parse ``spec`` (a string or a list of items) into a set of ports.

    ``context`` is ``""`` or ``"exclude "``; it goes in front of the quoted spec in messages.
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
            ports.add(int(token))  # a plain int: not a subclass (Ansible tags its values)
        else:
            ports.update(_parse_token(token.strip(), tokens, where))
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


def _parse_token(token: str, tokens: list[str | int], where: str) -> Iterable[int]:
    """Parse one stripped string token; ``tokens`` and ``where`` are for messages."""
    if not token:
        kept = ",".join(str(t).strip() for t in tokens if str(t).strip())
        raise PortSpecError(f"empty token {where}: remove the extra comma, e.g. {kept!r}")

    if _NUMBER.fullmatch(token):
        port = _port_number(token)
        if port is None:
            raise PortSpecError(
                f"invalid port {token!r} {where}: ports are 1-{MAX_PORT}, e.g. '22,80,443'"
            )
        return (port,)

    if match := _RANGE.fullmatch(token):
        start_text, end_text = match.groups()
        start = _port_number(start_text) if start_text else 1
        end = _port_number(end_text) if end_text else MAX_PORT
        if start is None or end is None:
            raise PortSpecError(
                f"invalid port range {token!r} {where}: ports are 1-{MAX_PORT}, "
                f"e.g. {_clamped_example(start_text, end_text)!r}"
            )
        if start > end:
            raise PortSpecError(
                f"invalid port range {token!r} {where}: start must be <= end, e.g. '{end}-{start}'"
            )
        return range(start, end + 1)

    if match := _TOP.fullmatch(token):
        ranked = _ranked_ports()
        count = _port_number(match.group(1))
        if count is None or count > len(ranked):
            raise PortSpecError(
                f"invalid port set {token!r} {where}: the shipped list ranks "
                f"{len(ranked)} ports, use top1 to top{len(ranked)}, e.g. 'top100' or 'top1000'"
            )
        return ranked[:count]

    if _SERVICE.fullmatch(token):
        return (_service_port(token, where),)

    raise PortSpecError(
        f"invalid port {token!r} {where}: use a port, a range, a service name or a top-ports "
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


def _service_port(name: str, where: str) -> int:
    """Look ``name`` up in the services database (exact spelling first, then lower case)."""
    for candidate in dict.fromkeys((name, name.lower())):
        try:
            port = socket.getservbyname(candidate, "tcp")
        except (OSError, ValueError):
            continue
        if 1 <= port <= MAX_PORT:
            return port
    raise PortSpecError(
        f"unknown service name {name!r} {where}: not in the services database, e.g. 'ssh' or '22'"
    )


def format_ports(ports: Iterable[int]) -> str:
    """The shortest port spec for sorted port keys, the inverse of ``parse_ports``: UDP ports
    follow ``U:``, as in nmap's ``-p``.

    >>> format_ports([22, 80, 81, 82, 443])
    '22,80-82,443'
    >>> format_ports([22, udp_key(53), udp_key(161), udp_key(162)])
    '22,U:53,161-162'
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
        parts.append(text)
    return ",".join(parts)
