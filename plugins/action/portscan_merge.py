# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Controller side of ``nornir_portscan.portscan.portscan_merge``: keep each scanner's shard
report in the plan's directory, merge them all (those of earlier runs too) and fail the task,
after writing the merged report, when some shard did not report in full."""

from __future__ import annotations

import json
import shutil

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.nornir_portscan.portscan.plugins.module_utils import (
    portscan_fleet as fleet)
from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import port_counts

ARGUMENT_SPEC = {
    "plan": {"type": "dict", "required": True},
    "results_var": {"type": "str", "default": fleet.RESULT_VAR},
    "report": {"type": "path"},
    "page": {"type": "path"},
    "matrix_groups": {"type": "list", "elements": "str"},
    "baseline": {"type": "path"},
    "rechecks_var": {"type": "str"},
    "fail_on_violation": {"type": "bool", "default": False},
}


def _plain(value):
    """Ansible's tagged strings and lazy containers as plain JSON data."""
    return json.loads(json.dumps(value, default=str))


def _why(result):
    """One line for a scanner's failed task."""
    lines = str(result.get("msg") or "the task failed").strip().splitlines() or [""]
    said = str(result.get("module_stderr") or "").strip().splitlines()
    rc = result.get("rc")
    return (lines[0] + (f"; stderr: {said[-1]}" if said else "")
            + (f" (rc {rc})" if rc not in (None, 0) else ""))


def _keep_reports(plan, path, hostvars, results_var):
    """Keep each shard report the scanners returned now; ``{scanner: why}`` of those that
    failed."""
    failed = {}
    for shard in plan.shards:
        got = hostvars[shard.scanner].get(results_var) if shard.scanner in hostvars else None
        if not isinstance(got, dict) or got.get("skipped"):
            continue  # not run now: its kept report, or none (unreachable)
        report = got.get("report")
        if isinstance(report, dict) and not got.get("failed"):
            shard_of = report.get("shard") or {}
            if (shard_of.get("scanner") == shard.scanner
                    and (shard_of.get("plan") or {}).get("hash") == plan.hash):
                fleet.write_json(fleet.shard_path(path, shard.scanner), report)
                continue
            failed[shard.scanner] = "its report is of another shard or plan"
        elif got.get("failed"):
            failed[shard.scanner] = _why(got)
    return failed


def _judged(plan, merged, hostvars, args, protocol="tcp"):
    """The merged report's data, judged against each target's expectations per vantage, with
    its reachability matrix by the targets' inventory groups and, with a baseline, its drift
    per vantage (confirmed by the re-checks in ``rechecks_var``, when given)."""
    wanted = (fleet.VANTAGE_POLICY_VAR, *fleet.POLICY_VARS.values())
    policies, groups = {}, {}
    for target in plan.targets:
        host = hostvars.get(target.name) or {}
        own = {k: _plain(host[k]) for k in wanted if k in host}
        policies[target.name] = fleet.vantage_policies(own, target.name, protocol)
        groups[target.name] = fleet.target_groups(_plain(host.get("group_names") or []),
                                                  args["matrix_groups"])
    parsed = fleet.parsed_policies(policies)
    matrix = fleet.matrix_of(merged, groups, parsed)
    data = fleet.judged(merged.to_dict(matrix=matrix), merged, policies, parsed)
    if not args["baseline"]:
        return data
    answers = None
    if args["rechecks_var"]:
        answers = {s.scanner: fleet.recheck_rounds(_plain(hostvars[s.scanner].get(
            args["rechecks_var"]))) for s in plan.shards if s.scanner in hostvars}
    return fleet.with_drift(data, merged, args["baseline"], parsed, answers)


def _drift_failure(drift):
    """Why the confirmed drift fails the task, or None: hosts or vantages that appeared or
    disappeared, changes no re-check from their vantage could answer."""
    said = [*(f"appeared: {h}" for h in drift["appeared"]),
            *(f"disappeared: {h}" for h in drift["disappeared"])]
    said += [f"not re-checked from {u['vantage'] or '-'} (no answer): {u['name']} ports "
             + ",".join(map(str, u["ports"])) for u in drift["unchecked"]]
    return ("drift since the baseline: " + "; ".join(said)) if said else None


class ActionModule(ActionBase):
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        if fleet.ENGINE_ERROR:
            raise AnsibleActionFail(fleet.ENGINE_ERROR)
        given = args["plan"]
        try:
            plan = fleet.plan_from_dict(given["plan"], "plan")
            path = str(given["directory"])
            protocol = given.get("protocol", "tcp")  # a plan of before the option: tcp
            if protocol not in ("tcp", "udp", "both"):
                raise fleet.InputError(f"protocol {protocol!r} is not tcp, udp or both")
        except (KeyError, TypeError, fleet.InputError) as exc:
            raise AnsibleActionFail(
                f"plan is not what portscan_plan returned ({exc}): register its result and "
                "pass it whole, e.g. plan: '{{ plan }}'") from None
        try:
            if args["page"]:
                fleet.check_page(args["page"])
        except fleet.InputError as exc:
            raise AnsibleActionFail(f"page: {exc}") from None
        hostvars = task_vars["hostvars"]
        failed = _keep_reports(plan, path, hostvars, args["results_var"])
        try:
            merged, failure = fleet.merge_directory(path, plan, failed)
            data = _judged(plan, merged, hostvars, args, protocol)
        except (fleet.InputError, fleet.FleetError) as exc:
            raise AnsibleActionFail(str(exc)) from None
        merged_path = f"{path}/merged.json"
        fleet.write_json(merged_path, data)
        reports = [merged_path]
        if args["report"]:
            shutil.copyfile(merged_path, args["report"])
            reports.append(args["report"])
        if args["page"]:
            try:
                fleet.write_page(args["page"], data)
            except fleet.PortscanError as exc:
                raise AnsibleActionFail(f"page: {exc}") from None
            reports.append(args["page"])
        summary = data["summary"]
        result.update(data, changed=False, reports=reports, msg=failure or (
            f"plan {plan.hash[:12]}: {summary['hosts']} hosts from {summary['shards']} shards, "
            f"{port_counts(summary)}"))
        if not failure and args["fail_on_violation"] and data["failed_hosts"]:
            failure = (f"{len(data['failed_hosts'])} of {len(data['hosts'])} hosts did not "
                       "pass: " + " | ".join(h["failure"] for h in data["hosts"]
                                             if not h["passed"]))
            result["msg"] = failure
        drift = data.get("drift") or {}
        if not failure and args["fail_on_violation"] and drift.get("confirming"):
            failure = _drift_failure(drift)
            result["msg"] = failure or result["msg"]
        if failure:
            result["failed"] = True
        return result
