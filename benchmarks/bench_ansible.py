"""Loopback benchmark: one Ansible task scanning 200 and 1,000 hosts x 10 ports vs the CLI.

The task is ``nornir_portscan.portscan.portscan`` with ``run_once`` and no ``targets`` (the
inventory-wide mode), run by ``ansible-playbook`` against an inventory of 1,000 hosts on
127.1.x.y; the CLI is ``portscan`` with the same 1,000 addresses and ports. The output of each is
what its users read: the CLI's JSON report file, the task's registered result (which the timing
callback saves for the check, once the time is taken). Printed: the CLI's wall time, the whole
``ansible-playbook`` run's, and the scan task's own (task start to result, timed by a small
callback plugin), with the ratios to the CLI. The goal (issue 4: "its wall time at most 1.5x
that of the CLI") is the task's: the whole run adds about a second of Ansible's own start-up
(interpreter, inventory, play) that no module can change. Issue 13 times the task a second way:
the same playbook with a no-op ``run_once`` task instead of the scan, its wall time taken from
the scan playbook's (run by run, then the median). Runs alternate so machine noise hits all
alike; medians of the runs; CPU times (user + system, children included) beside the wall times.

It re-runs itself in a network namespace of its own (root and ``ip`` needed; else it warns), so
the machine's listeners do not leak in. Traffic goes to 127.0.0.0/8 only.

    python benchmarks/bench_ansible.py [--runs 3] [--hosts 200 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import REPO, listen, reexec_in_netns, timed

NETNS_FLAG = "PORTSCAN_BENCH_NETNS"
PORTS = "22,80,443,3306,5432,6379,8080,8443,9000,9090"
BIN = Path(sys.executable).parent


def addresses(count: int) -> list[str]:
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


def listeners_for(hosts: list[str]) -> list[tuple[str, int]]:
    """Every 10th host listens on 22 and 80."""
    return [(h, p) for i, h in enumerate(hosts) for p in (22, 80) if i % 10 == 0]


def write_files(workdir: Path, hosts: list[str]) -> None:
    lines = ["all:", "  vars:", "    ansible_connection: local", "  hosts:"]
    lines += [f"    h{i:04d}:\n      ansible_host: {h}" for i, h in enumerate(hosts)]
    (workdir / "hosts.yml").write_text("\n".join(lines) + "\n")
    (workdir / "targets.txt").write_text("\n".join(hosts) + "\n")
    play = """---
- name: Benchmark
  hosts: all
  gather_facts: false
  tasks:
    - name: Scan every host of the play in one task
      nornir_portscan.portscan.portscan:
        ports: %s
      register: scan
      run_once: true
      delegate_to: localhost
"""
    (workdir / "scan.yml").write_text(play % PORTS)
    (workdir / "noop.yml").write_text(NOOP)
    callbacks = workdir / "callbacks"
    callbacks.mkdir(exist_ok=True)
    (callbacks / "task_timer.py").write_text(TASK_TIMER)
    collection = workdir / "collections" / "ansible_collections" / "nornir_portscan"
    collection.mkdir(parents=True, exist_ok=True)
    if not (collection / "portscan").exists():
        (collection / "portscan").symlink_to(REPO)


NOOP = """---
- name: Benchmark
  hosts: all
  gather_facts: false
  tasks:
    - name: A no-op in the scan task's place
      ansible.builtin.debug:
        msg: noop
      run_once: true
      delegate_to: localhost
"""


TASK_TIMER = '''
import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    """Appends the wall time of the task, start to result, to $TASK_TIMES; writes its hosts
    to $TASK_RESULT."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started = time.perf_counter()

    def v2_runner_on_ok(self, result):
        elapsed = time.perf_counter() - self.started
        if "hosts" not in result.result:  # the no-op playbook's task
            return
        with open(os.environ["TASK_TIMES"], "a") as out:
            out.write(f"{elapsed}\\n")
        with open(os.environ["TASK_RESULT"], "w") as out:  # for the check, after the timing
            json.dump(result.result["hosts"], out)
'''


def open_ports(hosts: list[dict], key: str) -> set[tuple[str, int]]:
    return {(h[key], p) for h in hosts for p in h["open_ports"]}


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{model}, {os.cpu_count()} cores"


def bench(count: int, runs: int, workdir: Path) -> bool:
    """One size: prints its figures, returns whether every door found exactly the truth."""
    hosts = addresses(count)
    truth = set(listeners_for(hosts))
    by_name = {f"h{i:04d}": h for i, h in enumerate(hosts)}
    write_files(workdir, hosts)
    task_times = workdir / "task_times.txt"
    task_times.unlink(missing_ok=True)
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(workdir / "collections"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
        "ANSIBLE_CALLBACK_PLUGINS": str(workdir / "callbacks"),
        "ANSIBLE_CALLBACKS_ENABLED": "task_timer",
        "TASK_TIMES": str(task_times),
        "TASK_RESULT": str(workdir / "ansible.json"),
    }
    playbook = [str(BIN / "ansible-playbook"), "-i", "hosts.yml"]
    cli = [
        str(BIN / "portscan"),
        "-p",
        PORTS,
        "-iL",
        "targets.txt",
        "--json",
        "cli.json",
        "--no-progress",
    ]
    walls: dict[str, list[float]] = {"cli": [], "scan": [], "noop": []}
    cpus: dict[str, list[float]] = {"cli": [], "scan": [], "noop": []}
    listeners = listen(truth)
    try:
        for _ in range(runs):
            for name, cmd in (
                ("cli", cli),
                ("scan", [*playbook, "scan.yml"]),
                ("noop", [*playbook, "noop.yml"]),
            ):
                usage = timed(cmd, env, workdir)
                walls[name].append(usage.wall)
                cpus[name].append(usage.cpu)
    finally:
        listeners.close()
    cli_found = open_ports(json.loads((workdir / "cli.json").read_text())["hosts"], "address")
    ansible_hosts = list(json.loads((workdir / "ansible.json").read_text()).values())
    ansible_found = {(by_name[n], p) for n, p in open_ports(ansible_hosts, "name")}
    callback = statistics.median(float(line) for line in task_times.read_text().split())
    median = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    task = statistics.median(s - n for s, n in zip(walls["scan"], walls["noop"], strict=True))
    task_cpu = statistics.median(s - n for s, n in zip(cpus["scan"], cpus["noop"], strict=True))
    print(
        f"{count} inventory hosts x 10 ports, {len(truth)} listeners, median of {runs} runs "
        "(wall, CPU)"
    )
    print(f"  portscan CLI                      {median['cli']:6.2f} s  {cpu['cli']:6.2f} s")
    print(
        f"  scan task (scan - no-op playbook) {task:6.2f} s  {task_cpu:6.2f} s   "
        f"ratio {task / median['cli']:4.2f} (goal <= 1.5)"
    )
    print(
        f"  scan task (callback, start-result){callback:6.2f} s            "
        f"ratio {callback / median['cli']:4.2f}"
    )
    print(f"  ansible-playbook with the scan    {median['scan']:6.2f} s  {cpu['scan']:6.2f} s")
    print(f"  ansible-playbook with a no-op     {median['noop']:6.2f} s  {cpu['noop']:6.2f} s")
    exact = cli_found == truth and ansible_found == truth
    print(
        f"  open ports found exactly: {'yes' if exact else 'NO'} "
        f"(CLI {len(cli_found)}, Ansible {len(ansible_found)}, truth {len(truth)})"
    )
    return exact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args()
    code = reexec_in_netns("portscan-bench-ansible", NETNS_FLAG)
    if code is not None:
        return code
    if not os.environ.get(NETNS_FLAG):
        print("note: running in the machine's own network namespace (no root or no 'ip')")
    print(f"machine: {machine()}")
    exact = True
    for count in args.hosts:
        with tempfile.TemporaryDirectory() as tmp:
            exact = bench(count, args.runs, Path(tmp)) and exact
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
