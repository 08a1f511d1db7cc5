"""Scans shared by many scanners and many vantages: the plan, the merge and the resume.

    build_plan(scanners, targets, ports) -> Plan (a Shard per scanner, a hash of its inputs)
    each scanner scans its Shard -> a JSON report with a ``shard`` section (iter_shard_json)
    merge_reports(reports) -> MergedReport (a host per target and vantage)
    missing_shards(plan, reports) -> the shards a re-run of the same plan must scan
    parse_shard("1/4"), shard_job(job, 1, 4), shard_hosts(keys, 1, 4) -> ``--shard 1/4``

All of it is pure but ``where_ran`` (where a shard ran) and ``load_report`` (a file).
See docs/distributed.md.
"""

from nornir_portscan.fleet.evidence import iter_shard_json, shard_section, where_ran
from nornir_portscan.fleet.merge import (
    Conflict,
    MergedHost,
    MergedPort,
    MergedReport,
    ShardRun,
    load_report,
    merge_reports,
    missing_shards,
)
from nornir_portscan.fleet.plan import (
    Assignment,
    FleetTarget,
    Plan,
    Scanner,
    Shard,
    build_plan,
    plan_from_dict,
    plan_inputs,
    rendezvous,
)
from nornir_portscan.fleet.shards import parse_shard, shard_hosts, shard_job

__all__ = [
    "Assignment",
    "Conflict",
    "FleetTarget",
    "MergedHost",
    "MergedPort",
    "MergedReport",
    "Plan",
    "Scanner",
    "Shard",
    "ShardRun",
    "build_plan",
    "iter_shard_json",
    "load_report",
    "merge_reports",
    "missing_shards",
    "parse_shard",
    "plan_from_dict",
    "plan_inputs",
    "rendezvous",
    "shard_hosts",
    "shard_job",
    "shard_section",
    "where_ran",
]
