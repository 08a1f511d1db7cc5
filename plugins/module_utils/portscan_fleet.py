# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The fleet modules' shared code: the plan from an inventory, a scanner's shard, the merge.

``portscan_plan`` and ``portscan_merge`` run it on the controller (their action plugins);
``portscan_shard`` runs ``scan_shard`` on each scanner. The pure core is ``nornir_portscan.fleet``
(docs/distributed.md); this module only maps Ansible's inventory and files onto it.

State on the controller: ``DIRECTORY/PLAN_HASH/`` holds ``plan.json``, ``shards/SCANNER.json``
(one shard report per scanner, as the scanner returned it) and ``merged.json``. A re-run of the
same plan finds the shards already reported there and scans only the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import traceback
from pathlib import Path
from urllib.parse import quote

ENGINE_TRACEBACK = None
try:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import (
        ENGINE_ERROR)
except ImportError:  # pragma: no cover - the collection itself is broken
    ENGINE_ERROR = "the collection's module_utils cannot be imported"
if ENGINE_ERROR is None:
    try:
        from nornir_portscan import InputError, PortscanError, ScanOptions, TargetSpec, scan
        from nornir_portscan.fleet import (
            FleetTarget, Scanner, build_plan, iter_shard_json, load_report, merge_reports,
            missing_shards, plan_from_dict, plan_inputs, shard_section, where_ran)
        from nornir_portscan.audit.drift import load_baseline
        from nornir_portscan.fleet.baseline import with_drift as fleet_with_drift
        from nornir_portscan.fleet.matrix import reachability_matrix
        from nornir_portscan.fleet.verdicts import judged as fleet_judged, parse_scoped
        from nornir_portscan.fleet.merge import merge_failure
        from nornir_portscan.reports.files import page_format
        from nornir_portscan.reports.pages import iter_merged_html, iter_merged_markdown
        from nornir_portscan.reports.writer import check_destination, write_atomic
        from nornir_portscan.audit.policy import merge_policies, parse_policy
        from nornir_portscan.pipeline import build_job, number, run_job
        from nornir_portscan.ports import format_ports, parse_ports
    except ImportError as exc:
        ENGINE_TRACEBACK = traceback.format_exc()
        ENGINE_ERROR = f"the nornir-portscan engine cannot be imported: {exc}"

SCANNERS_GROUP = "portscan_scanners"
TARGETS_GROUP = "portscan_targets"
VANTAGE_VAR = "portscan_vantage"
VANTAGES_VAR = "portscan_vantages"
PORTS_VAR = "portscan_ports"
RESULT_VAR = "portscan_shard"
VANTAGE_POLICY_VAR = "portscan_vantage_policy"
EXPECTATIONS = ("expect_open", "expect_closed", "expect_filtered", "allowed_open")
POLICY_VARS = {key: f"portscan_{key}" for key in EXPECTATIONS}
# plan options: part of the plan's hash (processes and concurrency are each scanner's own)
PLAN_OPTIONS = ("timeout", "min_timeout", "adaptive", "retries", "rate", "host_concurrency",
                "host_timeout", "include_closed")


class FleetError(Exception):
    """The task fails with this one-line message."""


def _vantages(value, host):
    if value in (None, "", []):
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise FleetError(f"invalid {VANTAGES_VAR} {value!r} of host {host!r}: give a list of "
                         "vantage labels, e.g. [users, cardholder]")
    return tuple(str(v) for v in value)


def qualified(spec, protocol="tcp"):
    """A port spec as it reads whatever parses it: with ``protocol`` udp or both, each port
    without ``T:`` or ``U:`` made that protocol's (``53`` -> ``U:53``); as it is for tcp."""
    spec = _port_spec(spec)
    if protocol == "tcp" or spec in (None, "", []):
        return spec
    return format_ports(sorted(parse_ports(spec, protocol=protocol)), qualified=True)


def inventory_plan(scanners, targets, ports, options, split_ports=False, protocol="tcp"):
    """The plan of ``scanners`` (``[(name, vantage)]``) scanning ``targets`` (``[(name, vars)]``,
    vars holding ``ansible_host``, ``portscan_ports``, ``portscan_vantages``); ``protocol`` is
    what a port without ``T:`` or ``U:`` is, in ``ports`` and the targets' ports and
    expectations."""
    try:
        settings = ScanOptions(**{k: number(v) for k, v in options.items() if v is not None})
        fleet = [Scanner(str(name), None if vantage in (None, "") else str(vantage))
                 for name, vantage in scanners]
        ports = qualified(ports, protocol)
        hosts = []
        for name, host in targets:
            try:
                own = qualified(host.get(PORTS_VAR), protocol)
            except InputError as exc:
                raise FleetError(f"{PORTS_VAR} of target {name!r}: {exc}") from None
            wanted = policy_ports(host, name, protocol)
            scanned = set(parse_ports(own or ports))
            if wanted - scanned:  # the expectations' ports are scanned too, from every vantage
                own = format_ports(sorted(scanned | wanted))
            hosts.append(FleetTarget(
                str(name), str(host.get("ansible_host") or name),
                own if own not in (None, "", []) else (),
                _vantages(host.get(VANTAGES_VAR), name)))
        return build_plan(fleet, hosts, ports, options=settings, split_ports=split_ports)
    except (InputError, ValueError) as exc:
        raise FleetError(str(exc)) from None


def plan_directory(directory, plan):
    """``DIRECTORY/PLAN_HASH``, made with the plan file in it."""
    path = Path(directory) / plan.hash
    (path / "shards").mkdir(parents=True, exist_ok=True)
    write_json(path / "plan.json", plan_inputs(plan))
    return str(path)


def write_json(path, data):
    """Write ``data`` as JSON to ``path`` atomically (a temporary file renamed over it)."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=".portscan-", suffix=".json")
    temporary = Path(name)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(data, out)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def shard_path(path, scanner):
    """The kept report of ``scanner``'s shard; its name quoted, so that no inventory name
    (``../x``, ``a/b``) leads out of the plan's directory."""
    return str(Path(path) / "shards" / f"{quote(scanner, safe='')}.json")


def kept_reports(path, plan, warn=None):
    """``{scanner: report}`` of the shard reports kept in the plan's directory; a file that is
    not a report of this plan is left out (and named through ``warn``): its shard is scanned
    again."""
    found = {}
    for shard in plan.shards:
        file = shard_path(path, shard.scanner)
        if not Path(file).exists():
            continue
        try:
            report = load_report(file)
            merge_reports([report], plan=plan)  # checks that it is a shard of this plan
        except InputError as exc:
            if warn is not None:
                warn(f"{exc}; shard {shard.scanner!r} is scanned again")
            continue
        found[shard.scanner] = report
    return found


def to_scan(plan, kept):
    """The scanners whose shards have no full report yet (all of them on the first run)."""
    return [s.scanner for s in missing_shards(plan, list(kept.values())) if s.targets]


def _keys_spec(keys):
    """Port keys as a spec the engine reads back (UDP keys are not port numbers)."""
    return format_ports(sorted(keys), qualified=True) if keys else list(keys)


def scan_shard(plan_data, scanner, processes=None, concurrency=None):
    """Scan ``scanner``'s shard of the plan ``plan_data`` (``plan_inputs``) on this machine;
    return its JSON report (with its ``shard`` section). ``processes`` and ``concurrency``
    are this machine's own (None: one worker per CPU, the default concurrency)."""
    try:
        plan = plan_from_dict(plan_data)
        shard = plan.shard(scanner)
        options = dataclasses.asdict(plan.options)
        options.update(processes=number(processes) if processes is not None else None)
        if concurrency is not None:
            options["concurrency"] = number(concurrency)
        job = build_job(
            [TargetSpec(a.name, a.address, _keys_spec(a.ports)) for a in shard.targets],
            _keys_spec(plan.ports), allow_empty=True, **options)
    except (InputError, ValueError) as exc:
        raise FleetError(str(exc)) from None
    try:
        audit = run_job(job, scanner=scan)
    except PortscanError as exc:
        raise FleetError(str(exc)) from None
    where = where_ran(a.address for a in shard.targets)
    report = json.loads("".join(iter_shard_json(audit, shard_section(plan, shard, where))))
    return plan, report


def merge_directory(path, plan, failed):
    """Merge the plan's kept shard reports; ``failed`` maps scanners to why they failed."""
    kept = kept_reports(path, plan)
    files = [shard_path(path, name) for name in kept]
    merged = merge_reports(list(kept.values()), plan=plan, failed=failed or None, sources=files)
    return merged, merge_failure(merged)


def target_groups(group_names, only=None):
    """The matrix groups of a target: its inventory groups (``group_names``) but the fleet's
    own two and ``ungrouped``, and with ``only`` (a list) those in it; empty: ``ungrouped``."""
    skip = {TARGETS_GROUP, SCANNERS_GROUP, "ungrouped"}
    return [str(g) for g in group_names or () if g not in skip and (only is None or g in only)]


def parsed_policies(policies):
    """``{name: {vantage: Policy}}`` of ``{name: vantage_policies(...)}``."""
    try:
        return parse_scoped(policies)
    except InputError as exc:
        raise FleetError(str(exc)) from None


def matrix_of(merged, groups, policies):
    """The reachability matrix of ``merged``: ``groups`` maps target names to their groups,
    ``policies`` to their ``parsed_policies``."""
    return reachability_matrix(merged, groups, policies)


def recheck_rounds(result):
    """The re-check rounds in a scanner's registered ``portscan`` result (a loop's
    ``results``, or one result): each round the list of its host entries."""
    if not isinstance(result, dict) or result.get("skipped"):
        return []
    found = []
    for one in result.get("results", [result]):
        hosts = one.get("hosts") if isinstance(one, dict) else None
        if isinstance(hosts, dict) and not one.get("failed") and not one.get("skipped"):
            found.append([h for h in hosts.values() if isinstance(h, dict) and "name" in h])
    return found


def with_drift(data, merged, baseline, policies, answers=None):
    """The merged report ``data`` with its drift against the merged ``baseline`` (a path):
    ``nornir_portscan.fleet.baseline.with_drift``, as the CLI's ``portscan merge`` gives it."""
    return fleet_with_drift(data, merged, load_baseline(baseline), policies, answers)


PAGES = {"markdown": ("Markdown report", iter_merged_markdown),
         "html": ("HTML report", iter_merged_html)} if ENGINE_ERROR is None else {}


def check_page(path):
    """Raise ``InputError`` (one line) when the readable report cannot go to ``path``: not a
    ``.md`` or ``.html`` name, or no such directory."""
    what = PAGES[page_format(path)][0]
    check_destination(path, what)


def write_page(path, data):
    """Write the merged report ``data`` as Markdown or HTML (by the suffix of ``path``)."""
    what, render = PAGES[page_format(path)]
    write_atomic(path, render(data), what)


def _port_spec(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def vantage_policies(host, name, protocol="tcp"):
    """``{vantage: policy data}`` of a target's host variables, with ``None`` for the policy
    of every vantage: ``portscan_expect_open`` and the like hold for every vantage, and
    ``portscan_vantage_policy: {VANTAGE: {expect_filtered: ...}}`` replaces keys for one.
    A port without ``T:`` or ``U:`` is of ``protocol`` (the plan's)."""

    def spec(value, var):
        try:
            return qualified(value, protocol)
        except InputError as exc:
            raise FleetError(f"{var} of target {name!r}: {exc}") from None

    common = {key: spec(host[var], var) for key, var in POLICY_VARS.items() if var in host}
    scoped = host.get(VANTAGE_POLICY_VAR) or {}
    if not isinstance(scoped, dict) or not all(
            isinstance(v, dict) or v is None for v in scoped.values()):
        raise FleetError(
            f"invalid {VANTAGE_POLICY_VAR} of target {name!r}: give a mapping of vantage to "
            "expectations, e.g. {users: {expect_filtered: '22,443'}}")
    found = {None: common}
    for vantage, keys in scoped.items():
        layer = {key: spec(value, VANTAGE_POLICY_VAR) for key, value in (keys or {}).items()}
        found[str(vantage)] = merge_policies([common, layer])
    return found


def policy_ports(host, name, protocol="tcp"):
    """Every port a target's expectations name, over all its vantages."""
    ports = set()
    for vantage, data in vantage_policies(host, name, protocol).items():
        where = f"target {name!r}" + (f" from vantage {vantage!r}" if vantage else "")
        try:
            policy = parse_policy(data, where=where)
        except InputError as exc:
            raise FleetError(str(exc)) from None
        ports |= set(policy.ports)
    return ports


def judged(data, merged, policies, parsed):
    """The merged report ``data`` (of ``merged``) with each host judged
    (``nornir_portscan.fleet.verdicts.judged``, as the CLI's ``portscan merge`` judges it);
    ``policies`` maps target names to ``vantage_policies``, ``parsed`` to ``parsed_policies``."""
    return fleet_judged(data, merged, policies, parsed)
