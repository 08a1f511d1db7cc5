"""A shard's report: the plan it belongs to and where it ran, written beside the scan's JSON.

``where_ran`` is the one function here that looks at the machine (the I/O edge); the rest
only shapes data.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nornir_portscan.audit.gates import Audit
from nornir_portscan.fleet.plan import Plan, Shard, plan_inputs
from nornir_portscan.reports.data import iter_json

__all__ = ["iter_shard_json", "shard_section", "where_ran"]

_MAX_ROUTES = 256  # distinct target addresses whose source address is looked up


def where_ran(addresses: Iterable[str | None] = ()) -> dict[str, Any]:
    """Where this process runs, as audit evidence: the host name, the source addresses the
    kernel picks towards ``addresses`` (the first 256 distinct ones; a UDP ``connect`` sends no
    packet) and the network namespace (the inode of ``/proc/self/ns/net``; None off Linux)."""
    sources: set[str] = set()
    for address in list(dict.fromkeys(a for a in addresses if a and _is_ip(a)))[:_MAX_ROUTES]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with (
            contextlib.suppress(OSError),
            socket.socket(family, socket.SOCK_DGRAM) as sock,
        ):
            sock.connect((address, 9))
            sources.add(str(sock.getsockname()[0]))
    try:
        netns: int | None = Path("/proc/self/ns/net").stat().st_ino
    except OSError:
        netns = None
    return {
        "host": socket.gethostname(),
        "source_addresses": sorted(sources),
        "netns": netns,
    }


def _is_ip(text: str) -> bool:
    """An address literal: a name would be looked up, and lookups may leave the machine."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def shard_section(plan: Plan, shard: Shard, where: Mapping[str, Any]) -> dict[str, Any]:
    """The report's ``shard`` key: which shard of which plan this is, and where it ran."""
    return {
        "plan": plan_inputs(plan),
        "scanner": shard.scanner,
        "vantage": shard.vantage,
        "hosts": len(shard.targets),
        "where": dict(where),
    }


def iter_shard_json(audit: Audit, section: Mapping[str, Any]) -> Iterator[str]:
    """The JSON report (``reports.data.iter_json``) with ``section`` as its ``shard`` key,
    before the hosts."""
    chunks = iter_json(audit)
    head = next(chunks)  # "{\n" and every key but the hosts, each line ending in ",\n"
    yield head + f'  "shard": {json.dumps(section, separators=(", ", ": "))},\n'
    yield from chunks
