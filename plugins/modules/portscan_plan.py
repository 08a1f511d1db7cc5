# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portscan_plan
short_description: Compute the plan of a scan shared by many scanners and vantages
version_added: 0.2.0
description:
  - Runs on the controller (its action plugin; use C(run_once=true)). Reads the scanners from
    the inventory group O(scanners_group), each with its vantage in C(portscan_vantage), and the
    targets from O(targets_group), each with its address (C(ansible_host), else its name), its
    own ports (C(portscan_ports)) and the vantages it is scanned from (C(portscan_vantages);
    default every vantage).
  - Builds the deterministic plan (C(nornir_portscan.fleet.build_plan)) - each target goes to
    one scanner of each of its vantages, by rendezvous hashing; several scanners in a vantage
    split its targets - and returns it with its RV(hash). Reordering the inventory does not
    change the hash; changing what is scanned, or by whom, does.
  - Keeps the plan in C(DIRECTORY/HASH/plan.json). The shard reports of an earlier run of the
    same plan, kept there by M(nornir_portscan.portscan.portscan_merge), count as done (unless
    O(resume=false)); RV(to_scan) lists only the scanners whose shard has no full report yet.
  - A bad inventory (a vantage no scanner is in, a host listed twice, an empty group) fails the
    task with one line before anything is sent.
options:
  scanners_group:
    description: The inventory group of the scanner hosts.
    type: str
    default: portscan_scanners
  targets_group:
    description: The inventory group of the targets.
    type: str
    default: portscan_targets
  shards:
    description:
      - Plan for this many scanners named C(0) to C(N-1) in one vantage, instead of the hosts
        of O(scanners_group) - the plan of C(portscan --shard I/N) of the same targets, ports
        and options, with the same hash. Scan shard C(I/N) with
        M(nornir_portscan.portscan.portscan_shard) and its C(shard) option.
    type: int
  ports:
    description: The ports of every target without its own C(portscan_ports), as in
      M(nornir_portscan.portscan.portscan) (UDP after C(U:), e.g. C(T:22,U:53,161)).
    type: raw
    default: top1000
  protocol:
    description:
      - What a port without C(T:) or C(U:) is, in O(ports), each target's C(portscan_ports) and
        its expectations (C(portscan_expect_open), ..., C(portscan_vantage_policy)), as the
        O(nornir_portscan.portscan.portscan#module:protocol) option of the module.
      - C(udp) is nmap's C(-sU); C(both) scans each unqualified port as TCP and UDP. The plan
        holds the ports qualified, so its hash says which protocol; the result's RV(protocol)
        tells M(nornir_portscan.portscan.portscan_merge) how to read the expectations.
    type: str
    choices: [tcp, udp, both]
    default: tcp
  timeout:
    description: Connect timeout in seconds (the engine's default when omitted). In the hash.
    type: raw
  min_timeout:
    description: Floor of the adaptive timeout in seconds. In the hash.
    type: raw
  adaptive:
    description: Learn each host's round-trip time. In the hash.
    type: bool
  retries:
    description: Extra attempts for a port that gave no response. In the hash.
    type: raw
  rate:
    description: At most this many probes per second on each scanner. In the hash.
    type: raw
  host_concurrency:
    description: Probes in flight per host on each scanner. In the hash.
    type: raw
  host_timeout:
    description: Give up on a host after this many seconds. In the hash.
    type: raw
  include_closed:
    description: List closed ports too. In the hash.
    type: bool
  split_ports:
    description: In a vantage with fewer targets than scanners, split each target's ports over
      its scanners (otherwise whole hosts only).
    type: bool
    default: false
  directory:
    description: Where on the controller the plans and shard reports are kept (a directory per
      plan hash); default C(portscan-runs) beside the playbook.
    type: path
  resume:
    description: Count the shards already reported in full for this plan as done; false scans
      every shard again.
    type: bool
    default: true
attributes:
  action:
    description: Runs on the controller only.
    support: full
  check_mode:
    description: The plan is computed and kept in check mode too.
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
  - module: nornir_portscan.portscan.portscan_shard
  - module: nornir_portscan.portscan.portscan_merge
author:
  - nornir-portscan contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: The plan, once, on the controller
  nornir_portscan.portscan.portscan_plan:
    ports: 22,80,443,5432
  run_once: true
  register: plan

- name: Show the plan's hash
  ansible.builtin.debug:
    msg: "{{ plan.msg }}"
  run_once: true
"""

RETURN = r"""
msg:
  description: The plan's hash and what there is to scan, in one line.
  returned: success
  type: str
  sample: "plan 3f2a...: 16 targets, 24 host scans by 3 scanners; 3 shards to scan"
hash:
  description: The plan's hash (SHA-256 of its inputs in canonical order).
  returned: success
  type: str
  sample: 3f2a9c0d1e4b5a6978877665544332211ffeeddccbbaa99887766554433221100
plan:
  description: The plan's inputs, for M(nornir_portscan.portscan.portscan_shard).
  returned: success
  type: dict
protocol:
  description: The O(protocol) the plan was made with, for
    M(nornir_portscan.portscan.portscan_merge) (pass the registered result whole).
  returned: success
  type: str
  sample: tcp
directory:
  description: The plan's own directory on the controller (C(DIRECTORY/HASH)).
  returned: success
  type: str
to_scan:
  description: The scanners whose shards are to be scanned in this run.
  returned: success
  type: list
  elements: str
  sample: [scan1, scan2]
kept:
  description: The scanners whose shards an earlier run reported in full.
  returned: success
  type: list
  elements: str
  sample: []
shards:
  description: Each scanner's vantage and the targets of its shard.
  returned: success
  type: dict
  sample: {scan1: {vantage: users, hosts: [db1, web1]}}
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    spec = {
        "scanners_group": {"type": "str", "default": "portscan_scanners"},
        "targets_group": {"type": "str", "default": "portscan_targets"},
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
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    module.fail_json(msg="portscan_plan runs on the controller, through its action plugin")


if __name__ == "__main__":
    main()
