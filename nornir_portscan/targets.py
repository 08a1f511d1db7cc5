"""Target specifications: addresses, ranges, CIDR blocks, hostnames and target files to Targets.

Each spec is split on whitespace and commas into tokens; a token is one of:

- an IPv4 address, with nmap-style ranges and lists in any octet: ``127.0.0.1``,
  ``127.0.0.1-20``, ``127.0.1-3.1``, ``127.0.0.1,3,5``, ``127.0.0-1.*`` (``-5``, ``250-`` and
  ``*`` are open ranges). A comma inside such a pattern lists octet values, so
  ``127.0.0.1,3,5`` is three hosts while ``127.0.0.1,127.0.0.3`` is two targets;
- an IPv6 address, bare or in brackets: ``::1``, ``[::1]``, with a zone where it needs one:
  ``fe80::1%eth0`` (the zone, a name or index of an interface of this machine, is checked);
- a CIDR block, IPv4 or IPv6: ``127.0.0.0/30`` is four hosts; like nmap, every address of the
  block is scanned, network and broadcast included;
- a hostname: ``localhost``. Each distinct name is resolved once, all names in parallel; a name
  that does not resolve becomes a ``Target`` with ``address=None`` and an ``error``.

Addresses are compared in their canonical form (``nornir_portscan.addresses``): an exclusion of
``127.0.0.1`` also leaves out ``::ffff:127.0.0.1``, which is scanned as ``127.0.0.1``, and
``::1%lo`` is ``::1``. Hosts are counted arithmetically while the specs are read, before
anything is expanded, so a ``/8`` or a file of two million lines fails the scope guard at once
instead of building millions of objects.

    >>> [t.address for t in parse_targets(["127.0.0.0/31", "[::1]"])]
    ['127.0.0.0', '127.0.0.1', '::1']
    >>> [t.address for t in parse_targets(["127.0.0.1-4"], exclude=["127.0.0.2,3"])]
    ['127.0.0.1', '127.0.0.4']
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TypeAlias

from nornir_portscan.addresses import IPAddress, canonical, mapped, needs_zone
from nornir_portscan.errors import OptionError, ScopeError, TargetSpecError
from nornir_portscan.inputfile import read_lines
from nornir_portscan.models import AddressFamily, Target

__all__ = ["DEFAULT_MAX_HOSTS", "Resolver", "parse_targets", "resolve_name"]

DEFAULT_MAX_HOSTS = 65536
"""The default scope guard: at most this many hosts per scan."""

Resolver: TypeAlias = Callable[[str, int], list[str]]
"""``resolver(name, socket_family) -> addresses``; raises ``OSError`` when the name does not
resolve. ``socket_family`` is ``AF_INET``, ``AF_INET6`` or ``AF_UNSPEC``."""

_IPAddress: TypeAlias = IPAddress
_IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_FAMILIES: dict[str, int] = {
    "ipv4": socket.AF_INET,
    "ipv6": socket.AF_INET6,
    "both": socket.AF_UNSPEC,
}
_MAX_RESOLVER_THREADS = 64

_IPV4_EXAMPLE = "e.g. '127.0.0.1' or '127.0.0.1-20'"
_ANY_EXAMPLE = "e.g. '127.0.0.1', '127.0.0.0/24', '[::1]' or 'localhost'"

# Tokens made only of these characters are IPv4 addresses or octet patterns, never hostnames.
_IPV4ISH = re.compile(r"[0-9.,*-]+")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_OCTET_ITEM = re.compile(r"([0-9]*)-([0-9]*)|([0-9]+)")
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_MAX_HOSTNAME = 253
# Far more than the scope guard lets through; a bound for a file like /dev/zero.
_MAX_TARGET_FILE_BYTES = 64 * 2**20
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_ZONE_EXAMPLE = "e.g. 'fe80::1%eth0' or '::1'"


@dataclass(frozen=True, slots=True)
class _Octets:
    """An IPv4 address or octet pattern: the allowed values of each octet, ascending."""

    text: str
    where: str
    octet_texts: tuple[str, ...]
    octets: tuple[frozenset[int], ...]

    @property
    def count(self) -> int:
        return len(self.octets[0]) * len(self.octets[1]) * len(self.octets[2]) * len(self.octets[3])

    def expand(self) -> Iterator[str]:
        for a, b, c, d in itertools.product(*(sorted(o) for o in self.octets)):
            yield f"{a}.{b}.{c}.{d}"

    def __contains__(self, address: _IPAddress) -> bool:
        if address.version != 4:
            return False
        return all(
            value in allowed for value, allowed in zip(address.packed, self.octets, strict=True)
        )


@dataclass(frozen=True, slots=True)
class _Network:
    """A CIDR block of either family; ``zone`` is kept for a link-local block only."""

    text: str
    where: str
    network: _IPNetwork
    zone: str | None = None

    @property
    def count(self) -> int:
        return self.network.num_addresses

    def expand(self) -> Iterator[str]:
        if self.zone is not None:
            return (f"{address}%{self.zone}" for address in self.network)
        if self.network.version == 6 and self.network.overlaps(_MAPPED):
            return (str(canonical(address)) for address in self.network)
        return (str(address) for address in self.network)

    def __contains__(self, address: _IPAddress) -> bool:
        if address.version != self.network.version:
            # an IPv4 address is also its mapped spelling, which a block of mapped addresses
            # holds (a wider IPv6 block such as ::/0 means IPv6, not the IPv4 it also spans)
            network = self.network
            return (
                isinstance(address, ipaddress.IPv4Address)
                and isinstance(network, ipaddress.IPv6Network)
                and network.subnet_of(_MAPPED)
                and mapped(address) in network
            )
        if self.zone is not None and address.version == 6 and address.scope_id != self.zone:
            return False
        return address in self.network


@dataclass(frozen=True, slots=True)
class _Address:
    """One address, in its canonical form (``nornir_portscan.addresses``)."""

    text: str
    where: str
    address: _IPAddress

    @property
    def count(self) -> int:
        return 1

    def expand(self) -> Iterator[str]:
        yield str(self.address)

    def __contains__(self, address: _IPAddress) -> bool:
        if self.address.version == 6 and self.address.scope_id is not None:
            return address == self.address  # only on that link
        # without a zone, the address on every link
        return address.version == self.address.version and address.packed == self.address.packed


@dataclass(frozen=True, slots=True)
class _Name:
    """A hostname, resolved later."""

    text: str
    where: str


_Spec: TypeAlias = _Octets | _Network | _Address | _Name


def parse_targets(
    specs: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    files: Iterable[str | os.PathLike[str]] = (),
    family: AddressFamily = "ipv4",
    max_hosts: int = DEFAULT_MAX_HOSTS,
    resolver: Resolver | None = None,
    hosts: Iterable[Target] = (),
    allow_empty: bool = False,
) -> tuple[Target, ...]:
    """Parse target specifications into the Targets to scan.

    Args:
        specs: Targets, each an address, octet range, CIDR block or hostname; a spec may hold
            several, separated by whitespace or commas.
        exclude: Targets to leave out, same syntax; hostnames are resolved and every address
            they resolve to (in ``family``) is removed.
        files: Target files: targets separated by whitespace or commas, ``#`` starts a comment.
            Their targets come after those of ``specs``.
        family: Which addresses of a hostname to scan: ``"ipv4"`` (the first IPv4 address),
            ``"ipv6"`` (the first IPv6 address) or ``"both"`` (the first of each, IPv4 first).
            Address literals are scanned whatever the family.
        max_hosts: The scope guard: fail if the targets add up to more hosts than this (counted
            before exclusions, a hostname as one host per family).
        resolver: ``resolver(name, socket_family) -> addresses``; the default uses
            ``socket.getaddrinfo``. A seam for tests.
        hosts: Named hosts (inventory hosts, dict targets): each ``Target``'s ``address`` is
            one address or hostname, resolved as ``family`` says; the result keeps the
            template's name, ports and policy. They come after the specs and files, and the
            exclusions and the scope guard hold for them too.
        allow_empty: Return no targets, rather than raise, when none is given or the
            exclusions remove all (an empty shard, an empty filtered inventory).

    Returns:
        The targets in the order given, each pattern expanded in address order, duplicates
        (same name and address) merged keeping the first. A hostname that did not resolve is
        a Target with ``address=None`` and ``error`` set.

    Raises:
        TargetSpecError: A token is not valid, a file cannot be read, an excluded hostname does
            not resolve, no target is given, or the exclusions remove every target.
        ScopeError: The targets add up to more than ``max_hosts`` hosts.
        OptionError: ``family`` or ``max_hosts`` is not valid.
    """
    if family not in _FAMILIES:
        raise OptionError(
            f"invalid family {family!r}: use 'ipv4', 'ipv6' or 'both', e.g. family='ipv4'"
        )
    if isinstance(max_hosts, bool) or not isinstance(max_hosts, int) or max_hosts < 1:
        raise OptionError(
            f"invalid max_hosts {max_hosts!r}: use a whole number >= 1, "
            f"e.g. max_hosts={DEFAULT_MAX_HOSTS}"
        )

    templates = list(hosts)
    given = itertools.chain(
        (_parse_token(token, where) for token, where in _tokens(specs, files)),
        (_host_spec(template) for template in templates),
    )
    # Counted as they are read: the guard stops a long file at the first line past the limit.
    wanted = list(_within_scope(given, max_hosts, 2 if family == "both" else 1))
    if not wanted and not allow_empty:
        raise TargetSpecError(
            f"no targets given: give an address, range, CIDR block or hostname, {_ANY_EXAMPLE}"
        )
    unwanted = [
        _parse_token(token, " in exclude", exclusion=True) for token, _ in _tokens(exclude, ())
    ]

    names = [spec.text for spec in itertools.chain(wanted, unwanted) if isinstance(spec, _Name)]
    resolved = _resolve_all(names, _FAMILIES[family], resolver or resolve_name)

    patterns = [spec for spec in unwanted if not isinstance(spec, _Name)]
    for spec in unwanted:
        if isinstance(spec, _Name):
            addresses, error = resolved[spec.text.lower()]
            if error is not None:
                raise TargetSpecError(
                    f"cannot resolve excluded host {spec.text!r}: {error}; fix the name or "
                    "exclude its address, e.g. '127.0.0.5'"
                )
            # each address as if given: one without a zone is left out on every link
            picked = _pick(addresses, family, first_only=False)
            patterns.extend(_Address(spec.text, spec.where, ip) for ip in picked)

    def excluded(address: str) -> bool:
        if not patterns:
            return False
        ip = ipaddress.ip_address(address)
        return any(ip in pattern for pattern in patterns)

    found: dict[tuple[str, str | None], Target] = {}
    from_hosts: set[tuple[str, str | None]] = set()  # the keys a named host gave
    named = len(wanted) - len(templates)
    for index, spec in enumerate(wanted):
        expanded = _expand(spec, resolved, family)
        if index >= named:  # a named host: keep its name, ports and policy
            template = templates[index - named]
            expanded = (replace(template, address=t.address, error=t.error) for t in expanded)
        for target in expanded:
            if target.address is None or not excluded(target.address):
                _add(found, from_hosts, target, named_host=index >= named)

    if not found and not allow_empty:
        shown = ",".join(spec.text for spec in unwanted)
        raise TargetSpecError(
            f"no targets left after excluding {shown!r}: every target is excluded, "
            "exclude fewer addresses, e.g. '127.0.0.1-20' excluding '127.0.0.5'"
        )
    return tuple(found.values())


def _add(
    found: dict[tuple[str, str | None], Target],
    from_hosts: set[tuple[str, str | None]],
    target: Target,
    *,
    named_host: bool,
) -> None:
    """Add ``target`` once: the same host twice is scanned once; a named host's own settings
    beat a plain spec of the same host; two named hosts that differ are refused."""
    key = (target.name, target.address)
    if key not in found:
        found[key] = target
    elif not named_host or found[key] == target:
        return
    elif key in from_hosts:
        raise TargetSpecError(
            f"target {target.name!r} ({target.address}) is given twice, with other ports or "
            "expectations; give each host once, e.g. one entry per name"
        )
    found[key] = target
    if named_host:
        from_hosts.add(key)


def _host_spec(template: Target) -> _Spec:
    """The spec of a named host, which must be one address or hostname."""
    text = template.address or template.name
    # a host named by its address is that address, in messages too (as a plain spec is)
    where = "" if text == template.name else f" (address of target {template.name!r})"
    spec = _parse_token(text, where) if isinstance(text, str) else None
    if not isinstance(spec, _Address | _Name):
        raise TargetSpecError(
            f"invalid address {text!r} of target {template.name!r}: give one address or "
            "hostname, not a range or block, e.g. '127.0.0.1'"
        )
    return spec


def resolve_name(name: str, family: int) -> list[str]:
    """Resolve ``name`` with ``socket.getaddrinfo``; the default resolver.

    Args:
        name: A hostname.
        family: ``socket.AF_INET``, ``socket.AF_INET6`` or ``socket.AF_UNSPEC``.

    Returns:
        The distinct addresses in the order getaddrinfo gave them.

    Raises:
        OSError: The name does not resolve (``socket.gaierror``).
    """
    infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _tokens(
    specs: Iterable[str], files: Iterable[str | os.PathLike[str]]
) -> Iterator[tuple[str, str]]:
    """Yield ``(token, where)`` for every token in ``specs`` and then in ``files``."""
    if isinstance(specs, str):
        specs = [specs]
    for spec in specs:
        if not isinstance(spec, str):
            raise TargetSpecError(f"invalid target {spec!r}: give a string, {_ANY_EXAMPLE}")
        yield from ((token, "") for token in _split(spec))
    if isinstance(files, str | os.PathLike):
        files = [files]
    for file in files:
        lines = read_lines(
            file,
            "target file",
            limit=_MAX_TARGET_FILE_BYTES,
            hint="give a text file of targets, e.g. one '127.0.0.1' a line",
            error=TargetSpecError,
        )
        for number, line in enumerate(lines, start=1):
            where = f" in {str(file)!r} line {number}"
            yield from ((token, where) for token in _split(line.partition("#")[0]))


def _split(spec: str) -> Iterator[str]:
    """Split on whitespace and commas, except commas that list values inside an IPv4 octet."""
    for chunk in spec.split():
        chunk = chunk.strip(",")  # noqa: PLW2901 - a trailing comma is harmless
        if "," in chunk and _IPV4ISH.fullmatch(chunk) and chunk.count(".") == 3:
            yield chunk  # 127.0.0.1,3,5: one pattern
        else:
            yield from (piece for piece in chunk.split(",") if piece)


def _parse_token(token: str, where: str, *, exclusion: bool = False) -> _Spec:
    """Classify and validate one token without expanding it. A link-local target needs a
    zone; an excluded link-local address without one is left out on every link."""
    if token.startswith("["):
        return _parse_bracketed(token, where, exclusion=exclusion)
    if "/" in token:
        return _parse_cidr(token, token, where, exclusion=exclusion)
    if ":" in token:
        return _parse_ipv6(token, token, where, exclusion=exclusion)
    if _IPV4.fullmatch(token):
        try:  # the common case, without the octet sets of a pattern
            return _Address(token, where, ipaddress.IPv4Address(token))
        except ValueError:
            pass  # a leading zero or an octet past 255: the pattern parser says which
    if _IPV4ISH.fullmatch(token):
        if "." not in token:
            raise TargetSpecError(
                f"invalid target {token!r}{where}: not an address or hostname, {_ANY_EXAMPLE}"
            )
        return _parse_octets(token, where)
    if len(token) <= _MAX_HOSTNAME and _HOSTNAME.fullmatch(token):
        return _Name(token, where)
    raise TargetSpecError(
        f"invalid target {token!r}{where}: not an address, range, CIDR block or hostname, "
        f"{_ANY_EXAMPLE}"
    )


def _parse_bracketed(token: str, where: str, *, exclusion: bool) -> _Spec:
    """``[::1]`` or ``[::1]/128``."""
    inner, bracket, suffix = token[1:].partition("]")
    if not bracket or (suffix and not suffix.startswith("/")):
        raise TargetSpecError(
            f"invalid target {token!r}{where}: close the brackets around an IPv6 address, "
            "e.g. '[::1]'"
        )
    if ":" not in inner:
        raise TargetSpecError(
            f"invalid target {token!r}{where}: brackets are for IPv6 addresses, "
            "e.g. '[::1]' or '127.0.0.1'"
        )
    if suffix:
        return _parse_cidr(token, inner + suffix, where, exclusion=exclusion)
    return _parse_ipv6(token, inner, where, exclusion=exclusion)


def _parse_ipv6(token: str, text: str, where: str, *, exclusion: bool) -> _Address:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError as exc:
        raise TargetSpecError(
            f"invalid IPv6 address {token!r}{where}: {_lower_first(str(exc))}, "
            "e.g. '::1' or '[::1]'"
        ) from exc
    return _Address(token, where, _canonical(address, token, where, exclusion=exclusion))


def _canonical(address: _IPAddress, token: str, where: str, *, exclusion: bool) -> _IPAddress:
    """``address`` in its canonical form, or a TargetSpecError naming ``token``."""
    try:
        address = canonical(address)
    except ValueError as exc:
        raise TargetSpecError(
            f"invalid zone in {token!r}{where}: {exc}; give an interface of this machine, "
            f"{_ZONE_EXAMPLE}"
        ) from None
    if needs_zone(address) and not exclusion:
        raise TargetSpecError(
            f"invalid target {token!r}{where}: a link-local address needs a zone, the "
            f"interface to reach it on, e.g. '{address}%eth0'"
        )
    return address


def _lower_first(text: str) -> str:
    """``"Only hex digits..."`` to ``"only hex digits..."``, to sit in the middle of a message."""
    return text[:1].lower() + text[1:]


def _parse_cidr(token: str, text: str, where: str, *, exclusion: bool) -> _Network:
    address_text, _, prefix_text = text.partition("/")
    version = 6 if ":" in address_text else 4
    bits = 128 if version == 6 else 32
    address: _IPAddress
    try:
        address = (
            ipaddress.IPv6Address(address_text)
            if version == 6
            else ipaddress.IPv4Address(address_text)
        )
    except ValueError as exc:
        example = "'::1/128'" if version == 6 else "'127.0.0.0/24'"
        raise TargetSpecError(
            f"invalid CIDR block {token!r}{where}: {address_text!r} is not an IPv{version} "
            f"address, e.g. {example}"
        ) from exc
    example = repr(str(ipaddress.ip_network((address, bits - 8), strict=False)))
    prefix = int(prefix_text) if prefix_text.isascii() and prefix_text.isdigit() else -1
    if not 0 <= prefix <= bits or len(prefix_text) > 3:
        raise TargetSpecError(
            f"invalid CIDR block {token!r}{where}: prefix must be 0-{bits} for IPv{version}, "
            f"e.g. {example}"
        )
    zone = None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # the zone must exist; canonical() spells it as the interface's name
        zone = str(_canonical(address, token, where, exclusion=True)).partition("%")[2] or None
        address = ipaddress.IPv6Address(address.packed)
    network = ipaddress.ip_network((address, prefix), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        network = ipaddress.ip_network((int(network.network_address) & 0xFFFFFFFF, prefix - 96))
    if network.version == 4 or not network.is_link_local:
        zone = None  # the kernel ignores a zone off the link-local block
    elif zone is None and not exclusion:
        raise TargetSpecError(
            f"invalid target {token!r}{where}: a link-local block needs a zone, the "
            f"interface to reach it on, e.g. '{network.network_address}%eth0/{prefix}'"
        )
    return _Network(token, where, network, zone)


def _parse_octets(token: str, where: str) -> _Octets:
    """``127.0.0.1``, ``127.0.0.1-20``, ``127.0.1-3.1``, ``127.0.0.1,3,5``, ``127.0.0.*``."""
    parts = token.split(".")
    if len(parts) != 4:
        raise TargetSpecError(
            f"invalid target {token!r}{where}: an IPv4 address has 4 octets, {_IPV4_EXAMPLE}"
        )
    octets = tuple(_parse_octet(part, token, where) for part in parts)
    return _Octets(token, where, tuple(parts), octets)


def _parse_octet(part: str, token: str, where: str) -> frozenset[int]:
    def fail(reason: str) -> TargetSpecError:
        return TargetSpecError(f"invalid target {token!r}{where}: {reason}, {_IPV4_EXAMPLE}")

    if not part:
        raise fail("an octet is empty")
    if part == "*":
        return frozenset(range(256))
    values: set[int] = set()
    for item in part.split(","):
        match = _OCTET_ITEM.fullmatch(item)
        if match is None:
            raise fail(f"octet {item!r} is not a number, a range (1-20), a list (1,3,5) or '*'")
        start_text, end_text, single = match.groups()
        if single is not None:
            start = end = _octet_value(single, fail)
        else:
            start = _octet_value(start_text, fail) if start_text else 0
            end = _octet_value(end_text, fail) if end_text else 255
            if start > end:
                raise fail(f"octet range {item} has start > end")
        values.update(range(start, end + 1))
    return frozenset(values)


def _octet_value(text: str, fail: Callable[[str], TargetSpecError]) -> int:
    if len(text) > 3 or int(text) > 255:
        raise fail(f"octet {text} is out of range 0-255")
    if len(text) > 1 and text[0] == "0":
        # inet_aton and ping read a leading zero as octal; refuse rather than guess.
        raise fail(f"octet {text} has a leading zero (octal or decimal?)")
    return int(text)


def _within_scope(specs: Iterable[_Spec], max_hosts: int, per_name: int) -> Iterator[_Spec]:
    """The specs, as long as they add up to at most ``max_hosts`` hosts; a ScopeError as soon
    as they pass it. Expands nothing, and reads no spec after the one that passes."""
    total = 0
    for spec in specs:
        count = per_name if isinstance(spec, _Name) else spec.count
        if count > max_hosts:
            raise ScopeError(
                f"{spec.text!r}{spec.where} expands to {count} hosts, more than the limit of "
                f"{max_hosts}; raise max_hosts or narrow the target, "
                f"e.g. {_narrower(spec, max_hosts)!r}"
            )
        total += count
        if total > max_hosts:
            raise ScopeError(
                f"the targets add up to {total} hosts by {spec.text!r}{spec.where}, more "
                f"than the limit of {max_hosts}; raise max_hosts or give fewer targets, "
                "e.g. split them across scans"
            )
        yield spec


def _narrower(spec: _Spec, max_hosts: int) -> str:
    """A smaller version of ``spec`` for the ScopeError message."""
    if isinstance(spec, _Network):
        bits = spec.network.max_prefixlen
        # A /24 (or /120) as in the docs, or smaller still when the limit is below 256.
        prefix = max(bits - 8, bits - (max_hosts.bit_length() - 1))
        narrower = ipaddress.ip_network((spec.network.network_address, prefix), strict=False)
        if spec.zone is not None:
            return f"{narrower.network_address}%{spec.zone}/{prefix}"
        return str(narrower)
    if isinstance(spec, _Octets):
        first = [str(min(values)) for values in spec.octets]
        last = spec.octet_texts[3] if len(spec.octets[3]) <= max_hosts else first[3]
        return ".".join([*first[:3], last])
    return "127.0.0.1"


def _resolve_all(
    names: list[str], socket_family: int, resolver: Resolver
) -> dict[str, tuple[list[str], str | None]]:
    """Resolve each distinct name (case-insensitively) once, in parallel.

    Returns ``{name.lower(): (addresses, error)}`` with ``error`` None on success.
    """
    unique = list(dict.fromkeys(name.lower() for name in names))

    def resolve(name: str) -> tuple[list[str], str | None]:
        try:
            return resolver(name, socket_family), None
        except (OSError, UnicodeError) as exc:
            # UnicodeError: the IDNA codec rejects a label (empty or longer than 63).
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return [], reason or type(exc).__name__

    if len(unique) <= 1:
        return {name: resolve(name) for name in unique}
    # Daemon threads, not an executor: Ctrl-C while a slow resolver answers returns at once,
    # and leaves nothing for the interpreter to wait for at exit.
    results: dict[str, tuple[list[str], str | None]] = {}
    pending = iter(unique)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                name = next(pending, None)
            if name is None:
                return
            results[name] = resolve(name)

    threads = [
        threading.Thread(target=work, name=f"portscan-dns-{i}", daemon=True)
        for i in range(min(_MAX_RESOLVER_THREADS, len(unique)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {name: results[name] for name in unique}


def _pick(addresses: list[str], family: AddressFamily, *, first_only: bool) -> list[_IPAddress]:
    """The addresses of ``family``, canonical, IPv4 before IPv6; with ``first_only`` (a
    target's) only the first of each that can be reached: not link-local without a zone."""
    v4: list[_IPAddress] = []
    v6: list[_IPAddress] = []
    for text in addresses:
        try:
            address = canonical(ipaddress.ip_address(text))
        except ValueError:
            continue  # a resolver gave something that is not an address; ignore it
        if first_only and needs_zone(address):
            continue  # link-local without its interface: it cannot be reached
        (v4 if address.version == 4 else v6).append(address)
    if first_only:
        v4, v6 = v4[:1], v6[:1]
    return [
        *(v4 if family in ("ipv4", "both") else []),
        *(v6 if family in ("ipv6", "both") else []),
    ]


def _expand(
    spec: _Spec, resolved: dict[str, tuple[list[str], str | None]], family: AddressFamily
) -> Iterator[Target]:
    """The Targets of one spec."""
    if not isinstance(spec, _Name):
        for address in spec.expand():
            yield Target(name=address, address=address)
        return
    addresses, error = resolved[spec.text.lower()]
    if error is None:
        picked = _pick(addresses, family, first_only=True)
        if picked:
            for ip in picked:
                yield Target(name=spec.text, address=str(ip))
            return
        error = {"ipv4": "no IPv4 address", "ipv6": "no IPv6 address"}.get(family, "no address")
        if family != "ipv4" and any(_zoneless_link_local(text) for text in addresses):
            error = (
                "only link-local IPv6 addresses without a zone; give the address with its "
                "zone, e.g. 'fe80::1%eth0'"
            )
    yield Target(name=spec.text, address=None, error=error)


def _zoneless_link_local(text: str) -> bool:
    try:
        return needs_zone(ipaddress.ip_address(text))
    except ValueError:
        return False
