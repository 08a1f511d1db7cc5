"""Expectations about a host's ports (an exposure policy) and the verdict of a scan against them.

A ``Policy`` holds four port sets, written with the same syntax as ``ports``:

- ``expect_open``: each must be open;
- ``expect_closed``: each must be closed (an RST from the host; for UDP, ICMP port-unreachable);
- ``expect_filtered``: each must be filtered (no answer, or an ICMP error; for UDP, an ICMP
  error other than port-unreachable);
- ``allowed_open``: every open port not in it is a violation.

UDP ports are port keys (``U:161`` in a spec, ``ports.udp_key(161)`` in a set). A UDP port
that never answered is ``open|filtered``: it proves no state, so it meets no expectation
(``expect_open``, ``expect_closed`` and ``expect_filtered`` each fail on it, with the reason
``no-response``), and outside ``allowed_open`` it is no proven violation either: it is
``unconfirmed`` (``HostVerdict.unconfirmed``), reported but not failed (docs/udp.md).

Policies layer like inventory data: ``merge_policies(defaults, group, host)`` lets each later
layer replace the keys it sets. The ports a policy expects something of are scanned even when
the scan's ports do not list them (``Policy.ports``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from nornir_portscan.addresses import canonical_address
from nornir_portscan.errors import InputError
from nornir_portscan.inputfile import read_text, show
from nornir_portscan.models import HostResult, HostStatus, Policy, PortState
from nornir_portscan.ports import UDP, format_ports, parse_ports, port_label

__all__ = [
    "POLICY_KEYS",
    "HostVerdict",
    "Policy",
    "PolicyBook",
    "Violation",
    "evaluate",
    "load_policy_file",
    "merge_policies",
    "parse_policy",
    "port_text",
]

POLICY_KEYS = ("expect_open", "expect_closed", "expect_filtered", "allowed_open")


def port_text(port: int) -> str:
    """A port key as a message shows it: ``22`` for TCP (as always), ``53/udp`` for UDP.

    >>> port_text(22), port_text(1000053)
    ('22', '53/udp')
    """
    return port_label(port) if port > UDP else str(port)


@dataclass(frozen=True, slots=True)
class Violation:
    """One port that is not as the policy says.

    ``port`` is a port key (``port_text`` shows it); ``expected`` is ``open``, ``closed``,
    ``filtered`` or ``not open`` (an allow-list breach); ``actual`` is the state found
    (``open|filtered`` for a UDP port that never answered), or ``not scanned`` when the scan
    could not tell.
    """

    port: int
    expected: str
    actual: str
    reason: str


@dataclass(frozen=True, slots=True)
class HostVerdict:
    """A host judged against its policy. ``compliant`` is None when the host could not be judged
    (unresolved, timed out, only errors): that counts as an error, not as compliance.
    ``unconfirmed``: UDP ports outside ``allowed_open`` that never answered (``open|filtered``),
    maybe open, not proven: reported, not failed."""

    name: str
    compliant: bool | None
    violations: tuple[Violation, ...] = ()
    error: str | None = None
    policy: Policy = field(default_factory=Policy)
    unconfirmed: tuple[Violation, ...] = ()


def parse_policy(
    data: Mapping[str, Any] | None, *, where: str = "policy", protocol: str = "tcp"
) -> Policy:
    """Build a ``Policy`` from a mapping of port specs; raises ``InputError`` naming ``where``.

    >>> sorted(parse_policy({"expect_open": "22,443"}).expect_open)
    [22, 443]
    """
    if not data:
        return Policy()
    if not isinstance(data, Mapping):
        raise InputError(
            f"invalid {where}: expected a mapping of port specs, e.g. {{expect_open: '22,443'}}"
        )
    unknown = sorted(set(data) - set(POLICY_KEYS))
    if unknown:
        raise InputError(
            f"unknown key {unknown[0]!r} in {where}: use {', '.join(POLICY_KEYS)}, "
            "e.g. {expect_open: '22,443'}"
        )
    sets: dict[str, frozenset[int] | None] = {}
    for key in POLICY_KEYS:
        value = data.get(key)
        if value is None or value in ("", []):
            sets[key] = None if key == "allowed_open" and value is None else frozenset()
            continue
        try:
            sets[key] = frozenset(parse_ports(value, protocol=protocol))
        except InputError as exc:
            raise type(exc)(f"{where} {key}: {exc}" if where else f"{key}: {exc}") from None
    policy = Policy(
        expect_open=sets["expect_open"] or frozenset(),
        expect_closed=sets["expect_closed"] or frozenset(),
        expect_filtered=sets["expect_filtered"] or frozenset(),
        allowed_open=sets["allowed_open"],
    )
    _check_consistent(policy, where)
    return policy


def _check_consistent(policy: Policy, where: str) -> None:
    pairs = [("expect_open", "expect_closed"), ("expect_open", "expect_filtered"),
             ("expect_closed", "expect_filtered")]  # fmt: skip
    for first, second in pairs:
        both = getattr(policy, first) & getattr(policy, second)
        if both:
            raise InputError(
                f"{where or 'expectations'}: port {port_text(min(both))} is in both {first} and "
                f"{second}; "
                f"give each port one expected state, e.g. {first}: '22' and {second}: '23'"
            )
    if policy.allowed_open is not None and policy.expect_open - policy.allowed_open:
        port = min(policy.expect_open - policy.allowed_open)
        raise InputError(
            f"{where or 'expectations'}: port {port_text(port)} is in expect_open but not in "
            f"allowed_open; allow what you expect open, e.g. allowed_open: '{format_ports([port])}'"
        )


def merge_policies(layers: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Merge raw policy mappings, later layers replacing the keys they set (defaults first)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return merged


def evaluate(host: HostResult, policy: Policy) -> HostVerdict:
    """Judge ``host`` against ``policy``."""
    if host.status in (HostStatus.UNRESOLVED, HostStatus.ERROR):
        return HostVerdict(host.name, None, error=host.error or host.status.value, policy=policy)
    violations = []
    for port in sorted(policy.ports):
        want = policy.expected(port)
        assert want is not None
        got = host.state_of(port)
        if got is not want:
            violations.append(
                Violation(
                    port, want.value, got.value if got else "not scanned", _reason(host, port)
                )
            )
    unconfirmed: list[Violation] = []
    if policy.allowed_open is not None:
        allowed = policy.allowed_open
        for result in host.ports:
            if result.key in allowed:
                continue
            if result.state is PortState.OPEN:
                reason = "syn-ack" if result.protocol == "tcp" else result.reason
                violations.append(Violation(result.key, "not open", "open", reason))
            elif result.state is PortState.OPEN_FILTERED:
                unconfirmed.append(
                    Violation(result.key, "not open", result.state.value, result.reason)
                )
    violations.sort(key=lambda v: v.port)
    if host.status is HostStatus.TIMED_OUT and not violations:
        return HostVerdict(
            host.name, None, error=host.error, policy=policy, unconfirmed=tuple(unconfirmed)
        )
    return HostVerdict(
        host.name, not violations, tuple(violations), None, policy, tuple(unconfirmed)
    )


def _reason(host: HostResult, port: int) -> str:
    for result in host.ports:
        if result.key == port:
            return result.reason
    return "conn-refused" if host.state_of(port) is PortState.CLOSED else "not-scanned"


@dataclass(frozen=True, slots=True)
class PolicyBook:
    """A policy file: defaults, groups and hosts, each a mapping of port specs.

    Layers apply in this order, later keys winning: ``defaults``, the host's groups (in file
    order), the host's own entry. A group lists its members under ``hosts``; a host entry may
    name its groups under ``groups``. Hosts are matched by target name or address.
    """

    defaults: Mapping[str, Any]
    groups: Mapping[str, Mapping[str, Any]]
    hosts: Mapping[str, Mapping[str, Any]]

    @property
    def empty(self) -> bool:
        """Whether the file sets nothing."""
        return not (self.defaults or self.groups or self.hosts)

    def layers(
        self, name: str, address: str | None = None, call: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The raw merged policy of one target: ``defaults``, then ``call`` (the expectations
        given with the scan), then the target's groups and its own entry."""
        keys = {name} if address is None else {name, address}
        own = next((self.hosts[k] for k in (name, address) if k and k in self.hosts), {})
        wanted = set(own.get("groups") or ())
        layers: list[Mapping[str, Any] | None] = [self.defaults, call]
        for group, data in self.groups.items():
            if group in wanted or keys & {str(h) for h in data.get("hosts") or ()}:
                layers.append({k: v for k, v in data.items() if k != "hosts"})
        layers.append({k: v for k, v in own.items() if k != "groups"})
        return merge_policies(layers)

    def policy_for(self, name: str, address: str | None = None) -> Policy:
        """The merged policy of one target."""
        return parse_policy(self.layers(name, address), where=f"policy of {name!r}")


def load_policy_file(path: str | os.PathLike[str]) -> PolicyBook:
    """Read and check a YAML policy file; raises ``InputError`` naming what is wrong.

    The file is one YAML document, a mapping; an empty file is refused (``{}`` is the empty
    policy). Keys and names are strings: quote one that YAML reads as a number, boolean or null
    (``"10":``). Nesting, and what aliases expand to, are bounded.
    """
    where = str(path)
    text = read_text(path, "policy file", limit=_MAX_POLICY_BYTES, hint=f"write YAML text, {_EG}")
    data = _load_yaml(text, where)
    if data is None:
        raise InputError(f"policy file {where!r} is empty: give defaults, groups or hosts, {_EG}")
    top = ("defaults", "groups", "hosts")
    if not isinstance(data, Mapping):
        shown = "a list" if isinstance(data, list) else show(data)
        raise InputError(
            f"policy file {where!r}: the document is {shown}, not a mapping; use the top-level "
            f"keys defaults, groups and hosts, {_EG}"
        )
    unknown = sorted(set(data) - set(top))
    if unknown:
        raise InputError(
            f"policy file {where!r}: unknown key {unknown[0]!r}: use the top-level keys "
            f"defaults, groups and hosts, {_EG}"
        )
    if not isinstance(data.get("defaults") or {}, Mapping):
        raise InputError(
            f"policy file {where!r}: defaults must map policy keys to port specs, {_EG}"
        )
    sections: dict[str, Any] = {}
    for section in ("groups", "hosts"):
        value = data.get(section) or {}
        if not isinstance(value, Mapping) or not all(
            isinstance(v, Mapping) for v in value.values()
        ):
            raise InputError(
                f"policy file {where!r}: {section} must map names to settings, "
                f"e.g. '{section}: {{web: {{expect_open: \"443\"}}}}'"
            )
        sections[section] = {str(k): dict(v) for k, v in value.items()}
    sections["hosts"] = _canonical_hosts(sections["hosts"], where)
    for group in sections["groups"].values():
        members = group.get("hosts")
        if isinstance(members, list):  # checked below: names only
            group["hosts"] = [_canonical_name(m) if isinstance(m, str) else m for m in members]
    book = PolicyBook(dict(data.get("defaults") or {}), sections["groups"], sections["hosts"])
    parse_policy(book.defaults, where=f"{where} defaults")
    for name, group in book.groups.items():
        where_group = f"policy file {where!r} group {name!r}"
        _check_names(group.get("hosts"), where_group, "hosts", "[web1, 127.0.0.1]")
        _check_name_items(group.get("hosts"), where_group, "hosts", "[web1, 127.0.0.1]")
        parse_policy(
            {k: v for k, v in group.items() if k != "hosts"}, where=f"{where} group {name!r}"
        )
    for name, host in book.hosts.items():
        where_host = f"policy file {where!r} host {name!r}"
        _check_names(host.get("groups"), where_host, "groups", "[web]")
        _check_name_items(host.get("groups"), where_host, "groups", "[web]")
        missing = [g for g in host.get("groups") or () if g not in book.groups]
        if missing:
            raise InputError(
                f"policy file {where!r} host {name!r}: unknown group {missing[0]!r}: define it "
                f"under groups, e.g. 'groups: {{{missing[0]}: {{expect_open: \"443\"}}}}'"
            )
        parse_policy(
            {k: v for k, v in host.items() if k != "groups"}, where=f"{where} host {name!r}"
        )
    return book


def _canonical_name(name: str) -> str:
    """A host name as targets are matched: an address in its canonical spelling (mapped,
    upper-case and uncompressed ones are one address), a hostname as it is."""
    try:
        return canonical_address(name)
    except ValueError:
        return name


def _canonical_hosts(hosts: dict[str, dict[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    """``hosts`` keyed by canonical names; two spellings of one address are refused."""
    found: dict[str, dict[str, Any]] = {}
    spelt: dict[str, str] = {}
    for name, entry in hosts.items():
        key = _canonical_name(name)
        if key in found:
            raise InputError(
                f"policy file {where!r}: hosts {spelt[key]!r} and {name!r} are the same address "
                f'{key}: give it one entry, e.g. \'hosts: {{"{key}": {{expect_open: "22"}}}}\''
            )
        found[key], spelt[key] = entry, name
    return found


_EG = "e.g. 'defaults: {allowed_open: \"22,443\"}'"
_MAX_POLICY_BYTES = 4 * 2**20  # the pure-Python YAML parser reads about 100 kB a second
_MAX_DEPTH = 32  # nesting levels, counted in nodes from the document; a policy needs 5
_MAX_ALIASED = 100_000  # values that aliases add to the document, all uses counted
# YAML 1.1 reads 0022 as 18, 1:30 as 90 and 0x1bb as 443: refuse numbers not plainly decimal.
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_TAG = "tag:yaml.org,2002:"
_KINDS = {"int": "a number", "float": "a number", "bool": "a boolean", "null": "null",
          "timestamp": "a date"}  # fmt: skip


class _NodeError(Exception):
    """A YAML document refused while it is composed: the line and what is wrong."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _load_yaml(text: str, where: str) -> Any:
    """The one YAML document in ``text``, checked node by node before it is built; None when
    the stream holds no document or a null one."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            # Depth is refused here, before Python's recursion limit is.
            self.depth += 1
            try:
                if self.depth > _MAX_DEPTH:
                    raise _NodeError(
                        cast(Any, self).peek_event().start_mark.line + 1,
                        f"nested more than {_MAX_DEPTH} levels deep; a policy nests a few, "
                        "e.g. 'hosts: {web1: {expect_open: [22]}}'",
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    try:
        loader: Any = Loader(text)  # the event API is untyped
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, where) from None
    try:
        loader.get_event()  # the stream start
        node = None if loader.check_event(yaml.StreamEndEvent) else loader.compose_document()
        if not loader.check_event(yaml.StreamEndEvent):
            raise _NodeError(
                loader.get_event().start_mark.line + 1,
                "a second YAML document; keep one document, a mapping of defaults, groups and "
                f"hosts, {_EG}",
            )
        if node is None:
            return None
        _check_nodes(node, loader)
        return loader.construct_document(node)
    except _NodeError as refused:
        raise InputError(f"policy file {where!r} line {refused.line}: {refused.problem}") from None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, where) from None
    finally:
        loader.dispose()


def _yaml_error(exc: Exception, text: str, where: str) -> InputError:
    import yaml

    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["bad YAML"])[0]
    at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if isinstance(exc, yaml.reader.ReaderError):  # a character the reader refuses
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        at = f"line {line}, column {column}: "
    return InputError(f"policy file {where!r} is not valid YAML: {at}{problem}; {_EG}")


def _check_nodes(root: Any, loader: Any) -> None:
    """Walk the composed document once, without recursion: keys are strings, each once; no
    number means other than it looks; nesting and what aliases add stay bounded."""
    import yaml

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [item for pair in node.value for item in pair]
        return []

    height: dict[int, int] = {}  # node id -> levels below and including it; done nodes
    sizes: dict[int, int] = {}  # node id -> values it expands to
    active: set[int] = set()  # on the current path: seeing one again is a cycle
    aliased = 0
    _check_node(root, loader)
    stack = [(root, iter(children(root)))]
    active.add(id(root))
    while stack:
        node, pending = stack[-1]
        child = next(pending, None)
        if child is None:
            stack.pop()
            active.discard(id(node))
            below = children(node)
            height[id(node)] = 1 + max((height[id(c)] for c in below), default=0)
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in below)
            if height[id(node)] > _MAX_DEPTH:
                raise _NodeError(
                    node.start_mark.line + 1,
                    f"nested more than {_MAX_DEPTH} levels deep through aliases; a policy "
                    "nests a few, e.g. 'hosts: {web1: {expect_open: [22]}}'",
                )
        elif id(child) in active:
            raise _NodeError(
                child.start_mark.line + 1,
                "a value holds an alias of itself (*name inside &name); write the values out "
                "instead",
            )
        elif id(child) in sizes:  # seen before: this is an alias
            aliased += sizes[id(child)]
            if aliased > _MAX_ALIASED:
                raise _NodeError(
                    node.start_mark.line + 1,
                    f"aliases expand the document to more than {_MAX_ALIASED} values; write "
                    "the values out instead",
                )
        else:
            _check_node(child, loader)
            active.add(id(child))
            stack.append((child, iter(children(child))))


def _check_node(node: Any, loader: Any) -> None:
    import yaml

    if isinstance(node, yaml.ScalarNode):
        if node.tag == f"{_TAG}int" and not _DECIMAL.fullmatch(node.value):
            raise _NodeError(
                node.start_mark.line + 1,
                f"YAML reads {node.value} as the number {loader.construct_yaml_int(node)}; "
                "write ports as plain numbers, e.g. 22, or quote the text",
            )
        return
    if not isinstance(node, yaml.MappingNode):
        return
    first: dict[str, int] = {}
    for key, _ in node.value:
        line = key.start_mark.line + 1
        if key.tag == f"{_TAG}merge":  # <<: *defaults
            continue
        if not isinstance(key, yaml.ScalarNode):
            shape = "a list" if isinstance(key, yaml.SequenceNode) else "a mapping"
            raise _NodeError(line, f"{shape} as a key; keys are names, e.g. 'web1:'")
        if key.tag != f"{_TAG}str":
            kind = _KINDS.get(key.tag.removeprefix(_TAG))
            reads = f" (YAML reads it as {kind})" if kind else ""
            text = key.value or "null"
            raise _NodeError(
                line, f"key {text} is not a string{reads}; quote it, e.g. '\"{text}\":'"
            )
        if key.value in first:
            raise _NodeError(
                line,
                f"duplicate key {key.value!r} (first on line {first[key.value]}); give each key "
                "once",
            )
        first[key.value] = line


def _check_name_items(value: Any, where: str, key: str, example: str) -> None:
    # A number or a list among names would be matched by its str(): refuse it.
    for number, item in enumerate(value or (), start=1):
        if not isinstance(item, str):
            fix = (
                f"quote it, e.g. '\"{show(item)}\"'"
                if item is None or isinstance(item, int | float)
                else f"e.g. '{key}: {example}'"
            )
            raise InputError(
                f"{where}: {key} item {number} must be a name (a string), not {show(item)}; {fix}"
            )


def _check_names(value: Any, where: str, key: str, example: str) -> None:
    # A bare string would be iterated letter by letter and silently match nothing.
    if value is not None and not isinstance(value, list):
        raise InputError(
            f"{where}: {key} must be a list of names, not {value!r}, e.g. '{key}: {example}'"
        )
