# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portscan
short_description: Scan TCP ports on many hosts at once with the nornir-portscan engine
version_added: 0.1.0
description:
  - Runs a TCP connect scan of O(targets) x O(ports) in one engine run (worker processes with a
    gevent probe pool each) and returns a result per target.
  - A scan changes nothing, so the task never reports C(changed).
  - An unresolvable or timed-out target is a per-host status in RV(hosts), not a task failure.
    Bad option values (ports, targets, timeouts) fail the task with a one-line message that names
    the bad value and shows a valid one.
  - Without O(targets), the action plugin builds the targets from the inventory. With
    C(run_once=true) it scans every host of the play batch in one engine run; without
    C(run_once) each host scans only itself. The address is the host's C(ansible_host) (falling
    back to C(inventory_hostname)), the ports are the host's C(portscan_ports) variable (set it per
    host or per group; falling back to O(ports)).
options:
  targets:
    description:
      - What to scan. Each item is a string (an address, an octet range such as C(127.0.0.1-20), a
        CIDR block or a hostname) or a dict with C(name), optional C(address) (defaults to C(name))
        and optional C(ports) (that target's own ports, same syntax as O(ports)).
      - A dict target is one host; its C(name) is its key in RV(hosts).
      - Omit it to scan inventory hosts (see the description).
    type: list
    elements: raw
  ports:
    description:
      - Ports to scan, in nmap's C(-p) syntax C(22,80,8000-8100,ssh,top100) or as a list such as
        C([22, "8000-8100"]). C(-) means all 65535 ports; C(topN) the N most often open ports.
    type: raw
    default: top1000
  exclude:
    description: Targets to leave out, same syntax as string O(targets).
    type: list
    elements: str
    default: []
  exclude_ports:
    description: Ports to leave out, same syntax as O(ports); applies to per-target ports too.
    type: raw
  timeout:
    description: Connect timeout in seconds; the ceiling of the adaptive per-probe timeout.
    type: float
    default: 1.0
  min_timeout:
    description: Floor of the adaptive timeout in seconds.
    type: float
    default: 0.1
  adaptive:
    description: Learn each host's round-trip time and wait less than O(timeout) for answers.
    type: bool
    default: true
  retries:
    description: Extra attempts for a port that gave no response (0 to 10).
    type: int
    default: 1
  rate:
    description: At most this many probes per second over all workers; no limit when omitted.
    type: float
  concurrency:
    description: Probes in flight per worker process.
    type: int
    default: 500
  host_concurrency:
    description: Probes in flight per host over all workers; no cap when omitted.
    type: int
  processes:
    description: Worker processes; one per CPU when omitted.
    type: int
  host_timeout:
    description:
      - Give up on a host after this many seconds. Its results so far are kept and its
        RV(hosts.status) is C(timed_out).
    type: float
  include_closed:
    description: List closed ports in RV(hosts.ports) too (they are always counted).
    type: bool
    default: false
  address_family:
    description:
      - Which address of a hostname to scan. Address literals are scanned whatever this says.
      - With C(both), a name that has both kinds of address gives two results; the second is keyed
        C(name@address) in RV(hosts).
    type: str
    choices: [ipv4, ipv6, both]
    default: ipv4
  max_hosts:
    description: Refuse targets that expand to more hosts than this (a scope guard).
    type: int
    default: 65536
  report:
    description:
      - Write the full JSON report (the same document as C(portscan --json)) to this path on the
        host that runs the module. Not written in check mode.
    type: path
  report_table:
    description:
      - Write a readable table (one line per host with its open and filtered ports, then a
        summary) to this path on the host that runs the module. Not written in check mode.
    type: path
attributes:
  action:
    description:
      - The action plugin builds the inventory-wide target list on the controller, and scans in
        the controller process when the module would run there anyway (see the notes).
    support: full
  check_mode:
    description: The scan runs in check mode too (it changes nothing); report files are not written.
    support: full
  diff_mode:
    description: There is nothing to diff.
    support: none
  platform:
    description: Runs where Python 3.11+ and the C(nornir-portscan) package are installed.
    support: full
    platforms: posix
requirements:
  - python >= 3.11
  - nornir-portscan (C(pip install nornir-portscan)) in the Python that runs the module
notes:
  - The Python that runs the module must have C(nornir-portscan). Scans usually run on the
    controller (C(delegate_to=localhost) with C(run_once=true)). The implicit localhost already uses
    the controller's Python. For any host with C(ansible_connection=local) whose
    C(ansible_python_interpreter) is left to discovery, the action plugin runs the module with the
    controller's Python (C(ansible_playbook_python)). Set C(ansible_python_interpreter) to choose
    another one.
  - Every boolean in RV(hosts) is a real boolean, so C(when) and C(assert) can use them directly.
seealso:
  - module: ansible.builtin.wait_for
author:
  - nornir-portscan contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Scan two loopback addresses for a few ports
  nornir_portscan.portscan.portscan:
    targets:
      - 127.0.0.1
      - name: web1
        address: 127.0.0.2
        ports: 80,443
    ports: 22,80
  delegate_to: localhost
  register: scan

- name: Scan every host of the play in one engine run (ports from portscan_ports per host)
  nornir_portscan.portscan.portscan:
    ports: 22
    report: /tmp/exposure.json
    report_table: /tmp/exposure.txt
  run_once: true
  delegate_to: localhost
  register: scan

- name: Branch on this host's own result
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} has SSH open"
  when: 22 in scan.hosts[inventory_hostname].open_ports

- name: Fail the hosts where not every scanned port is open
  ansible.builtin.assert:
    that: scan.hosts[inventory_hostname].all_open
    fail_msg: "closed or filtered: {{ scan.hosts[inventory_hostname].filtered_ports }}"
"""

RETURN = r"""
hosts:
  description:
    - One entry per target, keyed by target name (the inventory hostname without O(targets)).
    - A hostname scanned for both address families gives a second entry keyed C(name@address).
  returned: success
  type: dict
  contains:
    name:
      description: The target name.
      type: str
      sample: web1
    address:
      description: The address scanned; null when the name did not resolve.
      type: str
      sample: 127.0.0.2
    status:
      description:
        - C(up), C(no-response) (every port filtered), C(unresolved), C(timed_out) or C(error).
      type: str
      sample: up
    up:
      description: At least one port answered (open or closed).
      type: bool
      sample: true
    resolved:
      description: The target has an address.
      type: bool
      sample: true
    timed_out:
      description: O(host_timeout) expired; the results are partial.
      type: bool
      sample: false
    any_open:
      description: At least one port is open.
      type: bool
      sample: true
    all_open:
      description: The host is up and every port scanned on it is open.
      type: bool
      sample: false
    open_ports:
      description: Open ports, sorted.
      type: list
      elements: int
      sample: [22, 80]
    filtered_ports:
      description: Ports that gave no answer (or an ICMP unreachable), sorted.
      type: list
      elements: int
      sample: []
    error_ports:
      description: Ports whose probe failed locally (no state known), sorted.
      type: list
      elements: int
      sample: []
    closed_count:
      description: How many ports were closed.
      type: int
      sample: 8
    error:
      description: Why the host has no (or partial) results, for example the resolver's message.
      type: str
      sample: null
    scanned_ports:
      description: The ports probed to the end, compacted; empty when none.
      type: str
      sample: 22,80-82
    ports:
      description: Every port that is not closed (closed ones too with O(include_closed)).
      type: list
      elements: dict
      contains:
        port:
          description: The port number.
          type: int
        state:
          description: C(open), C(closed), C(filtered) or C(error).
          type: str
        reason:
          description: What decided the state, for example C(syn-ack) or C(conn-refused).
          type: str
        rtt_ms:
          description: Round-trip time in milliseconds; null when nothing answered.
          type: float
        attempts:
          description: Probes sent to the port.
          type: int
      sample: [{port: 22, state: open, reason: syn-ack, rtt_ms: 0.1, attempts: 1}]
summary:
  description: Counts over the whole scan, its duration in seconds and its rate in probes/s.
  returned: success
  type: dict
  sample:
    hosts: 3
    up: 2
    no_response: 0
    unresolved: 1
    timed_out: 0
    error: 0
    open_ports: 3
    filtered_ports: 0
    closed_ports: 17
    error_ports: 0
    probes_sent: 20
    duration: 0.21
    rate: 95.2
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import (
    ARGUMENT_SPEC, ENGINE_IMPORT_ERROR, INSTALL_HINT, TaskError, run)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if ENGINE_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("nornir-portscan", reason=INSTALL_HINT),
                         exception=ENGINE_IMPORT_ERROR)
    try:
        result = run(module.params, module.check_mode)
    except TaskError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
