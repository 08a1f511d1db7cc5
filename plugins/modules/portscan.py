# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: portscan
short_description: Scan TCP and UDP ports on many hosts at once with the nornir-portscan engine
version_added: 0.1.0
description:
  - Runs a TCP connect and UDP scan of O(targets) x O(ports) in one engine run (worker processes
    with a gevent probe pool each) and returns a result per target.
  - A scan changes nothing on the targets; the task reports C(changed) only when it wrote report
    files (RV(reports)).
  - An unresolvable or timed-out target is a per-host status in RV(hosts), not a task failure.
    Bad option values (ports, targets, timeouts) fail the task with a one-line message that names
    the bad value and shows a valid one. The numeric options take numbers or text that reads as
    one (a templated value); the engine checks them, so a bad one fails with the words the CLI,
    the Nornir task and the Python API use.
  - Without O(targets), the action plugin builds the targets from the inventory. With
    C(run_once=true) it scans every host of the play batch in one engine run; without
    C(run_once) each host scans only itself. The address is the host's C(ansible_host) (falling
    back to C(inventory_hostname)), the ports are O(ports) when the task sets it, else the host's
    C(portscan_ports) variable (set it per host or per group), else the default.
  - "Expectations turn the scan into an audit: O(expect_open), O(expect_closed),
    O(expect_filtered) and O(allowed_open) apply to every target. Without O(targets), for each of
    those the task does not set, the host variables C(portscan_expect_open),
    C(portscan_expect_closed), C(portscan_expect_filtered) and C(portscan_allowed_open) give that
    host's own, each on its own, so Ansible's variable precedence (all, group, child group, host)
    is the inheritance: set the policy in C(group_vars) and override single keys in
    C(host_vars). A dict target's keys of those names replace the task's for it. O(exclude) and
    O(max_hosts) hold for every target, inventory hosts included. The ports of the
    expectations are scanned even if O(ports) does not list them."
  - Each entry of RV(hosts) says whether the host RV(hosts.passed) and, if not, why in
    RV(hosts.failure). A host does not pass when it could not be scanned (unresolved, timed out,
    error), breaks an expectation, still breaks one when O(wait) gives up, or has drifted from
    O(baseline) in a way its expectations do not explain.
  - "To fail exactly the hosts that did not pass, register the result of a C(run_once) scan and
    follow it with a per-host task, C(ansible.builtin.assert) with
    C(that: scan.hosts[inventory_hostname].passed) (see the examples). Without C(run_once) each
    host scans itself and O(fail_on_violation) fails its own task."
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
      - C(U:) and C(T:) as in nmap's C(-p) make the ports after them UDP or TCP until the next
        one, C(U:53,161,T:22,443); C(U:top20) are the 20 UDP ports most often open. Ports without
        either are of O(protocol).
      - A UDP port that answers is C(open), one that draws an ICMP port-unreachable C(closed), one
        that never answers C(open|filtered) (no proof either way).
    type: raw
    default: top1000
  protocol:
    description:
      - What a port without C(T:) or C(U:) is, in every port list (O(ports), O(exclude_ports),
        the targets' own, the expectations, the host variables).
      - C(tcp) (the default, a TCP connect scan), C(udp) (nmap's C(-sU)), or C(both) (a TCP and
        a UDP port for each, nmap's C(-sT -sU)).
    type: str
    choices: [tcp, udp, both]
    default: tcp
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
    type: raw
    default: 1.0
  min_timeout:
    description: Floor of the adaptive timeout in seconds.
    type: raw
    default: 0.1
  adaptive:
    description: Learn each host's round-trip time and wait less than O(timeout) for answers.
    type: bool
    default: true
  retries:
    description:
      - Extra attempts for a port that gave no response (0 to 10).
      - Once a retry answered (SYNs dropped for a while, by loss, a full accept queue or a
        policer), three more than the latest attempt that answered, up to ten; ten, one at a
        time, once a host dropped a quarter of its probes.
    type: raw
    default: 1
  rate:
    description: At most this many probes per second over all workers; no limit when omitted.
    type: raw
  concurrency:
    description: Probes in flight per worker process.
    type: raw
    default: 1000
  host_concurrency:
    description: Probes in flight per host over all workers; no cap when omitted.
    type: raw
  processes:
    description: Worker processes; one per CPU when omitted.
    type: raw
  host_timeout:
    description:
      - Give up on a host after this many seconds. Its results so far are kept and its
        RV(hosts.status) is C(timed_out).
    type: raw
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
    type: raw
    default: 65536
  expect_open:
    description:
      - Ports that must be open on every target, same syntax as O(ports).
      - A host variable C(portscan_expect_open) (inventory-wide mode) or a dict target's
        C(expect_open) replaces it for that host.
    type: raw
  expect_closed:
    description:
      - Ports that must be closed (refused) on every target; replaced per host like
        O(expect_open), by C(portscan_expect_closed).
    type: raw
  expect_filtered:
    description:
      - Ports that must be filtered (no answer, or an ICMP error) on every target; replaced per
        host like O(expect_open), by C(portscan_expect_filtered).
    type: raw
  allowed_open:
    description:
      - The ports that may be open; every other open port is a violation. Each port of
        O(expect_open) must be in it.
      - Replaced per host like O(expect_open), by C(portscan_allowed_open). A host variable set to
        null means no allow-list for that host; an empty string allows no open port.
    type: raw
  inventory_policy:
    description:
      - In the inventory-wide mode (no O(targets)), let the host variables
        C(portscan_expect_open), C(portscan_expect_closed), C(portscan_expect_filtered) and
        C(portscan_allowed_open) replace the options of the same name per host.
      - Set it to false when the task's own expectations must hold for every host whatever the
        inventory's audit policy says, for example to wait for one service port during a change.
    type: bool
    default: true
  fail_on_violation:
    description:
      - Fail the task when a host does not pass (see RV(hosts.passed)); the message names each
        such host and why. The result is returned in full all the same.
      - Not with C(run_once), which the action plugin refuses, because Ansible fails every host
        of the play when a C(run_once) task fails. Register the scan and fail the hosts with a
        following C(ansible.builtin.assert) instead (see the examples).
    type: bool
    default: false
  baseline:
    description:
      - A JSON report saved earlier (O(report), or C(portscan --json)) to compare with, on the
        host that runs the module. Hosts are matched by name and address; every port scanned
        both times is compared.
      - Each entry gets RV(hosts.drift), and the result a RV(drift) summary. A change that makes
        an expectation come true (a port in O(expect_open) that opened) is expected; any other
        change fails the host (RV(hosts.passed) is false).
    type: path
  recheck:
    description:
      - How many times to probe again, slowly, a port that differs from O(baseline) before it
        counts as drift (0 counts it at once). A change not seen every time was a blip.
    type: raw
    default: 3
  wait:
    description:
      - Wait until every expectation is met, like M(ansible.builtin.wait_for) for many hosts and
        ports at once. Only the unmet expectations are scanned again, every O(interval)
        seconds, until all are met or O(wait_timeout) runs out.
      - Needs expectations. A host whose expectations were never met does not pass; the task
        itself fails only with O(fail_on_violation). RV(wait) says how it went.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait at most with O(wait), counted from the start of the scan.
    type: raw
    default: 300.0
  interval:
    description: Seconds between the rounds of O(wait).
    type: raw
    default: 2.0
  report:
    description:
      - Write the full JSON report (the same document as C(portscan --json), with the audit's
        compliance, drift and wait) to this path on the host that runs the module. It serves as
        a later O(baseline). Not written in check mode.
    type: path
  report_table:
    description:
      - Write a readable table (one line per host with its open and filtered ports, then a
        summary and the audit's findings) to this path on the host that runs the module. Not
        written in check mode.
    type: path
  report_xml:
    description:
      - Write the report as nmap XML (as C(nmap -oX) does; C(ndiff) and nmap parsers read it) to
        this path on the host that runs the module. Not written in check mode.
    type: path
  report_markdown:
    description:
      - Write a readable audit report in Markdown (summary, hosts, violations, drift, the wait)
        to this path on the host that runs the module. Not written in check mode.
    type: path
  report_html:
    description:
      - Write the audit report as a self-contained HTML page (no script, no external link) to
        this path on the host that runs the module. Not written in check mode.
    type: path
  policy_file:
    description:
      - A YAML policy file (C(defaults), C(groups), C(hosts) by name or address), read on the
        host that runs the module. Its defaults sit below the task's expectations, its groups
        and host entries above them, and a target's own keys above all.
    type: path
attributes:
  action:
    description:
      - The action plugin builds the inventory-wide target list on the controller, and scans in
        the controller process when the module would run there anyway (see the notes).
    support: full
  check_mode:
    description:
      - The scan runs in check mode too (its probes change nothing on the targets), so that the
        tasks after it see real results; report files are not written, a warning names them and
        C(changed) says whether they would have been. Add C(when=not ansible_check_mode) to
        send no probes in check mode.
    support: full
  async:
    description:
      - Long scans can run with C(async) and C(poll); the task then always runs as a module
        (not in the controller process).
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
  - nornir-portscan >= 0.1.0, < 0.2.0 (C(pip install 'nornir-portscan>=0.1.0,<0.2.0')) in the
    Python that runs the module; the task fails with that line when it is missing or another
    version
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

- name: Audit every host of the play in one engine run against its portscan_* variables
  nornir_portscan.portscan.portscan:
    ports: 22
    allowed_open: 22  # for the hosts whose variables do not say
    report: /tmp/exposure.json
    report_html: /tmp/exposure.html
  run_once: true
  delegate_to: localhost
  register: scan

- name: Scan TCP 22 and the 20 UDP ports most often open; DNS and SNMP must answer
  nornir_portscan.portscan.portscan:
    targets: [127.0.0.1]
    ports: T:22,U:top20
    expect_open: U:53,161
  delegate_to: localhost

- name: Branch on this host's own result
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} has SSH open"
  when: 22 in scan.hosts[inventory_hostname].open_ports

- name: Fail exactly the hosts that did not pass (not every host, as a failed run_once task would)
  ansible.builtin.assert:
    that: scan.hosts[inventory_hostname].passed
    fail_msg: "{{ scan.hosts[inventory_hostname].failure }}"
    quiet: true

- name: Each host waits for its own port 8080 and fails on its own if it never opens
  nornir_portscan.portscan.portscan:
    expect_open: 8080
    ports: 8080
    wait: true
    wait_timeout: 60
    interval: 2
    fail_on_violation: true
  delegate_to: localhost
"""

RETURN = r"""
msg:
  description: What was scanned and which hosts did not pass, in one line.
  returned: success
  type: str
  sample: "scanned 3 hosts (3 up): 5 open, 0 filtered, 4 closed ports; 1 did not pass: web2"
reports:
  description: The report files written (none in check mode).
  returned: always
  type: list
  elements: str
  sample: [/tmp/exposure.json]
would_write:
  description: In check mode, the report files that were not written (C(changed) is then true).
  returned: in check mode, when report options are set
  type: list
  elements: str
  sample: [/tmp/exposure.json]
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
    vantage:
      description: Where the answers were seen from; null for the host that ran the scan.
      type: str
      sample: null
    status:
      description:
        - C(up), C(no-response) (every port filtered), C(unresolved), C(timed_out) or C(error);
          after an interrupt C(interrupted) (scanned part way) or C(not-scanned).
      type: str
      sample: up
    up:
      description: A port answered (open or closed), or the host itself sent an ICMP error.
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
      description: The host is up, every port asked for was scanned (none left by an
        interrupt or the host timeout) and every one is open.
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
    rate_limited:
      description: Present (true) when the host's ICMP rate limit held back its closed UDP
        ports, so its UDP ports were scanned at that rate (about one closed port a second).
      type: bool
      returned: when the host rate-limited a UDP scan
      sample: true
    scanned_ports:
      description: The ports probed to the end, compacted (UDP after C(U:)); empty when none.
      type: str
      sample: 22,80-82
    unscanned_ports:
      description: The ports a host timeout or an interrupt left unscanned; empty when none.
      type: str
      sample: ""
    ports:
      description: Every port that is not closed (closed ones too with O(include_closed)).
      type: list
      elements: dict
      contains:
        port:
          description: The port number.
          type: int
        protocol:
          description: C(tcp) or C(udp).
          type: str
        state:
          description: C(open), C(closed), C(filtered), C(open|filtered) (UDP, no answer) or
            C(error).
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
    passed:
      description:
        - The host passed. False when it could not be scanned (status C(unresolved),
          C(timed_out) or C(error)), broke an expectation (after waiting, with O(wait)), or
          drifted from O(baseline) in a way its expectations do not explain.
        - The condition for a per-host C(assert) after a C(run_once) scan.
      type: bool
      sample: false
    failure:
      description:
        - Why the host did not pass, in one line; empty when it passed (a string either way, so
          that it can be the C(fail_msg) of a per-host C(assert)).
      type: str
      sample: "web2 (127.0.0.12): port 8080 closed (expected open)"
    compliant:
      description:
        - The host meets its expectations; null when it could not be judged (unresolved, timed
          out with nothing to show). Only for hosts with expectations.
      type: bool
      returned: when the host has expectations
      sample: true
    violations:
      description:
        - Every port that is not as expected. C(expected) is C(open), C(closed), C(filtered) or
          C(not open) (an O(allowed_open) breach); C(actual) is the state found, or
          C(not scanned).
      type: list
      elements: dict
      returned: when the host has expectations
      sample: [{port: 8080, expected: open, actual: closed, reason: conn-refused}]
    policy:
      description:
        - The host's expectations as port specs, after the host variables replaced the task's
          options. C(allowed_open) is null without an allow-list.
      type: dict
      returned: when the host has expectations
      sample: {expect_open: "2222,8080", expect_closed: "", expect_filtered: "",
               allowed_open: "2222,8080,8443"}
    drift:
      description:
        - "How the host changed since O(baseline), confirmed by re-probing (O(recheck)):
          C(opened) (now open, not before), C(closed) (open before, not now), C(changed) (other
          changes, C({port, before, after})), C(unexpected) (the ports whose change the
          expectations do not explain; they fail the host) and C(in_baseline) (false for a host
          the baseline does not have; it is not compared)."
      type: dict
      returned: when O(baseline) is set
      sample: {opened: [8443], closed: [], changed: [], unexpected: [8443], in_baseline: true}
    wait:
      description:
        - With O(wait), whether this host's expectations C(converged), the wait's C(elapsed)
          seconds and C(rounds), and the C(unmet) ones (C({port, expected, actual}); C(port) is
          null when the host itself could not be judged).
      type: dict
      returned: when O(wait) is set and the host has expectations
      sample: {converged: false, elapsed: 60.2, rounds: 30, unmet: [{port: 8080, expected: open,
                                                                   actual: closed}]}
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
    interrupted: 0
    not_scanned: 0
    open_ports: 3
    filtered_ports: 0
    closed_ports: 17
    error_ports: 0
    probes_sent: 20
    duration: 0.21
    rate: 95.2
failed_hosts:
  description:
    - The keys of RV(hosts) whose RV(hosts.passed) is false, in scan order.
  returned: success
  type: list
  elements: str
  sample: [web2]
compliance:
  description: How many judged hosts were compliant, non-compliant or could not be judged, and
    how many violations they had in all.
  returned: when any host has expectations
  type: dict
  sample: {compliant: 2, non_compliant: 1, error: 0, violations: 2}
drift:
  description:
    - The comparison with O(baseline). C(drifted) is true when any host changed, appeared or
      disappeared; C(hosts_changed) counts the hosts with confirmed changes; C(appeared) and
      C(disappeared) name hosts as C(name (address)); C(rechecked) counts the differing ports
      probed again and C(confirmed) those still different every time.
  returned: when O(baseline) is set
  type: dict
  sample: {drifted: true, hosts_changed: 1, appeared: [], disappeared: [], rechecked: 2,
           confirmed: 1}
wait:
  description:
    - How O(wait) went. C(converged) is true when every expectation was met; C(elapsed) is in
      seconds from the start of the scan; C(rounds) counts the scans; C(unmet) lists the
      expectations never met, as C({host, port, expected, actual}) (C(port) null for a host that
      could not be judged).
  returned: when O(wait) is set
  type: dict
  sample: {converged: false, elapsed: 10.02, rounds: 6,
           unmet: [{host: web2, port: 8080, expected: open, actual: closed}]}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import (
    ARGUMENT_SPEC, ENGINE_ERROR, ENGINE_TRACEBACK, TaskError, changed, run)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if ENGINE_ERROR:
        module.fail_json(msg=ENGINE_ERROR, exception=ENGINE_TRACEBACK)
    try:
        result = run(module.params, module.check_mode)
    except TaskError as exc:  # with a result (fail_on_violation, a report not written): all of it
        result = dict(exc.result or {})
        for warning in result.pop("warnings", ()):
            module.warn(warning)
        result.pop("msg", None)
        module.fail_json(msg=str(exc), changed=changed(result), **result)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(changed=changed(result), **result)


if __name__ == "__main__":
    main()
