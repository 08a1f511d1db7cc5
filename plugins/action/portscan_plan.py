# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Controller side of ``nornir_portscan.portscan.portscan_plan``: the fleet plan from the
inventory, computed here once, and what a re-run of the same plan still has to scan."""

from __future__ import annotations

import json
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.nornir_portscan.portscan.plugins.module_utils import (
    portscan_fleet as fleet)

ARGUMENT_SPEC = {
    "scanners_group": {"type": "str", "default": fleet.SCANNERS_GROUP},
    "targets_group": {"type": "str", "default": fleet.TARGETS_GROUP},
    "shards": {"type": "int"},
    "ports": {"type": "raw", "default": "top1000"},
    "protocol": {"type": "str", "choices": ["tcp", "udp", "both"], "default": "tcp"},
    "timeout": {"type": "raw"},
    "min_timeout": {"type": "raw"},
    "adaptive": {"type": "bool"},
    "retries": {"type": "raw"},
    "rate": {"type": "raw"},
    "host_concurrency": {"type": "raw"},
    "host_timeout": {"type": "raw"},
    "include_closed": {"type": "bool"},
    "split_ports": {"type": "bool", "default": False},
    "directory": {"type": "path"},
    "resume": {"type": "bool", "default": True},
}


def _plain(value):
    """Ansible's tagged strings and lazy containers as plain JSON data."""
    return json.loads(json.dumps(value, default=str))


def _known(host, names):
    """The variables ``names`` a host sets (``hostvars[name]`` once: each look-up of it
    gathers all its variables anew)."""
    return {k: _plain(host[k]) for k in names if k in host}


class ActionModule(ActionBase):
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        if fleet.ENGINE_ERROR:
            raise AnsibleActionFail(fleet.ENGINE_ERROR)
        groups = task_vars.get("groups") or {}
        hostvars = task_vars["hostvars"]
        names = {}
        shards = args["shards"]
        from nornir_portscan.fleet.shards import MAX_SHARDS  # the engine is there (above)

        if shards is not None and not 1 <= shards <= MAX_SHARDS:
            raise AnsibleActionFail(
                f"invalid shards {shards!r}: the count must be 1 to {MAX_SHARDS}, e.g. 2")
        for role in ("scanners", "targets") if shards is None else ("targets",):
            group = args[f"{role}_group"]
            if not groups.get(group):
                raise AnsibleActionFail(
                    f"no {role}: the inventory group {group!r} has no hosts; put the "
                    f"{role} in it, or name another group with {role}_group")
            names[role] = list(groups[group])
        if shards is None:
            scanners = [(n, _plain(hostvars[n].get(fleet.VANTAGE_VAR)))
                        for n in names["scanners"]]
        else:  # the plan of portscan --shard I/N
            scanners = [(str(i), None) for i in range(shards)]
        wanted = ("ansible_host", fleet.PORTS_VAR, fleet.VANTAGES_VAR, fleet.VANTAGE_POLICY_VAR,
                  *fleet.POLICY_VARS.values())
        targets = [(n, _known(hostvars[n], wanted)) for n in names["targets"]]
        options = {k: args[k] for k in fleet.PLAN_OPTIONS}
        try:
            plan = fleet.inventory_plan(scanners, targets, _plain(args["ports"]), options,
                                        args["split_ports"], args["protocol"])
        except fleet.FleetError as exc:
            raise AnsibleActionFail(str(exc)) from None
        directory = args["directory"] or str(
            Path(str(task_vars.get("playbook_dir") or ".")) / "portscan-runs")
        path = fleet.plan_directory(directory, plan)
        warnings = []
        kept = fleet.kept_reports(path, plan, warnings.append) if args["resume"] else {}
        to_scan = fleet.to_scan(plan, kept)
        hosts = sum(len(s.targets) for s in plan.shards)
        result.update(
            changed=False, hash=plan.hash, directory=path, plan=fleet.plan_inputs(plan),
            protocol=args["protocol"],  # for portscan_merge: how the expectations read
            to_scan=to_scan, kept=sorted(set(kept) - set(to_scan)),
            shards={s.scanner: {"vantage": s.vantage, "hosts": [a.name for a in s.targets]}
                    for s in plan.shards},
            msg=(f"plan {plan.hash}: {len(plan.targets)} targets, {hosts} host scans by "
                 f"{len(plan.scanners)} scanners; {len(to_scan)} shards to scan"
                 + (f", {len(plan.shards) - len(to_scan)} kept from an earlier run"
                    if len(to_scan) < len(plan.shards) else "")))
        if warnings:
            result["warnings"] = warnings
        return result
