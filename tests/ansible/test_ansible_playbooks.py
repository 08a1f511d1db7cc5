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


def test_audit_playbook_writes_json_and_table(
        run_playbook: PlaybookRunner, demo_listeners: NetnsListeners, tmp_path: Path) -> None:
    done = run_playbook(PLAYBOOKS / "audit.yml", "-e", f"audit_dir={tmp_path / 'audit'}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "audit" / "exposure.json").read_text())
    assert {h["name"]: (h["address"], h["open_ports"], h["scanned_ports"])
            for h in report["hosts"]} == {
        "web1": ("127.0.0.11", [2222, 8080, 8443], "2222,8080,8443"),
        "web2": ("127.0.0.12", [2222, 8080], "2222,8080,8443"),
        "db1": ("127.0.0.13", [2222, 15432], "2222,8080,8443,15432"),
    }
    table = (tmp_path / "audit" / "exposure.txt").read_text().splitlines()
    assert [line.split() for line in table[:4]] == [
        ["HOST", "ADDRESS", "STATUS", "OPEN", "FILTERED", "CLOSED"],
        ["web1", "127.0.0.11", "up", "2222,8080,8443", "-", "0"],
        ["web2", "127.0.0.12", "up", "2222,8080", "-", "1"],
        ["db1", "127.0.0.13", "up", "2222,15432", "-", "2"],
    ]
    assert "db1: up, open 2222,15432" in messages(done.stdout)


def test_gate_change_passes_when_the_ports_are_open(run_playbook: PlaybookRunner,
                                                    demo_listeners: NetnsListeners) -> None:
    done = run_playbook(PLAYBOOKS / "gate_change.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 0}
    assert "FAILED - RETRYING" not in done.stdout


def test_gate_change_waits_for_the_service_port(run_playbook: PlaybookRunner,
                                                lab: NetnsListeners) -> None:
    lab.open(demo_binds(skip={("web2", 8080)}))
    timer = lab.open_later([("127.0.0.12", 8080)], delay=4)
    try:
        done = run_playbook(PLAYBOOKS / "gate_change.yml", "-e", "wait_timeout=30")
    finally:
        timer.cancel()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED - RETRYING: [web1 -> localhost]: Wait until the service port is open on " \
           "every host" in done.stdout
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 0}


def test_gate_change_fails_the_hosts_whose_port_stays_closed(run_playbook: PlaybookRunner,
                                                             lab: NetnsListeners) -> None:
    lab.open(demo_binds(skip={("web2", 8080)}))
    done = run_playbook(PLAYBOOKS / "gate_change.yml", "-e", "wait_timeout=2")
    assert done.returncode == 2
    assert "service port 8080 on web2 (127.0.0.12) is still not open 2 s after the change" \
           in done.stdout
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 1}


def test_gate_change_leaves_hosts_without_management_port_alone(
        run_playbook: PlaybookRunner, lab: NetnsListeners) -> None:
    lab.open(demo_binds(skip={("web2", 2222)}))
    done = run_playbook(PLAYBOOKS / "gate_change.yml")
    assert done.returncode == 2
    assert "management port 2222 on web2 (127.0.0.12) is not open (status up): not changing " \
           "this host" in done.stdout
    assert messages(done.stdout) == {"web1: applying the change, restarting the service"}
    assert {h: c["failed"] for h, c in recap(done.stdout).items()} == {"web1": 0, "web2": 1}


RUN_ONCE = """
- name: Scan the play's hosts in one task, then branch per host
  hosts: all
  gather_facts: false
  tasks:
    - name: Scan every host
      nornir_portscan.portscan.portscan:
        ports: 2222,8080,8443,15432
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
    assert "Failed to import the required Python library (nornir-portscan) on " in done.stdout
    assert f"Python {bare}/bin/python. This is required to scan ports (pip install " \
           "nornir-portscan)." in done.stdout


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
        that: scan.hosts['127.0.0.1'].any_open and not scan.changed
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
