# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portscan_merge
short_description: Merge the shards of a fleet scan into one report keyed by target and vantage
version_added: 0.2.0
description:
  - Runs on the controller (its action plugin; use C(run_once=true)) after every scanner ran
    M(nornir_portscan.portscan.portscan_shard) and registered its result as O(results_var).
  - Keeps each shard report in the plan's directory (C(DIRECTORY/HASH/shards/SCANNER.json)), so
    that a re-run of the same plan scans only the shards still missing, then merges every kept
    shard report (C(nornir_portscan.fleet.merge_reports)) into one report with a host per
    (target, vantage) and the scanner of every answer, written to C(DIRECTORY/HASH/merged.json)
    (and O(report)).
  - "Judges each (target, vantage) against the target's expectations, evaluated here on the
    merged answers (so a changed policy needs no new scan): C(portscan_expect_open),
    C(portscan_expect_closed), C(portscan_expect_filtered) and C(portscan_allowed_open) hold
    for every vantage, and C(portscan_vantage_policy: {VANTAGE: {expect_filtered: ...}}) replaces
    keys for one vantage. M(nornir_portscan.portscan.portscan_plan) adds the expectations'
    ports to the target's ports."
  - A (target, vantage) that has ports with no answer, or conflicting answers, does not pass.
  - The targets of a scanner that was unreachable, or whose task failed (killed, out of
    memory, no engine), are never dropped and never closed - their ports are C(error) with
    reason C(scanner-unreachable) or C(scanner-failed) - and the task then fails, after writing
    the merged report.
options:
  plan:
    description: The registered result of M(nornir_portscan.portscan.portscan_plan), whole
      (its C(protocol) says what a port without C(T:) or C(U:) is in the targets'
      expectations; C(tcp) when it has none).
    type: dict
    required: true
  results_var:
    description: The variable each scanner registered its
      M(nornir_portscan.portscan.portscan_shard) result in (with C(async), its
      C(async_status) result).
    type: str
    default: portscan_shard
  report:
    description: Also write the merged JSON report to this path on the controller.
    type: path
  page:
    description:
      - Also write the merged report as a readable page to this path on the controller, as
        Markdown (C(.md)) or a self-contained HTML page (C(.html)), its reachability matrix
        first.
    type: path
  matrix_groups:
    description:
      - The target groups of the reachability matrix (RV(matrix)). A target is counted in each
        of its inventory groups (C(group_names)) but C(portscan_targets), C(portscan_scanners)
        and C(ungrouped), or with this list, in each of its groups in the list; a target in no
        such group is in the group C(ungrouped).
    type: list
    elements: str
  baseline:
    description:
      - A merged report saved earlier (C(merged.json) of an earlier run, or O(report)) to
        compare with, each (target, vantage) with the same (target, vantage) only; a vantage on
        one side only is one RV(drift) entry (C(vantage 'users' (8 hosts))), not every port of
        it. Sets RV(drift) and RV(recheck).
    type: path
  rechecks_var:
    description:
      - With O(baseline), the variable each scanner registered its re-check in (a
        M(nornir_portscan.portscan.portscan) scan of its RV(recheck) list, from the scanner,
        maybe in a loop of several rounds). Only the changes every re-check from the same
        vantage saw again are kept (C(confirmed) in RV(drift)); a (target, vantage) with confirmed
        drift its expectations from that vantage do not explain does not pass, and with
        O(fail_on_violation) hosts that appeared or disappeared fail the task.
      - Without it the drift is not confirmed yet, and fails nothing.
    type: str
  fail_on_violation:
    description:
      - Fail the task when some (target, vantage) did not pass its expectations (see
        RV(failed_hosts)). The task fails anyway when some shard did not report in full.
    type: bool
    default: false
attributes:
  action:
    description: Runs on the controller only.
    support: full
  check_mode:
    description: The merge runs and writes its files in check mode too.
    support: full
  diff_mode:
    description: There is nothing to diff.
    support: none
  platform:
    description: The controller, with C(nornir-portscan) in its Python.
    support: full
    platforms: posix
requirements:
  - nornir-portscan >= 0.1.0, < 0.2.0 in the controller's Python
seealso:
  - module: nornir_portscan.portscan.portscan_plan
  - module: nornir_portscan.portscan.portscan_shard
author:
  - nornir-portscan contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: One report keyed by target and vantage; fails when some scanner did not report
  nornir_portscan.portscan.portscan_merge:
    plan: "{{ plan }}"
    report: /tmp/fleet.json
    page: /tmp/fleet.html  # the reachability matrix, vantage x group x port
    matrix_groups: [cardholder_segment, users_segment]
  run_once: true
  register: merged

- name: Drift per (target, vantage) against an earlier merge, each change re-checked from its
    vantage by the scanner that saw it (see playbooks/segmentation_audit.yml)
  nornir_portscan.portscan.portscan_merge:
    plan: "{{ plan }}"
    baseline: /var/lib/portscan-runs/last-week.json
    rechecks_var: portscan_recheck  # each scanner's loop of portscan scans of merged.recheck
    fail_on_violation: true
  run_once: true
  register: confirmed
"""

RETURN = r"""
msg:
  description: What was merged, or why it is not complete, in one line.
  returned: always
  type: str
  sample: "1 of 3 shards did not report in full (scan2 failed); 8 ports have no answer, ..."
complete:
  description: Every shard reported in full and every port has an answer.
  returned: success
  type: bool
  sample: false
summary:
  description: Counts over the merged report (hosts, shards, shards_ok, open_ports, ...).
  returned: success
  type: dict
shards:
  description: How each shard went (C(ok), C(interrupted), C(missing), C(failed)), with where it
    ran.
  returned: success
  type: list
  elements: dict
conflicts:
  description: Ports that two shards answered differently.
  returned: success
  type: list
  elements: dict
hosts:
  description: A host per (target, vantage), with C(vantage), C(scanners) and C(scanner) on
    each port, C(passed) and C(failure) and, with expectations, C(policy) and C(violations).
  returned: success
  type: list
  elements: dict
matrix:
  description:
    - "The reachability matrix: C(cells), one per vantage, target group and port, each with
      its C(verdict) (C(open), C(closed) or C(filtered) when every host of the group said so
      from that vantage; C(error) when some host has no answer there, as the targets of a lost
      or failed scanner; C(conflict); C(mixed)), the count of hosts per state and how many
      C(passed), C(failed) or could not be judged against their expectations of the port
      from that vantage (C(unjudged)). C(portless) lists hosts with no port to count."
  returned: success
  type: dict
  sample: {vantages: [users], groups: [cardholder], ports: [22], cells: [{vantage: users,
    group: cardholder, port: 22, verdict: filtered, hosts: 2, open: 0, closed: 0, filtered: 2,
    error: 0, conflict: 0, passed: 2, failed: 0, unjudged: 0}], portless: []}
drift:
  description:
    - With O(baseline), the changes since it per (target, vantage) (C(hosts), each with its
      C(vantage), C(opened), C(closed), C(changed) and C(unexpected) ports), C(appeared) and
      C(disappeared) hosts and vantages (C(vantages_appeared), C(vantages_disappeared)),
      C(rechecked) and C(confirmed) counts, and C(confirming) (O(rechecks_var) was given).
  returned: with baseline
  type: dict
recheck:
  description:
    - With O(baseline), per scanner, the targets (C(name), C(address), C(ports)) whose ports
      differ from the baseline, for that scanner to probe again from its own vantage (the
      scanner that answered them now), as M(nornir_portscan.portscan.portscan) takes them.
  returned: with baseline
  type: dict
  sample: {ua1: [{name: t1, address: 198.18.0.1, ports: "22"}]}
failed_hosts:
  description: The (target, vantage) that did not pass, as C(name@vantage).
  returned: success
  type: list
  elements: str
  sample: [db1@users]
compliance:
  description: How many (target, vantage) with expectations were compliant, non-compliant or
    could not be judged, and how many violations they had.
  returned: success
  type: dict
  sample: {compliant: 4, non_compliant: 1, error: 0, violations: 2}
reports:
  description: The merged report files written.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    spec = {
        "plan": {"type": "dict", "required": True},
        "results_var": {"type": "str", "default": "portscan_shard"},
        "report": {"type": "path"},
        "page": {"type": "path"},
        "matrix_groups": {"type": "list", "elements": "str"},
        "baseline": {"type": "path"},
        "rechecks_var": {"type": "str"},
        "fail_on_violation": {"type": "bool", "default": False},
    }
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    module.fail_json(msg="portscan_merge runs on the controller, through its action plugin")


if __name__ == "__main__":
    main()
