"""Real ``ansible-playbook`` runs of the scan under each strategy and batch mode: ``free``,
``serial``, ``until``, ``--limit``, ``--check``, ``changed``, ``module_defaults`` groups, ``async``.

The lab's listeners count the connections they accept, so "one scan" is what the network saw,
not what the result says.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ansible_support import NetnsListeners, PlaybookRunner
from test_ansible_playbooks import path_args, recap, write  # noqa: F401 - a fixture

pytestmark = pytest.mark.netns

HOSTS = {"web1": "127.0.0.11", "web2": "127.0.0.12", "db1": "127.0.0.13"}
PORT = 8080


def inventory(tmp_path: Path) -> Path:
    lines = [f"{name} ansible_host={address}" for name, address in HOSTS.items()]
    return write(tmp_path, "hosts.ini", "\n".join(
        ["[all]", *lines, "[all:vars]", "ansible_connection=local",
         "ansible_python_interpreter={{ ansible_playbook_python }}", ""]))


def play(tasks: str, strategy: str = "linear", extra: str = "") -> str:
    return f"""
- name: Scan
  hosts: all
  gather_facts: false
  strategy: {strategy}
{extra}  tasks:
{tasks}
    - name: Keep what each host registered
      ansible.builtin.copy:
        content: "{{{{ scan | to_json }}}}"
        dest: "{{{{ out }}}}/{{{{ inventory_hostname }}}}.json"
        mode: "0644"
"""


SCAN = f"""
    - name: Scan the batch
      nornir_portscan.portscan.portscan:
        ports: "{PORT}"
        inventory_policy: false
        timeout: 0.5
      run_once: true
      register: scan
"""


def said(done: subprocess.CompletedProcess[str]) -> str:
    """What ansible-playbook printed (warnings go to stderr), lines joined."""
    return " ".join((done.stdout + done.stderr).split())


def registered(tmp_path: Path) -> dict[str, dict]:
    return {name: json.loads((tmp_path / f"{name}.json").read_text())
            for name in HOSTS if (tmp_path / f"{name}.json").exists()}


@pytest.fixture
def open_lab(lab: NetnsListeners) -> NetnsListeners:
    lab.open([(address, PORT) for address in HOSTS.values()])
    return lab


@pytest.mark.parametrize("strategy", ["free", "host_pinned", "linear"])
def test_run_once_scans_once_under_every_strategy(
        run_playbook: PlaybookRunner, open_lab: NetnsListeners, tmp_path: Path,
        strategy: str, path_args: list[str]) -> None:  # noqa: F811
    """Under free, Ansible runs a run_once task on every host: each used to scan the whole
    batch (hosts squared, 9 connections here); now the first scans and the others share it."""
    playbook = write(tmp_path, "scan.yml", play(SCAN, strategy))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", *path_args,
                        inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert open_lab.accepted() == len(HOSTS)  # one scan: one connection per host
    results = registered(tmp_path)
    assert set(results) == set(HOSTS)
    for result in results.values():
        assert {n: h["open_ports"] for n, h in result["hosts"].items()} == {
            name: [PORT] for name in HOSTS}
    assert len({r["summary"]["duration"] for r in results.values()}) == 1


def test_free_strategy_scans_again_for_each_loop_item(
        run_playbook: PlaybookRunner, open_lab: NetnsListeners, tmp_path: Path) -> None:
    """The shared result is for one execution: each loop item scans anew."""
    tasks = f"""
    - name: Scan twice in a loop, with the same arguments
      nornir_portscan.portscan.portscan:
        ports: "{PORT}"
        inventory_policy: false
        timeout: 0.5
      loop: [1, 2]
      run_once: true
      register: scan
"""
    playbook = write(tmp_path, "loop.yml", play(tasks, "free"))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert open_lab.accepted() == 2 * len(HOSTS)
    for result in registered(tmp_path).values():
        assert [r["summary"]["open_ports"] for r in result["results"]] == [3, 3]


UNTIL = f"""
    - name: Wait for the port with until
      nornir_portscan.portscan.portscan:
        ports: "{PORT}"
        inventory_policy: false
        timeout: 0.5
      run_once: true
      register: scan
      until: scan.hosts.web1.any_open
      retries: 30
      delay: 1
    - name: Mark the start
      ansible.builtin.file:
        path: "{{{{ out }}}}/started"
        state: touch
        mode: "0644"
      run_once: true
"""


def test_until_retries_scan_again_until_the_port_opens(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path,
        path_args: list[str]) -> None:  # noqa: F811
    started = tmp_path / "started"
    # the port opens after the first attempt: until must scan again, not reuse a result
    tasks = UNTIL.replace("    - name: Mark the start", "    - name: Mark the end")
    marker = f"""
    - name: Mark the start
      ansible.builtin.file:
        path: "{started}"
        state: touch
        mode: "0644"
      run_once: true
"""
    playbook = write(tmp_path, "until.yml", play(marker + tasks))
    lab.open_when(started, [(HOSTS["web1"], PORT)], delay=4)  # after the first attempt
    done = run_playbook(playbook, "-e", f"out={tmp_path}", *path_args,
                        inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED - RETRYING" in done.stdout
    scan = registered(tmp_path)["web2"]
    assert scan["hosts"]["web1"]["open_ports"] == [PORT]
    assert scan["attempts"] > 1


def test_until_that_never_holds_fails_with_what_was_found(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path,
        path_args: list[str]) -> None:  # noqa: F811
    """Ansible fails an exhausted until with the result's msg: it was 'Unknown error'."""
    tasks = UNTIL.replace("retries: 30", "retries: 2").replace("delay: 1", "delay: 0")
    playbook = write(tmp_path, "until.yml", play(tasks))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", *path_args,
                        inventory=inventory(tmp_path))
    assert done.returncode == 2
    assert "Unknown error" not in done.stdout
    assert "fatal: [web1]: FAILED!" in done.stdout
    assert '"msg": "scanned 3 hosts (3 up): 0 open, 0 filtered, 3 closed ports"' in done.stdout


def test_serial_warns_that_a_fixed_report_path_holds_the_last_batch(
        run_playbook: PlaybookRunner, open_lab: NetnsListeners, tmp_path: Path) -> None:
    tasks = SCAN.replace("        timeout: 0.5\n", f"""        timeout: 0.5
        report: "{tmp_path}/all.json"
        report_table: "{tmp_path}/batch-{{{{ ansible_play_batch | first }}}}.txt"
""")
    playbook = write(tmp_path, "serial.yml", play(tasks, extra="  serial: 2\n"))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert said(done).count("[WARNING]: serial: this run_once scan covers this batch only") == 2
    assert "batch only (2 of 3 hosts)" in said(done)
    assert "batch only (1 of 3 hosts)" in said(done)
    # as the warning says: the fixed path holds the last batch, the templated ones all of them
    assert [h["name"] for h in json.loads((tmp_path / "all.json").read_text())["hosts"]] == [
        "db1"]
    assert "web1" in (tmp_path / "batch-web1.txt").read_text()
    assert "web2" in (tmp_path / "batch-web1.txt").read_text()
    assert "db1" in (tmp_path / "batch-db1.txt").read_text()
    results = registered(tmp_path)
    assert set(results["web1"]["hosts"]) == {"web1", "web2"}
    assert set(results["db1"]["hosts"]) == {"db1"}


def test_limit_scans_the_limited_hosts_only(
        run_playbook: PlaybookRunner, open_lab: NetnsListeners, tmp_path: Path) -> None:
    playbook = write(tmp_path, "scan.yml", play(SCAN))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", "--limit", "web2,db1",
                        inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert open_lab.accepted() == 2
    assert set(registered(tmp_path)["db1"]["hosts"]) == {"web2", "db1"}


REPORTING = SCAN.replace("        timeout: 0.5\n", """        timeout: 0.5
        report: "{{ out }}/report.json"
""")


def test_changed_when_report_files_are_written(
        run_playbook: PlaybookRunner, open_lab: NetnsListeners, tmp_path: Path,
        path_args: list[str]) -> None:  # noqa: F811
    playbook = write(tmp_path, "scan.yml", play(REPORTING + SCAN.replace(
        "Scan the batch", "Scan without reports").replace("register: scan", "register: plain")))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", *path_args,
                        inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "report.json").exists()
    assert registered(tmp_path)["web1"]["changed"] is True
    # the recap: the reporting scan and each host's copy changed; the plain scan did not
    assert recap(done.stdout)["web1"]["changed"] == 2


def test_check_mode_probes_writes_no_report_and_says_so(
        run_playbook: PlaybookRunner, open_lab: NetnsListeners, tmp_path: Path,
        path_args: list[str]) -> None:  # noqa: F811
    keep = """
    - name: Keep it even in check mode
      ansible.builtin.copy:
        content: "{{ scan | to_json }}"
        dest: "{{ out }}/check.json"
        mode: "0644"
      check_mode: false
      run_once: true
"""
    playbook = write(tmp_path, "scan.yml", play(REPORTING + keep))
    done = run_playbook(playbook, "--check", "-e", f"out={tmp_path}", *path_args,
                        inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "report.json").exists()
    assert open_lab.accepted() == len(HOSTS)  # the probes were sent: the results are real
    scan = json.loads((tmp_path / "check.json").read_text())
    assert scan["changed"] is True
    assert scan["reports"] == []
    assert scan["would_write"] == [f"{tmp_path}/report.json"]
    assert f"check mode: the scan ran (its probes change nothing), but {tmp_path}/report.json " \
           "were not written" in said(done)
    assert scan["hosts"]["web1"]["open_ports"] == [PORT]


def test_module_defaults_group_sets_the_options(
        run_playbook: PlaybookRunner, open_lab: NetnsListeners, tmp_path: Path,
        path_args: list[str]) -> None:  # noqa: F811
    tasks = """
    - name: Scan with the group's defaults
      nornir_portscan.portscan.portscan:
        inventory_policy: false
      run_once: true
      register: scan
"""
    extra = f"""  module_defaults:
    group/nornir_portscan.portscan.portscan:
      ports: "{PORT},1"
      timeout: 0.5
"""
    playbook = write(tmp_path, "defaults.yml", play(tasks, extra=extra))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", *path_args,
                        inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert registered(tmp_path)["web1"]["hosts"]["db1"]["scanned_ports"] == f"1,{PORT}"


@pytest.mark.parametrize("poll", [1, 0])
def test_async_scan(run_playbook: PlaybookRunner, open_lab: NetnsListeners,
                    tmp_path: Path, poll: int) -> None:
    tasks = SCAN.replace("      register: scan\n", f"""      register: scan
      async: 60
      poll: {poll}
""")
    if poll == 0:
        tasks += """
    - name: Wait for the scan
      ansible.builtin.async_status:
        jid: "{{ scan.ansible_job_id }}"
      register: scan
      until: scan.finished
      retries: 60
      delay: 1
      run_once: true
"""
    playbook = write(tmp_path, "async.yml", play(tasks))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", inventory=inventory(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    scan = registered(tmp_path)["web2"]
    assert {n: h["open_ports"] for n, h in scan["hosts"].items()} == {
        name: [PORT] for name in HOSTS}


@pytest.mark.parametrize(("args", "message"), [
    ("colour: blue", "Unsupported parameters for (nornir_portscan.portscan.portscan) module: "
                     "colour. Supported parameters include: "),
    ("adaptive: \"{{ 'maybe' }}\"", "argument 'adaptive' is of type str and we were unable to "
                                    "convert to bool: "),
    ("targets: [127.0.0.0/8]\n        max_hosts: 1000",
     "raise max_hosts or narrow the target"),
])
def test_bad_arguments_read_the_same_in_process_and_as_a_module(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path,
        path_args: list[str], args: str, message: str) -> None:  # noqa: F811
    tasks = f"""
    - name: Scan with a bad argument
      nornir_portscan.portscan.portscan:
        ports: "{PORT}"
        {args}
      run_once: true
      register: scan
"""
    playbook = write(tmp_path, "bad.yml", play(tasks))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", *path_args,
                        inventory=inventory(tmp_path))
    assert done.returncode == 2
    assert message in said(done)
    assert "Tagged" not in said(done)
    assert "--max-hosts" not in said(done)


def test_an_engine_of_another_version_is_named_with_its_version(
        run_playbook: PlaybookRunner, lab: NetnsListeners, tmp_path: Path) -> None:
    """An old engine first on the module's path (the task's environment): the task names the
    version found, where, and the one it needs; it used to read as a missing library."""
    old = tmp_path / "old" / "nornir_portscan"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text('__version__ = "0.0.9"\n')
    tasks = f"""
    - name: Scan with an old engine first on the path
      nornir_portscan.portscan.portscan:
        ports: "{PORT}"
      environment:
        PYTHONPATH: "{old.parent}"
      run_once: true
      register: scan
"""
    playbook = write(tmp_path, "old.yml", play(tasks))
    done = run_playbook(playbook, "-e", f"out={tmp_path}", inventory=inventory(tmp_path))
    assert done.returncode == 2
    assert ("this collection needs nornir-portscan>=0.1.0,<0.2.0, found nornir-portscan 0.0.9 "
            f"at {old}/__init__.py on the host that runs the scan") in said(done)
    assert "-m pip install 'nornir-portscan>=0.1.0,<0.2.0'" in said(done)
