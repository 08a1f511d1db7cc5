"""portscan_plan's ``protocol`` through a real ``ansible-playbook`` run of the fleet's three
modules (plan, shard, merge), in the lab's network namespace, against a UDP echo on loopback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible_support import NetnsListeners, PlaybookRunner

pytestmark = pytest.mark.netns

PLAYBOOK = """
- name: A UDP fleet audit of one scanner
  hosts: portscan_scanners
  gather_facts: false
  tasks:
    - name: Plan
      nornir_portscan.portscan.portscan_plan:
        ports: "{{ ports }}"
        protocol: udp
        timeout: 0.5
        directory: "{{ out }}/runs"
      run_once: true
      register: plan
    - name: Scan the shard
      nornir_portscan.portscan.portscan_shard:
        plan: "{{ plan.plan }}"
        scanner: "{{ inventory_hostname }}"
      register: portscan_shard
    - name: Merge
      nornir_portscan.portscan.portscan_merge:
        plan: "{{ plan }}"
        report: "{{ out }}/merged.json"
      run_once: true
      register: merged
    - name: Keep the messages
      ansible.builtin.copy:
        content: "{{ {'plan': plan, 'shard': portscan_shard.msg, 'merge': merged.msg} | to_json }}"
        dest: "{{ out }}/said.json"
        mode: "0644"
      run_once: true
"""


def test_protocol_udp_plans_scans_and_judges_unqualified_ports_as_udp(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path) -> None:
    lab.open_udp("127.0.0.12", 5353, 5354)
    lab.open([("127.0.0.12", 5355)])  # TCP: not scanned, since every port is UDP
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[portscan_scanners]\n"
        f"scan1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "[portscan_targets]\n"
        "dns1 ansible_host=127.0.0.12 portscan_expect_open=5353 portscan_ports=5353-5355\n")
    playbook = tmp_path / "udp_audit.yml"
    playbook.write_text(PLAYBOOK)
    done = run_playbook(playbook, "-e", f"out={tmp_path} ports=9", inventory=inventory)
    assert done.returncode == 0, done.stdout + done.stderr
    said = json.loads((tmp_path / "said.json").read_text())
    assert said["plan"]["protocol"] == "udp"
    assert said["plan"]["plan"]["targets"][0][2] == "U:5353-5355"
    merged = json.loads((tmp_path / "merged.json").read_text())
    (host,) = merged["hosts"]
    assert (host["open_ports"], host["udp_open_ports"], host["udp_open_filtered_ports"]) == (
        [], [5353], [5354]), host
    # judged as UDP: as TCP, 5353 would be "not scanned (expected open)"
    assert (host["passed"], host["policy"], host["violations"]) == (
        True, {"expect_open": "U:5353"}, []), host
    assert "1 open|filtered" in said["shard"], said
    assert "1 open|filtered" in said["merge"], said
