# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portscan_shard
short_description: Scan one scanner's shard of a fleet plan, on that scanner
version_added: 0.2.0
description:
  - Runs on a scanner host (a host of the C(portscan_scanners) group) and scans the targets
    that the plan of M(nornir_portscan.portscan.portscan_plan) gives to it, with this machine's
    own worker processes (one per CPU unless O(processes) says otherwise).
  - Returns the shard's JSON report in RV(report) (the report of C(portscan --json), with its
    C(shard) section saying which shard of which plan it is and where it ran), for
    M(nornir_portscan.portscan.portscan_merge) to keep on the controller and merge.
  - The plan is checked against its hash first; a plan that was edited, or a scanner that is
    not in it, fails the task with one line before anything is sent.
  - See docs/distributed.md, "Running it with Ansible".
options:
  plan:
    description:
      - The plan, as RV(nornir_portscan.portscan.portscan_plan#module:plan) returns it.
    type: dict
    required: true
  scanner:
    description: Which scanner's shard to scan, usually C({{ inventory_hostname }}). Give it or
      O(shard).
    type: str
  shard:
    description:
      - Which shard to scan as C(I/N), counting from 0, as C(portscan --shard I/N), of a plan
        made with M(nornir_portscan.portscan.portscan_plan)'s
        O(nornir_portscan.portscan.portscan_plan#module:shards=N). A bad spelling (C(3/2),
        C(a/b)) fails with the CLI's one line, before anything is sent.
    type: str
  processes:
    description: Worker processes on this machine; one per CPU when omitted. Not in the hash.
    type: raw
  concurrency:
    description: Probes in flight per worker on this machine; the engine's default when omitted.
    type: raw
attributes:
  check_mode:
    description: The scan runs in check mode too; it changes nothing on the targets.
    support: full
  diff_mode:
    description: There is nothing to diff.
    support: none
  async:
    description: Long shards can run with C(async) and C(poll) (or C(async_status)).
    support: full
  platform:
    description: Runs where Python 3.11+ and the C(nornir-portscan) package are installed.
    support: full
    platforms: posix
requirements:
  - python >= 3.11
  - nornir-portscan >= 0.1.0, < 0.2.0 on the scanner
seealso:
  - module: nornir_portscan.portscan.portscan_plan
  - module: nornir_portscan.portscan.portscan_merge
author:
  - nornir-portscan contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Each scanner scans its shard, in parallel
  nornir_portscan.portscan.portscan_shard:
    plan: "{{ plan.plan }}"
    scanner: "{{ inventory_hostname }}"
  when: inventory_hostname in plan.to_scan
  register: portscan_shard
"""

RETURN = r"""
msg:
  description: What the shard scanned, in one line.
  returned: success
  type: str
  sample: "shard scan1 (users) of plan 3f2a9c0d1e4b: 4 hosts, 2 open, 0 filtered, 14 closed"
scanner:
  description: The scanner whose shard this is.
  returned: success
  type: str
  sample: scan1
vantage:
  description: The scanner's vantage; null for the default one.
  returned: success
  type: str
  sample: users
plan_hash:
  description: The plan's hash.
  returned: success
  type: str
  sample: 3f2a9c0d1e4b5a6978877665544332211ffeeddccbbaa99887766554433221100
summary:
  description: The shard report's summary (as the C(portscan) module's).
  returned: success
  type: dict
  sample: {hosts: 4, up: 4, open_ports: 2, closed_ports: 14, filtered_ports: 0}
report:
  description: The shard's whole JSON report, with its C(shard) section.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan_fleet import (
    ENGINE_ERROR, ENGINE_TRACEBACK, FleetError, scan_shard)
from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import port_counts

ARGUMENT_SPEC = {
    "plan": {"type": "dict", "required": True},
    "scanner": {"type": "str"},
    "shard": {"type": "str"},
    "processes": {"type": "raw"},
    "concurrency": {"type": "raw"},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_one_of=[("scanner", "shard")],
                           mutually_exclusive=[("scanner", "shard")])
    if ENGINE_ERROR:
        module.fail_json(msg=ENGINE_ERROR, exception=ENGINE_TRACEBACK)
    params = module.params
    try:
        scanner = params["scanner"]
        if scanner is None:
            scanner = shard_scanner(params["plan"], params["shard"])
        plan, report = scan_shard(params["plan"], scanner, params["processes"],
                                  params["concurrency"])
    except FleetError as exc:
        module.fail_json(msg=str(exc))
    shard, summary = report["shard"], report["summary"]
    for warning in report.get("warnings") or ():
        module.warn(str(warning))
    module.exit_json(
        changed=False, scanner=shard["scanner"], vantage=shard["vantage"], plan_hash=plan.hash,
        summary=summary, report=report,
        msg=(f"shard {shard['scanner']} ({shard['vantage'] or 'default vantage'}) of plan "
             f"{plan.hash[:12]}: {summary['hosts']} hosts, {port_counts(summary)}"))


def shard_scanner(plan, text):
    """The scanner of shard ``text`` (``I/N``) of a ``shards=N`` plan."""
    from nornir_portscan import InputError
    from nornir_portscan.fleet import parse_shard

    try:
        index, count = parse_shard(text)
    except InputError as exc:
        raise FleetError(str(exc)) from None
    scanners = plan.get("scanners") if isinstance(plan, dict) else None
    if not isinstance(scanners, list):
        scanners = []
    names = [e[0] if isinstance(e, list) and e else None for e in scanners]
    if not names or names != [str(i) for i in range(len(names))]:
        raise FleetError(f"shard {text!r}: the plan is not one of shards 0 to N-1; make it "
                         "with portscan_plan's shards=N, or give the scanner")
    if count != len(names):
        raise FleetError(f"invalid shard {text!r}: the plan has {len(names)} shards, e.g. "
                         f"'0/{len(names)}'")
    return str(index)


if __name__ == "__main__":
    main()
