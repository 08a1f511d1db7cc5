"""Scans shared by many scanners and many vantages: the plan, the merge and the resume.

    build_plan(scanners, targets, ports) -> Plan (a Shard per scanner, a hash of its inputs)
    each scanner scans its Shard -> a JSON report with a ``shard`` section (iter_shard_json)
    merge_reports(reports) -> MergedReport (a host per target and vantage)
    missing_shards(plan, reports) -> the shards a re-run of the same plan must scan
    parse_shard("1/4"), shard_job(job, 1, 4), shard_hosts(keys, 1, 4) -> ``--shard 1/4``
    merge_failure(merged) -> why the merge is not complete (one line), render_merged -> a table
    reachability_matrix(merged, groups, policies) -> Matrix (a Cell per vantage, group, ports)
    judge_merged(merged, policies) -> a Judgement per (target, vantage); policy_for, port_verdict
    merged_drift(baseline, merged) -> Drift per (target, vantage); rechecks(drift, merged) ->
        the Rechecks each scanner probes from its vantage; confirm_rechecks, drift_section
    judged(data, merged, raw, policies), with_drift(data, merged, baseline) -> the merged JSON
        every door writes: verdicts per (target, vantage), drift per vantage
    file_scopes(targets, policy_file, per_vantage) -> a CLI merge's groups and expectations

All of it is pure but ``where_ran`` (where a shard ran) and ``load_report`` (a file).
See docs/distributed.md.
"""

from nornir_portscan.fleet.baseline import (
    Recheck,
    confirm_rechecks,
    drift_section,
    merged_drift,
    rechecks,
    with_drift,
)
from nornir_portscan.fleet.evidence import iter_shard_json, shard_section, where_ran
from nornir_portscan.fleet.matrix import UNGROUPED, Cell, Matrix, reachability_matrix
from nornir_portscan.fleet.merge import (
    Conflict,
    MergedHost,
    MergedPort,
    MergedReport,
    ShardRun,
    load_report,
    merge_failure,
    merge_reports,
    missing_shards,
    render_merged,
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
from nornir_portscan.fleet.scopes import book_groups, file_scopes
from nornir_portscan.fleet.shards import parse_shard, shard_hosts, shard_job
from nornir_portscan.fleet.verdicts import (
    Judgement,
    judge_merged,
    judged,
    parse_scoped,
    policy_for,
    port_verdict,
)

__all__ = [
    "UNGROUPED",
    "Assignment",
    "Cell",
    "Conflict",
    "FleetTarget",
    "Judgement",
    "Matrix",
    "MergedHost",
    "MergedPort",
    "MergedReport",
    "Plan",
    "Recheck",
    "Scanner",
    "Shard",
    "ShardRun",
    "book_groups",
    "build_plan",
    "confirm_rechecks",
    "drift_section",
    "file_scopes",
    "iter_shard_json",
    "judge_merged",
    "judged",
    "load_report",
    "merge_failure",
    "merge_reports",
    "merged_drift",
    "missing_shards",
    "parse_scoped",
    "parse_shard",
    "plan_from_dict",
    "plan_inputs",
    "policy_for",
    "port_verdict",
    "reachability_matrix",
    "rechecks",
    "render_merged",
    "rendezvous",
    "shard_hosts",
    "shard_job",
    "shard_section",
    "where_ran",
    "with_drift",
]
