"""The matrix groups and the expectations per vantage of merged targets, from policy files.

    file_scopes(targets, common, per_vantage) -> (groups, raw expectations per vantage)

The command line's counterpart of the Ansible inventory (``group_names``, ``portscan_expect_*``
and ``portscan_vantage_policy``): ``common`` is a policy file (``defaults``, ``groups``,
``hosts``) that holds for every vantage, ``per_vantage`` a policy file per vantage whose keys
replace the common ones for that vantage. A target's matrix groups are the groups of these
files it is in (a group's ``hosts`` names it or its address, or its host entry names the
group); a target in none is ``ungrouped``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nornir_portscan.audit.policy import PolicyBook, merge_policies

__all__ = ["book_groups", "file_scopes"]

Raw = dict[str, dict[str | None, dict[str, Any]]]


def book_groups(book: PolicyBook, name: str, address: str | None = None) -> list[str]:
    """The groups of ``book`` that hold the target: by its name or address in a group's
    ``hosts``, or by its host entry's ``groups`` (the rule of ``PolicyBook.layers``)."""
    keys = {name} if address is None else {name, address}
    own = next((book.hosts[k] for k in (name, address) if k and k in book.hosts), {})
    wanted = set(own.get("groups") or ())
    return [
        group
        for group, data in book.groups.items()
        if group in wanted or keys & {str(h) for h in data.get("hosts") or ()}
    ]


def file_scopes(
    targets: Iterable[tuple[str, str | None]],
    common: PolicyBook | None = None,
    per_vantage: Mapping[str, PolicyBook] | None = None,
) -> tuple[dict[str, list[str]], Raw]:
    """The matrix groups and the raw expectations (``{vantage: data}``, ``None`` for every
    vantage not named) of each target ``(name, address)``, the first address of a name."""
    per_vantage = per_vantage or {}
    books = ([common] if common is not None else []) + list(per_vantage.values())
    groups: dict[str, list[str]] = {}
    raw: Raw = {}
    for name, address in targets:
        if name in raw:
            continue
        groups[name] = sorted({g for book in books for g in book_groups(book, name, address)})
        everywhere = common.layers(name, address) if common is not None else {}
        raw[name] = {None: everywhere}
        for vantage, book in per_vantage.items():
            raw[name][vantage] = merge_policies([everywhere, book.layers(name, address)])
    return groups, raw
