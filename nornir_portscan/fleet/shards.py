"""``--shard i/n``: one machine's part of a job, chosen so that n machines cover it once.

The shards of a job are the plan of its expanded targets for n scanners named ``0`` .. ``n-1``
in one vantage: the same rendezvous hashing, the same plan hash in every shard's report, so
``merge_reports`` finds a shard that is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from nornir_portscan.errors import OptionError
from nornir_portscan.fleet.plan import FleetTarget, HostKey, Plan, Scanner, Shard, build_plan
from nornir_portscan.pipeline import Job

__all__ = ["MAX_SHARDS", "parse_shard", "shard_hosts", "shard_job"]

MAX_SHARDS = 4096
_FORM = re.compile(r"([0-9]{1,6})/([0-9]{1,6})")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` as ``(i, n)``; raises ``OptionError`` (one line) for anything else.

    >>> parse_shard("1/3")
    (1, 3)
    """
    found = _FORM.fullmatch(text.strip())
    if found is None:
        raise OptionError(
            f"invalid shard {text!r}: use INDEX/COUNT, counting from 0, e.g. '0/2' and '1/2'"
        )
    index, count = int(found[1]), int(found[2])
    if not 1 <= count <= MAX_SHARDS:
        raise OptionError(
            f"invalid shard {text!r}: the count must be 1 to {MAX_SHARDS}, e.g. '0/2'"
        )
    if index >= count:
        raise OptionError(
            f"invalid shard {text!r}: the index counts from 0 and must be below the count "
            f"{count}, e.g. '{count - 1}/{count}'"
        )
    return index, count


def shard_job(job: Job, index: int, count: int) -> tuple[Job, Plan, Shard]:
    """The part of ``job`` shard ``index`` of ``count`` scans, the plan of all shards and its
    shard. A baseline keeps only this shard's hosts, so the others do not count as gone."""
    request = job.request
    plan = build_plan(
        [Scanner(str(i)) for i in range(count)],
        [FleetTarget(t.name, t.address, t.ports) for t in request.targets],
        request.ports,
        options=request.options,
    )
    shard = plan.shard(str(index))
    mine = {a.key for a in shard.targets}
    targets = tuple(t for t in request.targets if (t.name, t.address) in mine)
    audit = job.audit
    if audit.baseline is not None:
        addresses = {address for _, address in mine}
        hosts = [
            h
            for h in audit.baseline["hosts"]
            if (h["name"], h.get("address")) in mine or h.get("address") in addresses
        ]
        audit = replace(audit, baseline={**audit.baseline, "hosts": hosts})
    return replace(job, request=replace(request, targets=targets), audit=audit), plan, shard


def shard_hosts(hosts: Iterable[HostKey], index: int, count: int) -> frozenset[HostKey]:
    """The hosts, as ``(name, address)``, that shard ``index`` of ``count`` of ``hosts`` scans:
    those ``--shard index/count`` scans of the same targets (a Nornir inventory's filter).

    >>> sorted(shard_hosts([("a", "127.0.0.1"), ("b", "127.0.0.2")], 0, 1))
    [('a', '127.0.0.1'), ('b', '127.0.0.2')]
    """
    scanners = [Scanner(str(i)) for i in range(count)]
    plan = build_plan(scanners, [FleetTarget(n, a) for n, a in dict.fromkeys(hosts)], "1")
    return frozenset(a.key for a in plan.shard(str(index)).targets)
