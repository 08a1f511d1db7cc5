"""Real ``ansible-playbook`` runs: the playbooks in ``playbooks/`` and the failure paths.

Two ways to run the task are covered: in the controller process (the module would run with the
controller's Python on the controller) and as a real module (another interpreter path); with
``-vvv`` only the second shows Ansible running ``AnsiballZ_portscan.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_support import (
    BIN,
    DEMO_INVENTORY,
    PLAYBOOKS,
    NetnsListeners,
    PlaybookRunner,
    demo_binds,
)

# Every run happens in a network namespace of its own (see the `lab` fixture).
pytestmark = pytest.mark.netns


def module_python() -> str:
    """This venv's Python under a name other than ansible-playbook's: the action plugin must then
    run the real module (it scans in-process only for the controller's own interpreter path)."""
    controller = (BIN / "ansible-playbook").read_text().splitlines()[0].removeprefix("#!")
    for name in ("python3", "python", f"python3.{sys.version_info.minor}"):
        path = BIN / name
        if path.exists() and str(path) != controller:
            return str(path)
    pytest.skip("no second name for this Python in its bin directory")


@pytest.fixture(params=["in-process", "module"])
def path_args(request: pytest.FixtureRequest) -> list[str]:
    """Extra ``ansible-playbook`` arguments selecting how the task runs."""
    if request.param == "module":
        return ["-vvv", "-e", f"ansible_python_interpreter={module_python()}"]
    return ["-vvv"]


def ran_as_module(done: subprocess.CompletedProcess[str]) -> bool:
    return "AnsiballZ_portscan.py" in done.stdout


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """``{host: {"ok": n, "failed": n, ...}}`` from the PLAY RECAP."""
    counts = {}
    for host, fields in re.findall(r"^(\S+)\s+: (ok=.*)$", stdout, re.MULTILINE):
        counts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
    return counts


def messages(stdout: str) -> set[str]:
    return set(re.findall(r'^\s+"msg": "(.*)"$', stdout, re.MULTILINE))


def failures(stdout: str) -> dict[str, str]:
    """``{host: msg}`` of the failed tasks (``fatal: [host]: FAILED! => {...}``)."""
    return {host: json.loads(result)["msg"] for host, result in
            re.findall(r"^fatal: \[([^\]]+)\]: FAILED! => (\{.*\})$", stdout, re.MULTILINE)}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_scan_playbook_branches_on_each_hosts_ports(run_playbook: PlaybookRunner,
                                                    demo_listeners: NetnsListeners) -> None:
    done = run_playbook(PLAYBOOKS / "scan.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert messages(done.stdout) == {
        "web1 (127.0.0.11) open: [2222, 8080, 8443]",
        "web2 (127.0.0.12) open: [2222, 8080]",
        "db1 (127.0.0.13) open: [2222, 15432]",
        "web1 serves HTTPS",
        "web2 serves plain HTTP only",
        "db1 exposes its database port",
        "web1 has every scanned port open",
    }
    assert done.stdout.count("ok: [web1 -> localhost]") == 1  # one task run for the play


def test_audit_playbook_judges_every_host_and_writes_the_reports(
        run_playbook: PlaybookRunner, demo_listeners: NetnsListeners, tmp_path: Path) -> None:
    done = run_playbook(PLAYBOOKS / "audit.yml", "-e", f"audit_dir={tmp_path / 'audit'}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "audit" / "exposure.json").read_text())
    # the policies of inventory/group_vars and host_vars, web2 with its own expect_closed
    assert {h["name"]: (h["address"], h["open_ports"], h["scanned_ports"], h["compliant"],
                        h["policy"]) for h in report["hosts"]} == {
        "web1": ("127.0.0.11", [2222, 8080, 8443], "2222,8080,8443", True, {
            "expect_open": "2222,8080", "expect_closed": "", "expect_filtered": "",
            "allowed_open": "2222,8080,8443"}),
        "web2": ("127.0.0.12", [2222, 8080], "2222,8080,8443", True, {
            "expect_open": "2222,8080", "expect_closed": "8443", "expect_filtered": "",
            "allowed_open": "2222,8080,8443"}),
        "db1": ("127.0.0.13", [2222, 15432], "2222,8080,8443,15432", True, {
            "expect_open": "2222,15432", "expect_closed": "", "expect_filtered": "",
            "allowed_open": "2222,15432"}),
    }
    assert report["compliance"] == {"compliant": 3, "non_compliant": 0, "error": 0,
                                    "violations": 0}
    table = (tmp_path / "audit" / "exposure.txt").read_text().splitlines()
    assert [line.split() for line in table[:4]] == [
        ["HOST", "ADDRESS", "STATUS", "OPEN", "FILTERED", "CLOSED"],
        ["web1", "127.0.0.11", "up", "2222,8080,8443", "-", "0"],
        ["web2", "127.0.0.12", "up", "2222,8080", "-", "1"],
        ["db1", "127.0.0.13", "up", "2222,15432", "-", "2"],
    ]
    markdown = (tmp_path / "audit" / "exposure.md").read_text()
    assert "**PASSED: every expectation met**" in markdown
    assert "| db1 | 127.0.0.13 | up | 2222,15432 | — | 2 | yes |" in markdown.splitlines()
    page = (tmp_path / "audit" / "exposure.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert 'class="violation"' not in page
    assert {"db1: up, open 2222,15432",
            f"3 of 3 hosts passed, 0 violations; reports in {tmp_path / 'audit'}: exposure.json, "
            "exposure.txt, exposure.md and exposure.html"} <= messages(done.stdout)
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {
        "web1": 0, "web2": 0, "db1": 0}


def test_audit_playbook_fails_exactly_the_violating_hosts(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path) -> None:
    # web2's service is down; db1 exposes 8080, which its group does not allow
    lab.open([*demo_binds(skip={("web2", 8080)}), ("127.0.0.13", 8080)])
    done = run_playbook(PLAYBOOKS / "audit.yml", "-e", f"audit_dir={tmp_path / 'audit'}")
    assert done.returncode == 2
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {
        "web1": 0, "web2": 1, "db1": 1}
    assert failures(done.stdout) == {
        "web2": "web2 (127.0.0.12): port 8080 closed (expected open)",
        "db1": "db1 (127.0.0.13): port 8080 open (not in allowed_open)"}
    assert f"1 of 3 hosts passed, 2 violations; reports in {tmp_path / 'audit'}: exposure.json, " \
           "exposure.txt, exposure.md and exposure.html" in messages(done.stdout)
    report = json.loads((tmp_path / "audit" / "exposure.json").read_text())
    assert report["compliance"] == {"compliant": 1, "non_compliant": 2, "error": 0,
                                    "violations": 2}
    markdown = (tmp_path / "audit" / "exposure.md").read_text().splitlines()
    assert "| web2 | 8080 | open | **closed** | conn-refused |" in markdown
    assert "| db1 | 8080 | not open | **open** | syn-ack |" in markdown
    page = (tmp_path / "audit" / "exposure.html").read_text()
    assert page.count('<tr class="violation">') == 4  # two hosts, two violations
    assert '<tr class="violation"><td>db1</td><td>8080</td><td>not open</td>' \
           '<td class="key">open</td><td>syn-ack</td></tr>' in page


def test_gate_change_passes_when_the_ports_are_open(run_playbook: PlaybookRunner,
                                                    demo_listeners: NetnsListeners,
                                                    tmp_path: Path) -> None:
    done = run_playbook(PLAYBOOKS / "gate_change.yml", "-e", f"gate_dir={tmp_path}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 0}
    assert shown_changes(done.stdout) == {"web1": "none", "web2": "none"}
    post = json.loads((tmp_path / "post-change.json").read_text())
    assert post["drift"] == {"drifted": False, "hosts_changed": 0, "appeared": [],
                             "disappeared": [], "rechecked": 0, "confirmed": 0}


def shown_changes(stdout: str) -> dict[str, str]:
    """``{host: ports opened since the snapshot}`` from the gate's last task."""
    return dict(re.findall(r'"msg": "(\w+): service port 8080 open after [\d.]+ s \(\d+ rounds?\); '
                           r'opened since the snapshot: ([\d,]+|none)"', stdout))


def test_gate_change_waits_for_the_service_port(run_playbook: PlaybookRunner,
                                                lab: NetnsListeners, tmp_path: Path) -> None:
    lab.open(demo_binds(skip={("web2", 8080)}))
    # the service comes up 1.5 s after the snapshot: during the wait
    lab.open_when(tmp_path / "pre-change.json", [("127.0.0.12", 8080)], delay=1.5)
    done = run_playbook(PLAYBOOKS / "gate_change.yml", "-e",
                        f"gate_dir={tmp_path} wait_timeout=30 wait_interval=0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 0}
    rounds = re.search(r"open after ([\d.]+) s \((\d+) rounds?\)", done.stdout)
    assert rounds is not None
    assert float(rounds[1]) >= 1.0
    assert int(rounds[2]) >= 2
    # 8080 opening on web2 is the change the gate expects: drift, but not a failure
    assert shown_changes(done.stdout) == {"web1": "none", "web2": "8080"}
    post = json.loads((tmp_path / "post-change.json").read_text())
    assert [(h["name"], h["drift"]) for h in post["hosts"]] == [
        ("web1", {"opened": [], "closed": [], "changed": [], "unexpected": [],
                  "in_baseline": True}),
        ("web2", {"opened": [8080], "closed": [], "changed": [], "unexpected": [],
                  "in_baseline": True}),
    ]


def test_gate_change_fails_a_host_with_an_unexpected_change(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path) -> None:
    lab.open(demo_binds(skip={("web2", 8080)}))
    # web2 comes back with HTTPS open too, which the change did not intend (8443 first: it is
    # open by the time the wait sees 8080)
    lab.open_when(tmp_path / "pre-change.json", [("127.0.0.12", 8443), ("127.0.0.12", 8080)],
                  delay=0.5)
    done = run_playbook(PLAYBOOKS / "gate_change.yml", "-e",
                        f"gate_dir={tmp_path} wait_timeout=30 wait_interval=0.5")
    assert done.returncode == 2
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 1}
    assert failures(done.stdout) == {
        "web2": "unexpected change compared with the snapshot: web2 (127.0.0.12): unexpected "
                "drift since the baseline: port 8443 not open -> open"}
    assert shown_changes(done.stdout) == {"web1": "none"}
    post = json.loads((tmp_path / "post-change.json").read_text())
    assert post["hosts"][1]["drift"] == {"opened": [8080, 8443], "closed": [], "changed": [],
                                         "unexpected": [8443], "in_baseline": True}
    assert (post["drift"]["rechecked"], post["drift"]["confirmed"]) == (2, 2)


def test_gate_change_fails_the_hosts_whose_port_stays_closed(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path) -> None:
    lab.open(demo_binds(skip={("web2", 8080)}))
    done = run_playbook(PLAYBOOKS / "gate_change.yml", "-e",
                        f"gate_dir={tmp_path} wait_timeout=2 wait_interval=0.5")
    assert done.returncode == 2
    assert failures(done.stdout) == {
        "web2": "service port 8080 did not open after the change: web2 (127.0.0.12): did not "
                "converge within 2 s: port 8080 closed (expected open)"}
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 1}
    assert shown_changes(done.stdout) == {"web1": "none"}


def test_gate_change_leaves_hosts_without_management_port_alone(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path) -> None:
    lab.open(demo_binds(skip={("web2", 2222)}))
    done = run_playbook(PLAYBOOKS / "gate_change.yml", "-e", f"gate_dir={tmp_path}")
    assert done.returncode == 2
    assert failures(done.stdout) == {
        "web2": "not changing this host, its management port 2222 is not reachable: web2 "
                "(127.0.0.12): port 2222 closed (expected open)"}
    assert "web1: applying the change, restarting the service" in messages(done.stdout)
    assert "web2: applying the change, restarting the service" not in messages(done.stdout)
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 1}


# -- expectations from group_vars and host_vars, and failing only the violating hosts ----------
POLICY_INVENTORY = {
    "hosts.yml": """
all:
  vars:
    ansible_connection: local
  children:
    web:
      hosts:
        w1: {ansible_host: 127.0.0.31}
        w2: {ansible_host: 127.0.0.32}
    db:
      hosts:
        d1: {ansible_host: 127.0.0.33}
        d2: {ansible_host: 127.0.0.34}
""",
    "group_vars/all.yml": "portscan_expect_open: 2222\nportscan_allowed_open: 2222\n",
    "group_vars/web.yml": "portscan_expect_open: 2222,8080\n"
                          "portscan_allowed_open: 2222,8080,8443\n",
    # w2 narrows its group's allow-list and keeps its group's expect_open
    "host_vars/w2.yml": "portscan_allowed_open: 2222,8080\n",
    # d2: no allow-list at all (null replaces the one of group all)
    "host_vars/d2.yml": "portscan_allowed_open: null\n",
}
POLICY_LISTENERS = [(f"127.0.0.{n}", port) for n, ports in [
    (31, (2222, 8080, 8443)), (32, (2222, 8080, 8443)), (33, (2222, 15432)), (34, (2222, 15432)),
] for port in ports]

POLICY_PLAYBOOKS = {
    "run_once": """
- name: Audit in one task, then fail only the hosts that did not pass
  hosts: all
  gather_facts: false
  tasks:
    - name: Scan and judge every host
      nornir_portscan.portscan.portscan:
        ports: 2222,8080,8443,15432
        expect_closed: 9  # the task's default: no host variable replaces it
        timeout: 0.5
      run_once: true
      delegate_to: localhost
      register: scan
    - name: Keep the whole result
      ansible.builtin.copy:
        content: "{{ scan | to_json }}"
        dest: "{{ out }}/scan.json"
        mode: "0644"
      run_once: true
      delegate_to: localhost
    - name: Fail the hosts that did not pass
      ansible.builtin.assert:
        that: scan.hosts[inventory_hostname].passed
        fail_msg: "{{ scan.hosts[inventory_hostname].failure }}"
        quiet: true
""",
    "per_host": """
- name: Each host scans itself and fails on its own violations
  hosts: all
  gather_facts: false
  tasks:
    - name: Scan this host
      nornir_portscan.portscan.portscan:
        ports: 2222,8080,8443,15432
        expect_closed: 9
        timeout: 0.5
        fail_on_violation: true
""",
}


@pytest.mark.parametrize("mode", ["run_once", "per_host"])
def test_policy_from_group_and_host_vars_fails_only_the_violating_hosts(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path, mode: str) -> None:
    for name, text in POLICY_INVENTORY.items():
        path = tmp_path / "inventory" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    lab.open(POLICY_LISTENERS)
    playbook = write(tmp_path, "policy.yml", POLICY_PLAYBOOKS[mode])
    done = run_playbook(playbook, "-e", f"out={tmp_path}",
                        inventory=tmp_path / "inventory" / "hosts.yml")
    assert done.returncode == 2
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {
        "w1": 0, "w2": 1, "d1": 1, "d2": 0}
    assert failures(done.stdout) == {
        "w2": "w2 (127.0.0.32): port 8443 open (not in allowed_open)",
        "d1": "d1 (127.0.0.33): port 15432 open (not in allowed_open)",
    }
    if mode == "per_host":
        return
    scan = json.loads((tmp_path / "scan.json").read_text())
    assert {name: h["policy"] for name, h in scan["hosts"].items()} == {
        "w1": {"expect_open": "2222,8080", "expect_closed": "9", "expect_filtered": "",
               "allowed_open": "2222,8080,8443"},
        "w2": {"expect_open": "2222,8080", "expect_closed": "9", "expect_filtered": "",
               "allowed_open": "2222,8080"},
        "d1": {"expect_open": "2222", "expect_closed": "9", "expect_filtered": "",
               "allowed_open": "2222"},
        "d2": {"expect_open": "2222", "expect_closed": "9", "expect_filtered": "",
               "allowed_open": None},
    }
    assert (scan["failed_hosts"], scan["compliance"]) == (
        ["w2", "d1"], {"compliant": 2, "non_compliant": 2, "error": 0, "violations": 2})


RUN_ONCE_FAIL = """
- name: fail_on_violation with run_once
  hosts: all
  gather_facts: false
  tasks:
    - name: Scan
      nornir_portscan.portscan.portscan:
        ports: 2222
        fail_on_violation: true
      run_once: true
"""


def test_fail_on_violation_with_run_once_is_refused(run_playbook: PlaybookRunner,
                                                    tmp_path: Path) -> None:
    playbook = write(tmp_path, "run_once_fail.yml", RUN_ONCE_FAIL)
    done = run_playbook(playbook)
    assert done.returncode == 2
    assert failures(done.stdout) == {"web1": (
        "fail_on_violation cannot be used with run_once: a failed run_once task fails every host "
        "of the play, not only the hosts that did not pass. Leave it off and fail those hosts in "
        "the next task, e.g. ansible.builtin.assert that scan.hosts[inventory_hostname].passed, "
        "with scan.hosts[inventory_hostname].failure as its fail_msg; or drop run_once so that "
        "each host scans itself and fails on its own")}
    assert "ok: [" not in done.stdout  # refused before any scan


RUN_ONCE = """
- name: Scan the play's hosts in one task, then branch per host
  hosts: all
  gather_facts: false
  tasks:
    - name: Scan every host, each on its portscan_ports (group web's, else all's)
      nornir_portscan.portscan.portscan:
        timeout: 0.5
      run_once: true
      register: scan
    - name: Keep the whole result
      ansible.builtin.copy:
        content: "{{ scan | to_json }}"
        dest: "{{ out }}/scan.json"
        mode: "0644"
      run_once: true
      delegate_to: localhost
    - name: Mark the hosts with every scanned port open
      ansible.builtin.copy:
        content: "{{ scan.hosts[inventory_hostname].open_ports | to_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.all_open"
        mode: "0644"
      delegate_to: localhost
      when: scan.hosts[inventory_hostname].all_open
    - name: Without run_once each host scans itself
      nornir_portscan.portscan.portscan:
        ports: 2222
      register: own
    - name: Keep what each host saw
      ansible.builtin.copy:
        content: "{{ own.hosts | list | to_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.own"
        mode: "0644"
      delegate_to: localhost
"""


def test_run_once_scans_the_inventory_in_one_task(run_playbook: PlaybookRunner,
                                                  demo_listeners: NetnsListeners, tmp_path: Path,
                                                  path_args: list[str]) -> None:
    playbook = write(tmp_path, "run_once.yml", RUN_ONCE)
    done = run_playbook(playbook, "-e", f"out={tmp_path}", *path_args)
    assert done.returncode == 0, done.stdout + done.stderr
    scan = json.loads((tmp_path / "scan.json").read_text())
    assert ran_as_module(done) is (len(path_args) > 1)
    assert {name: (h["address"], h["open_ports"], h["scanned_ports"], h["all_open"])
            for name, h in scan["hosts"].items()} == {
        "web1": ("127.0.0.11", [2222, 8080, 8443], "2222,8080,8443", True),
        "web2": ("127.0.0.12", [2222, 8080], "2222,8080,8443", False),
        "db1": ("127.0.0.13", [2222, 15432], "2222,8080,8443,15432", False),
    }
    assert scan["summary"]["hosts"] == 3
    assert sorted(p.name for p in tmp_path.glob("*.all_open")) == ["web1.all_open"]
    assert {host: json.loads((tmp_path / f"{host}.own").read_text())
            for host in ("web1", "web2", "db1")} == {
        "web1": ["web1"], "web2": ["web2"], "db1": ["db1"]}


LOOP = """
- name: A loop over port lists scans each list
  hosts: all
  gather_facts: false
  tasks:
    - name: Scan every host on one list of ports at a time
      nornir_portscan.portscan.portscan:
        ports: "{{ item }}"
        inventory_policy: false  # the inventory's policies would add their ports
        timeout: 0.5
      loop: ["2222", "8080,8443"]
      run_once: true
      register: scans
    - name: Keep what each item scanned
      ansible.builtin.copy:
        content: "{{ scans.results | map(attribute='hosts') | to_json }}"
        dest: "{{ out }}/loop.json"
        mode: "0644"
      run_once: true
      delegate_to: localhost
"""


def test_a_loop_over_port_lists_scans_each_list(run_playbook: PlaybookRunner,
                                                demo_listeners: NetnsListeners, tmp_path: Path,
                                                path_args: list[str]) -> None:
    """The task's own ports beat the hosts' portscan_ports (issue #10: they did not)."""
    playbook = write(tmp_path, "loop.yml", LOOP)
    done = run_playbook(playbook, "-e", f"out={tmp_path}", *path_args)
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = json.loads((tmp_path / "loop.json").read_text())
    assert {name: h["scanned_ports"] for name, h in first.items()} == dict.fromkeys(
        ("web1", "web2", "db1"), "2222")
    assert {name: h["scanned_ports"] for name, h in second.items()} == dict.fromkeys(
        ("web1", "web2", "db1"), "8080,8443")
    assert second["web1"]["open_ports"] == [8080, 8443]


LOCALHOST = """
- name: Scan localhost
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Scan the play's only host
      nornir_portscan.portscan.portscan:
        ports: "{{ listen_port }}"
      run_once: true
      register: scan
    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ scan | to_json }}"
        dest: "{{ out }}/scan.json"
        mode: "0644"
      vars:  # discovery may pick a Python that cannot run copy either
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""


@pytest.mark.parametrize("inventory", ["implicit", "explicit"])
def test_run_once_on_localhost(run_playbook: PlaybookRunner, lab: NetnsListeners,
                               tmp_path: Path, inventory: str) -> None:
    port = 8000
    lab.open([("127.0.0.1", port)])
    hosts = write(tmp_path, "hosts.ini", {
        "implicit": "# no hosts: localhost is implicit\n",
        "explicit": "localhost ansible_connection=local\n",  # interpreter left to discovery
    }[inventory])
    playbook = write(tmp_path, "localhost.yml", LOCALHOST)
    done = run_playbook(playbook, "-e", f"out={tmp_path} listen_port={port}", inventory=hosts)
    assert done.returncode == 0, done.stdout + done.stderr
    scan = json.loads((tmp_path / "scan.json").read_text())
    assert {n: (h["address"], h["open_ports"]) for n, h in scan["hosts"].items()} == {
        "localhost": ("127.0.0.1", [port])}


def test_localhost_with_a_python_without_the_engine(run_playbook: PlaybookRunner,
                                                    tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    hosts = write(tmp_path, "hosts.ini", f"localhost ansible_connection=local "
                                         f"ansible_python_interpreter={bare}/bin/python\n")
    playbook = write(tmp_path, "localhost.yml", LOCALHOST)
    done = run_playbook(playbook, "-e", f"out={tmp_path} listen_port=22", inventory=hosts)
    assert done.returncode == 2
    assert ("the nornir-portscan engine (nornir-portscan>=0.1.0,<0.2.0) is not installed on the "
            f"host that runs the scan (Python {bare}/bin/python; ") in done.stdout
    assert f"install it with: {bare}/bin/python -m pip install 'nornir-portscan>=0.1.0,<0.2.0'" \
        in done.stdout


FAILING = """
- name: Scan with bad ports
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Scan
      nornir_portscan.portscan.portscan:
        targets: [127.0.0.1]
        ports: 22,90-80
"""


def test_bad_ports_fail_the_task_with_the_message(run_playbook: PlaybookRunner, tmp_path: Path,
                                                  path_args: list[str]) -> None:
    playbook = write(tmp_path, "failing.yml", FAILING)
    done = run_playbook(playbook, *path_args, inventory=DEMO_INVENTORY)
    assert done.returncode == 2
    assert '"msg": "invalid port range \'90-80\' in \'22,90-80\': start must be <= end, ' \
           'e.g. \'80-90\'"' in done.stdout
    assert recap(done.stdout)["localhost"]["failed"] == 1


UNRESOLVABLE = """
- name: Scan a name that does not resolve
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Scan
      nornir_portscan.portscan.portscan:
        targets:
          - {name: ghost, address: ghost.invalid}
          - 127.0.0.1
        ports: "{{ listen_port }}"
      register: scan
    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ scan | to_json }}"
        dest: "{{ out }}/scan.json"
        mode: "0644"
"""


def test_unresolvable_target_is_a_host_status(run_playbook: PlaybookRunner, tmp_path: Path,
                                              path_args: list[str]) -> None:
    # In a namespace of its own the resolver cannot reach any server: no query leaves the host.
    playbook = write(tmp_path, "unresolvable.yml", UNRESOLVABLE)
    done = run_playbook(playbook, "-e", f"out={tmp_path} listen_port=9", *path_args,
                        inventory=DEMO_INVENTORY)
    assert done.returncode == 0, done.stdout + done.stderr
    scan = json.loads((tmp_path / "scan.json").read_text())
    assert ran_as_module(done) is (len(path_args) > 1)
    ghost = scan["hosts"]["ghost"]
    assert (ghost["status"], ghost["address"], ghost["resolved"], ghost["up"]) == (
        "unresolved", None, False, False)
    assert ghost["error"] == "Temporary failure in name resolution"
    assert (scan["hosts"]["127.0.0.1"]["status"], scan["summary"]["unresolved"]) == ("up", 1)


CHECK_MODE = """
- name: Scan in check mode
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Scan
      nornir_portscan.portscan.portscan:
        targets: [127.0.0.1]
        ports: "{{ listen_port }}"
        report: "{{ out }}/report.json"
      register: scan
    - name: Branch on the result
      ansible.builtin.assert:
        that: scan.hosts['127.0.0.1'].any_open and scan.changed and scan.reports == []
"""


def test_check_mode_scans_and_writes_no_report(run_playbook: PlaybookRunner,
                                               lab: NetnsListeners, tmp_path: Path) -> None:
    port = 8000
    lab.open([("127.0.0.1", port)])
    playbook = write(tmp_path, "check.yml", CHECK_MODE)
    done = run_playbook(playbook, "--check", "-e", f"out={tmp_path} listen_port={port}",
                        inventory=DEMO_INVENTORY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "report.json").exists()
