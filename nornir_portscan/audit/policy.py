"""Expectations about a host's ports (an exposure policy) and the verdict of a scan against them.

A ``Policy`` holds four port sets, written with the same syntax as ``ports``:

- ``expect_open``: each must be open;
- ``expect_closed``: each must be closed (an RST from the host);
- ``expect_filtered``: each must be filtered (no answer, or an ICMP error);
- ``allowed_open``: every open port not in it is a violation.

Policies layer like inventory data: ``merge_policies(defaults, group, host)`` lets each later
layer replace the keys it sets. The ports a policy expects something of are scanned even when
the scan's ports do not list them (``Policy.ports``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nornir_portscan.errors import InputError
from nornir_portscan.models import HostResult, HostStatus, Policy, PortState
from nornir_portscan.ports import parse_ports

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
]

POLICY_KEYS = ("expect_open", "expect_closed", "expect_filtered", "allowed_open")


@dataclass(frozen=True, slots=True)
class Violation:
    """One port that is not as the policy says.

    ``expected`` is ``open``, ``closed``, ``filtered`` or ``not open`` (an allow-list breach);
    ``actual`` is the state found, or ``not scanned`` when the scan could not tell.
    """

    port: int
    expected: str
    actual: str
    reason: str


@dataclass(frozen=True, slots=True)
class HostVerdict:
    """A host judged against its policy. ``compliant`` is None when the host could not be judged
    (unresolved, timed out, only errors): that counts as an error, not as compliance."""

    name: str
    compliant: bool | None
    violations: tuple[Violation, ...] = ()
    error: str | None = None
    policy: Policy = field(default_factory=Policy)


def parse_policy(data: Mapping[str, Any] | None, *, where: str = "policy") -> Policy:
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
            sets[key] = frozenset(parse_ports(value))
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
                f"{where or 'expectations'}: port {min(both)} is in both {first} and {second}; "
                f"give each port one expected state, e.g. {first}: '22' and {second}: '23'"
            )
    if policy.allowed_open is not None and policy.expect_open - policy.allowed_open:
        port = min(policy.expect_open - policy.allowed_open)
        raise InputError(
            f"{where or 'expectations'}: port {port} is in expect_open but not in allowed_open; "
            f"allow what you expect open, e.g. allowed_open: '{port}'"
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
    if policy.allowed_open is not None:
        violations.extend(
            Violation(port, "not open", "open", "syn-ack")
            for port in host.open_ports
            if port not in policy.allowed_open
        )
    violations.sort(key=lambda v: v.port)
    if host.status is HostStatus.TIMED_OUT and not violations:
        return HostVerdict(host.name, None, error=host.error, policy=policy)
    return HostVerdict(host.name, not violations, tuple(violations), None, policy)


def _reason(host: HostResult, port: int) -> str:
    for result in host.ports:
        if result.port == port:
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
    """Read and check a YAML policy file; raises ``InputError`` naming what is wrong."""
    import yaml

    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"cannot read policy file {where!r}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["bad YAML"])[0]
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise InputError(
            f"policy file {where!r} is not valid YAML: {at}{problem}; "
            "e.g. 'defaults: {allowed_open: \"22,443\"}'"
        ) from None
    data = data or {}
    top = ("defaults", "groups", "hosts")
    unknown = sorted(str(k) for k in set(data) - set(top)) if isinstance(data, Mapping) else []
    if not isinstance(data, Mapping) or unknown:
        raise InputError(
            f"policy file {where!r}: "
            + (f"unknown key {unknown[0]!r}: " if unknown else "")
            + "use the top-level keys defaults, groups and hosts, "
            "e.g. 'defaults: {allowed_open: \"22,443\"}'"
        )
    if not isinstance(data.get("defaults") or {}, Mapping):
        raise InputError(
            f"policy file {where!r}: defaults must map policy keys to port specs, "
            "e.g. 'defaults: {allowed_open: \"22,443\"}'"
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
    book = PolicyBook(dict(data.get("defaults") or {}), sections["groups"], sections["hosts"])
    parse_policy(book.defaults, where=f"{where} defaults")
    for name, group in book.groups.items():
        where_group = f"policy file {where!r} group {name!r}"
        _check_names(group.get("hosts"), where_group, "hosts", "[web1, 127.0.0.1]")
        parse_policy(
            {k: v for k, v in group.items() if k != "hosts"}, where=f"{where} group {name!r}"
        )
    for name, host in book.hosts.items():
        _check_names(host.get("groups"), f"policy file {where!r} host {name!r}", "groups", "[web]")
        missing = [str(g) for g in host.get("groups") or () if str(g) not in book.groups]
        if missing:
            raise InputError(
                f"policy file {where!r} host {name!r}: unknown group {missing[0]!r}: define it "
                f"under groups, e.g. 'groups: {{{missing[0]}: {{expect_open: \"443\"}}}}'"
            )
        parse_policy(
            {k: v for k, v in host.items() if k != "groups"}, where=f"{where} host {name!r}"
        )
    return book


def _check_names(value: Any, where: str, key: str, example: str) -> None:
    # A bare string would be iterated letter by letter and silently match nothing.
    if value is not None and not isinstance(value, list):
        raise InputError(
            f"{where}: {key} must be a list of names, not {value!r}, e.g. '{key}: {example}'"
        )
