"""From what a front door was given to one validated ``ScanRequest``: targets (with their own
ports and expectations), ports, scope (exclusions, the host limit) and scan options.

Every front door builds its request here, so a setting means the same through the CLI, the
Python API, the Nornir task and the Ansible module. The layers of a target's expectations, later
keys winning: the policy file's ``defaults``, the call's own (``expect_open=`` ...), the policy
file's groups and host entry for the target, then the target's own (a dict target's keys, an
inventory host's variables).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from nornir_portscan.audit.gates import with_policy
from nornir_portscan.audit.policy import POLICY_KEYS, PolicyBook, parse_policy
from nornir_portscan.errors import InputError, OptionError, TargetSpecError
from nornir_portscan.models import (
    NO_POLICY,
    AddressFamily,
    Policy,
    ScanOptions,
    ScanRequest,
    Target,
)
from nornir_portscan.ports import parse_ports
from nornir_portscan.targets import DEFAULT_MAX_HOSTS, parse_targets

__all__ = ["TargetSpec", "build_request"]

PortsSpec = str | Sequence[int | str]
_EXAMPLE = "e.g. name 'web1', address '127.0.0.11', ports '22,443'"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A named host (an inventory host, a dict target): one address or hostname, optionally its
    own ports and its own expectations (keys of ``POLICY_KEYS`` it sets, each replacing the
    call's)."""

    name: str
    address: str | None = None  # an IP literal or a hostname; defaults to ``name``
    ports: PortsSpec | None = None
    policy: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TargetSpecError(
                f"invalid target name {self.name!r}: a named target needs a name (a string), "
                f"{_EXAMPLE}"
            )
        if self.address is not None and not isinstance(self.address, str):
            raise TargetSpecError(
                f"invalid address {self.address!r} of target {self.name!r}: give a string, "
                f"{_EXAMPLE}"
            )
        if self.policy is not None and not isinstance(self.policy, Mapping):
            raise TargetSpecError(
                f"invalid policy {self.policy!r} of target {self.name!r}: give a mapping, "
                "e.g. {'expect_open': '443'}"
            )


def build_request(
    targets: str | TargetSpec | Iterable[str | TargetSpec],
    ports: PortsSpec = "top1000",
    *,
    exclude: Iterable[str] = (),
    exclude_ports: PortsSpec | None = None,
    target_files: Iterable[str | os.PathLike[str]] = (),
    family: AddressFamily = "ipv4",
    max_hosts: int = DEFAULT_MAX_HOSTS,
    policy: Mapping[str, Any] | None = None,
    policy_book: PolicyBook | None = None,
    allow_empty: bool = False,
    protocol: str = "tcp",
    **options: Any,
) -> ScanRequest:
    """Parse and validate everything a scan needs; raises an ``InputError`` on bad input.

    ``targets`` are target specifications (addresses, ranges, CIDR blocks, hostnames) or
    ``TargetSpec`` objects (one string or TargetSpec alone is one spec, as for ``exclude``);
    ``exclude`` and ``max_hosts`` hold for both. ``policy`` is the
    call's expectations for every target, ``policy_book`` a policy file
    (``audit.policy.load_policy_file``); ``options`` are the fields of ``ScanOptions``. With
    ``allow_empty``, exclusions that remove every target give a request of no targets.
    ``protocol`` (``tcp``, ``udp`` or ``both``) is what a port without a ``T:`` or ``U:``
    qualifier is, in every port list: ``ports``, ``exclude_ports``, the targets' own and every
    expectation (``ports.parse_ports``).

    >>> request = build_request(["127.0.0.1"], "22,80", expect_open="22")  # doctest: +SKIP
    """
    known = {f.name for f in fields(ScanOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionError(f"unknown option {unknown[0]!r}: use one of {', '.join(sorted(known))}")
    scan_options = ScanOptions(**options)
    if isinstance(targets, str | TargetSpec):
        targets = [targets]  # one spec, as for exclude and parse_targets
    if isinstance(targets, bytes) or not isinstance(targets, Iterable):
        raise TargetSpecError(
            f"invalid targets {targets!r}: give a list of targets, e.g. ['127.0.0.1']"
        )
    if isinstance(exclude, str):
        exclude = [exclude]
    default_ports = parse_ports(ports, exclude=exclude_ports, protocol=protocol)
    layers = _Layers(policy, policy_book, protocol)
    plain: list[str] = []
    named: list[Target] = []
    parsed: dict[Any, tuple[int, ...]] = {}  # inventories repeat the same few port specs
    for item in targets:
        if isinstance(item, TargetSpec):
            named.append(_template(item, default_ports, exclude_ports, parsed, layers, protocol))
        elif isinstance(item, str):
            plain.append(item)
        else:
            raise TargetSpecError(
                f"invalid target {item!r}: give a string or a TargetSpec, e.g. '127.0.0.1'"
            )
    resolved = parse_targets(
        plain,
        exclude=exclude,
        files=target_files,
        family=family,
        max_hosts=max_hosts,
        hosts=named,
        allow_empty=allow_empty,
    )
    found = []
    for target in resolved:
        if target.policy is NO_POLICY and not layers.empty:
            target = with_policy(  # noqa: PLW2901 - the same target, with its policy
                target, layers.policy(target.name, target.address), default_ports
            )
        found.append(target)
    return ScanRequest(tuple(found), default_ports, scan_options)


def _template(
    spec: TargetSpec,
    default_ports: tuple[int, ...],
    exclude_ports: Any,
    parsed: dict[Any, tuple[int, ...]],
    layers: _Layers,
    protocol: str,
) -> Target:
    """The Target of a TargetSpec before resolution: its own ports and its whole policy."""
    own: tuple[int, ...] = ()
    if spec.ports is not None:  # "" or []: no ports at all, which parse_ports refuses
        key = spec.ports if isinstance(spec.ports, str) else repr(spec.ports)
        if key not in parsed:
            try:
                parsed[key] = parse_ports(spec.ports, exclude=exclude_ports, protocol=protocol)
            except InputError as exc:  # the parser does not know whose ports they are
                raise type(exc)(f"ports of target {spec.name!r}: {exc}") from None
        own = parsed[key]
    template = Target(spec.name, spec.address or spec.name, own)
    policy = layers.policy(spec.name, spec.address, spec.policy)
    return template if not policy else with_policy(template, policy, default_ports)


class _Layers:
    """The layers of every target's expectations; each distinct mix is parsed once."""

    def __init__(
        self, call: Mapping[str, Any] | None, book: PolicyBook | None, protocol: str
    ) -> None:
        call = {k: v for k, v in (call or {}).items() if v is not None}
        unknown = sorted(set(call) - set(POLICY_KEYS))
        if unknown:
            raise OptionError(
                f"unknown expectation {unknown[0]!r}: use {', '.join(POLICY_KEYS)}, "
                "e.g. expect_open='22,443'"
            )
        parse_policy(call, where="", protocol=protocol)  # the call's: its errors name no host
        self.protocol = protocol
        self.call = call
        self.book = book
        self.empty = not call and (book is None or book.empty)
        self._cache: dict[str, Policy] = {}

    def policy(
        self, name: str, address: str | None, own: Mapping[str, Any] | None = None
    ) -> Policy:
        if self.empty and not own:
            return NO_POLICY
        raw = (
            self.book.layers(name, address, self.call) if self.book is not None else dict(self.call)
        )
        if own:
            raw.update(own)
        key = repr(sorted(raw.items()))
        if key not in self._cache:
            self._cache[key] = parse_policy(
                raw, where=f"policy of {name!r}", protocol=self.protocol
            )
        return self._cache[key]
