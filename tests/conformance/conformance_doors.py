"""Each front door run for real with a scenario's settings, and its outcome normalized.

An outcome is ``{"error": message}`` or ``{"hosts": [entry, ...]}`` (sorted by name, each
entry reduced to the fields the contract compares). A ``Run`` also lists ``problems``: places
where a door contradicts itself (a Nornir Result ``failed`` that is not ``not passed``, a CLI
exit code that does not match its hosts, an error that is not an ``InputError``, ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from conformance_scenarios import ABSENT, COMMON, Scenario, World

REPO = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
FIELDS = (
    "name",
    "address",
    "status",
    "open_ports",
    "filtered_ports",
    "closed_count",
    "passed",
    "failure",
    "compliant",
    "violations",
)
ERROR_PREFIX = "portscan: error: "


@dataclass
class Run:
    outcome: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None  # a shard's JSON report, for the merge


UDP = 1_000_000  # ports.UDP: a UDP port key


def normal_host(entry: dict[str, Any]) -> dict[str, Any]:
    """The fields the doors must agree on; drift and wait without their timings. A host that
    scanned UDP ports adds ``udp``, its UDP port entries ``[port, state, reason]``; its
    ``open_ports`` and ``filtered_ports`` are the TCP ones, ``closed_count`` TCP and UDP."""
    normal = {key: entry.get(key, ABSENT) for key in FIELDS}
    if "U:" in entry.get("scanned_ports", "") or any(
        p.get("protocol") == "udp" for p in entry.get("ports", ())
    ):
        for key in ("open_ports", "filtered_ports"):
            normal[key] = [p for p in normal[key] if p < UDP]
        normal["closed_count"] = entry["closed_count"] + entry.get("udp_closed_count", 0)
        normal["udp"] = [
            [p["port"], p["state"], p["reason"]] for p in entry["ports"] if p["protocol"] == "udp"
        ]
    if "drift" in entry:
        normal["drift"] = {
            key: entry["drift"].get(key, ABSENT)
            for key in ("opened", "closed", "changed", "unexpected", "in_baseline")
        }
    if "wait" in entry:  # elapsed and rounds depend on the clock
        normal["wait"] = {key: entry["wait"].get(key, ABSENT) for key in ("converged", "unmet")}
    return normal


def hosts_outcome(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"hosts": sorted((normal_host(e) for e in entries), key=lambda h: h["name"])}


def report_path(world: World, door: str, scenario: Scenario) -> Path:
    return world.root / "reports" / f"{door}-{scenario.name}.json"


def settings_for(world: World, door: str, scenario: Scenario) -> dict[str, Any]:
    """The scenario's settings plus the common options and, for a ``report_file`` scenario,
    this door's own report file."""
    settings = {**scenario.settings, **COMMON}
    if scenario.report_file:
        settings["reports"] = {"json": str(report_path(world, door, scenario))}
    return settings


def read_report(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["hosts"])


def _failed_names(outcome: dict[str, Any]) -> list[str]:
    return [h["name"] for h in outcome.get("hosts", []) if not h["passed"]]


def _check_file(run: Run, world: World, door: str, scenario: Scenario) -> None:
    """A door that wrote the scenario's report: the file must hold what the door returned."""
    if not scenario.report_file or "hosts" not in run.outcome:
        return
    path = report_path(world, door, scenario)
    if not path.exists():
        run.problems.append(f"no report file {path}")
        return
    in_file = hosts_outcome(read_report(path))
    if in_file != run.outcome:
        run.problems.append(f"the report file says {in_file}, the door returned {run.outcome}")


# -- the CLI -----------------------------------------------------------------------------------
def _flag_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def cli_argv(settings: dict[str, Any], json_file: Path) -> list[str]:
    """``--flag=value`` throughout: ``--recheck -1`` would read ``-1`` as an option (the parser
    has ``-4`` and ``-6``)."""
    flags = {"policy_file": "policy"}
    argv: list[str] = []
    json_target = str(json_file)
    for key, value in settings.items():
        if key == "reports":
            json_target = value["json"]
        elif key == "wait":
            argv += ["--wait"] if value else []
        elif key == "exclude":
            argv.append(f"--exclude={','.join(value)}")
        elif key == "protocol":  # nmap's -sU, -sT, both for both
            argv += {"tcp": ["--tcp"], "udp": ["--udp"], "both": ["--udp", "--tcp"]}[value]
        else:
            argv.append(f"--{flags.get(key, key).replace('_', '-')}={_flag_value(value)}")
    return [*argv, f"--json={json_target}"]


def run_cli(world: World, scenario: Scenario) -> Run:
    settings = settings_for(world, "cli", scenario)
    json_file = world.root / "cli" / f"{scenario.name}.json"
    json_file.parent.mkdir(exist_ok=True)
    argv = [str(PYTHON), "-m", "nornir_portscan.cli", *world.hosts, *cli_argv(settings, json_file)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=world.root, env=door_env()
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if done.returncode in (2, 3):
        kind = "error" if done.returncode == 2 else "report_error"
        run = Run({kind: errors[0][len(ERROR_PREFIX) :] if errors else done.stderr})
        if len(errors) != 1:
            run.problems.append(f"exit {done.returncode} with stderr {done.stderr!r}")
        if scenario.cli_exit is not None and done.returncode != scenario.cli_exit:
            run.problems.append(f"exit code {done.returncode}, expected {scenario.cli_exit}")
        return run
    if done.returncode not in (0, 1):
        return Run({"exit": done.returncode, "stderr": done.stderr})
    report = Path(settings.get("reports", {}).get("json", json_file))
    run = Run(hosts_outcome(read_report(report)))
    if "shard" in settings:
        run.report = json.loads(report.read_text())
    wanted = scenario.cli_exit
    if wanted is None:
        wanted = 1 if _failed_names(run.outcome) else 0
    if done.returncode != wanted:
        run.problems.append(f"exit code {done.returncode}, expected {wanted}: {done.stderr!r}")
    if errors:
        run.problems.append(f"errors on stderr with exit {done.returncode}: {errors}")
    return run


def door_env() -> dict[str, str]:
    """The environment of every door's process: the worktree's engine first."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONSTARTUP", None)
    return env


# -- the Python API ----------------------------------------------------------------------------
def exception_outcome(exc: BaseException, problems: list[str]) -> dict[str, Any]:
    """An input error (an ``InputError``, so a ``ValueError``), or a report not written."""
    from nornir_portscan.errors import InputError, ReportError

    if isinstance(exc, ReportError):
        return {"report_error": str(exc)}
    if not isinstance(exc, InputError) or not isinstance(exc, ValueError):
        problems.append(f"{type(exc).__name__} is not an InputError (ValueError)")
    return {"error": str(exc)}


def run_python(world: World, scenario: Scenario) -> Run:
    from nornir_portscan.fleet import (
        iter_shard_json,
        parse_shard,
        shard_job,
        shard_section,
        where_ran,
    )
    from nornir_portscan.pipeline import build_job, run_job, write_reports
    from nornir_portscan.reports.data import host_entry

    settings = settings_for(world, "python", scenario)
    text = settings.pop("shard", None)
    problems: list[str] = []
    try:
        shard = None if text is None else parse_shard(text)
        job = build_job(list(world.hosts), **settings)
        if shard is not None:  # --shard: the fleet functions
            job, plan, mine = shard_job(job, *shard)
        audit = run_job(job)
        write_reports(job.reports, audit)
    except Exception as exc:  # the outcome is what was raised
        return Run(exception_outcome(exc, problems), problems)
    run = Run(hosts_outcome([host_entry(audit, i) for i in range(len(audit.report.hosts))]))
    if shard is not None:
        section = shard_section(plan, mine, where_ran(t.address for t in job.request.targets))
        run.report = json.loads("".join(iter_shard_json(audit, section)))
    if audit.violated != bool(_failed_names(run.outcome)):
        run.problems.append(f"audit.violated is {audit.violated}")
    _check_file(run, world, "python", scenario)
    return run


# -- Nornir ------------------------------------------------------------------------------------
def make_nornir(world: World) -> Any:
    from nornir import InitNornir

    files = world.root / "nornir"
    return InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": 10}},
        inventory={
            "plugin": "SimpleInventory",
            "options": {
                "host_file": str(files / "hosts.yaml"),
                "group_file": str(files / "groups.yaml"),
                "defaults_file": str(files / "defaults.yaml"),
            },
        },
        logging={"enabled": False},
    )


def write_nornir_inventory(world: World) -> None:
    files = world.root / "nornir"
    files.mkdir()
    hosts = {name: {"data": {}} for name in world.hosts}  # no hostname: the name is the address
    (files / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (files / "groups.yaml").write_text("{}\n")
    (files / "defaults.yaml").write_text("{}\n")


def run_nornir(world: World, scenario: Scenario) -> Run:
    """``nr.run(task=portscan, ...)``: one call per host. An excluded host's non-failed
    'excluded' Result counts as absent, as the other doors leave the host out."""
    from nornir_portscan import portscan

    settings = settings_for(world, "nornir", scenario)
    results = make_nornir(world).run(task=portscan, **settings)
    problems: list[str] = []
    errors: dict[str, str] = {}
    entries = []
    for name, multi in sorted(results.items()):
        result = multi[0]
        if result.exception is not None:
            exception_outcome(result.exception, problems)
            errors[name] = result.result
            if result.result != str(result.exception) or not result.failed:
                problems.append(f"{name}: {result!r} (failed={result.failed})")
        elif isinstance(result.result, str):
            if result.result != f"{name} excluded: not scanned" or result.failed:
                errors[name] = result.result
                problems.append(f"{name}: unexpected result {result.result!r}")
        else:
            entries.append(dict(result.result))
            if result.failed != (not result.result["passed"]):
                problems.append(f"{name}: failed={result.failed}, passed={result.result['passed']}")
    if errors:
        messages = set(errors.values())
        if len(messages) == 1 and len(errors) == len(results):
            return Run({"error": messages.pop()}, problems)
        return Run({"mixed": {"errors": errors, **hosts_outcome(entries)}}, problems)
    return Run(hosts_outcome(entries), problems)


def run_nornir_inventory(world: World, scenario: Scenario) -> Run:
    """``scan_inventory(nr, ...)``: the whole inventory in one engine run. An excluded host
    gets the task's non-failed 'excluded' Result, which counts as absent."""
    from nornir_portscan import scan_inventory
    from nornir_portscan.fleet import parse_shard, shard_hosts

    settings = settings_for(world, "nornir_inventory", scenario)
    text = settings.pop("shard", None)
    problems: list[str] = []
    try:
        nr = make_nornir(world)
        if text is not None:  # --shard: a filter of the inventory by the fleet functions,
            settings["allow_empty"] = True  # which may leave no host (an empty shard)
            keys = [(h.name, h.hostname or h.name) for h in nr.inventory.hosts.values()]
            mine = shard_hosts(keys, *parse_shard(text))
            nr = nr.filter(filter_func=lambda h: (h.name, h.hostname or h.name) in mine)
        results = scan_inventory(nr, **settings)
    except Exception as exc:  # the outcome is what was raised
        return Run(exception_outcome(exc, problems), problems)
    entries = []
    for name, multi in sorted(results.items()):
        result = multi[0]
        if isinstance(result.result, str):
            if result.result != f"{name} excluded: not scanned" or result.failed:
                problems.append(f"{name}: unexpected Result {result.result!r}")
            continue
        entries.append(dict(result.result))
        if result.failed != (not result.result["passed"]):
            problems.append(f"{name}: failed={result.failed}, passed={result.result['passed']}")
    run = Run(hosts_outcome(entries), problems)
    _check_file(run, world, "nornir_inventory", scenario)
    return run


# -- Ansible -----------------------------------------------------------------------------------
INTERPRETERS = {
    # the interpreter ansible-playbook runs in: the action plugin scans in its own process
    "ansible": str(PYTHON.parent / "python"),
    # another path to a Python with the engine: the action plugin runs the module
    "ansible_module": str(PYTHON.parent / "python3"),
}
PACKAGE = "nornir_portscan.portscan"
MODULE = f"{PACKAGE}.portscan"


def module_args(settings: dict[str, Any]) -> dict[str, Any]:
    args = {key: value for key, value in settings.items() if key != "reports"}
    if "reports" in settings:
        args["report"] = settings["reports"]["json"]
    return args


def write_playbook(world: World, door: str, all_scenarios: dict[str, Scenario]) -> Path:
    """One play over the three inventory hosts, one ``run_once`` task per scenario, then one
    task that saves every registered result."""
    tasks: list[dict[str, Any]] = []
    names = [s.name for s in all_scenarios.values() if door not in s.skip]
    for name in names:
        settings = settings_for(world, door, all_scenarios[name])
        if "shard" in settings:
            tasks += shard_tasks(door, name, settings)
            continue
        tasks.append(
            {
                "name": f"{door} {name}",
                MODULE: module_args(settings_for(world, door, all_scenarios[name])),
                "run_once": True,
                "delegate_to": "localhost",
                "register": f"result_{name}",
                "ignore_errors": True,
            }
        )
    saved = ", ".join(f"'{name}': result_{name}" for name in names)
    tasks.append(
        {
            "name": "save the results",
            "ansible.builtin.copy": {
                "content": "{{ {" + saved + "} | to_json }}",
                "dest": str(world.root / f"{door}.results.json"),
                "mode": "0644",
            },
            "run_once": True,
            "delegate_to": "localhost",
        }
    )
    play = {
        "name": door,
        "hosts": "all",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": INTERPRETERS[door]},
        "tasks": tasks,
    }
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local"},
            "hosts": {name: {} for name in world.hosts},
            # the targets of portscan_plan (no ansible_host: the name is the address)
            "children": {"portscan_targets": {"hosts": {name: {} for name in world.hosts}}},
        }
    }
    (world.root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    playbook = world.root / f"{door}.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    return playbook


PLAN_KEYS = ("ports", "timeout", "min_timeout", "adaptive", "retries", "rate", "host_timeout")
SHARD_KEYS = ("processes", "concurrency")


def shard_tasks(door: str, name: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """``--shard I/N`` in Ansible: ``portscan_plan`` with ``shards=N`` (the plan of the CLI's
    shards), then ``portscan_shard`` with ``shard=I/N``. A bad spelling's N is not a count:
    the plan then has 2 shards, and ``portscan_shard`` judges the spelling."""
    unknown = set(settings) - {*PLAN_KEYS, *SHARD_KEYS, "shard"}
    assert not unknown, f"{name}: portscan_plan and portscan_shard take no {sorted(unknown)}"
    text = settings["shard"]
    count = text.rpartition("/")[2]
    plan = {k: settings[k] for k in PLAN_KEYS if k in settings}
    plan["shards"] = int(count) if count.isdigit() and 1 <= int(count) <= 4096 else 2
    shard = {k: settings[k] for k in SHARD_KEYS if k in settings}
    shard.update(plan=f"{{{{ plan_{name}.plan }}}}", shard=text)
    common = {"run_once": True, "delegate_to": "localhost", "ignore_errors": True}
    return [
        {
            "name": f"{door} {name} plan",
            f"{PACKAGE}.portscan_plan": plan,
            "register": f"plan_{name}",
            **common,
        },
        {
            "name": f"{door} {name}",
            f"{PACKAGE}.portscan_shard": shard,
            "register": f"result_{name}",
            **common,
        },
    ]


def ansible_env(world: World, door: str) -> dict[str, str]:
    collections = world.root / "collections"
    namespace = collections / "ansible_collections" / "nornir_portscan"
    namespace.mkdir(parents=True, exist_ok=True)
    if not (namespace / "portscan").exists():
        (namespace / "portscan").symlink_to(REPO, target_is_directory=True)
    home = world.root / f"ansible-home-{door}"
    return {
        **door_env(),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "PATH": f"{PYTHON.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def start_playbook(
    world: World, door: str, all_scenarios: dict[str, Scenario]
) -> subprocess.Popen[bytes]:
    """Start ``ansible-playbook`` for ``door`` in its own session, its log in ``{door}.log``."""
    playbook = write_playbook(world, door, all_scenarios)
    # -vvv: the log shows where each task ran its module (ansible_task_log)
    argv = [
        str(PYTHON.parent / "ansible-playbook"),
        "-vvv",
        "-i",
        str(world.root / "inventory.yml"),
        str(playbook),
    ]
    with (world.root / f"{door}.log").open("wb") as log:
        return subprocess.Popen(
            argv,
            env=ansible_env(world, door),
            cwd=world.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def ansible_task_log(log: str, door: str, name: str) -> str:
    """The part of the ``-vvv`` log of task ``{door} {name}``."""
    start = log.index(f"TASK [{door} {name}]")
    end = log.find("\nTASK [", start + 1)
    return log[start:] if end < 0 else log[start:end]


def ansible_outcome(world: World, door: str, scenario: Scenario, result: dict[str, Any]) -> Run:
    problems: list[str] = []
    # the in-process door must not start the module; the module door must
    log = ansible_task_log((world.root / f"{door}.log").read_text(), door, scenario.name)
    ran_module = "AnsiballZ_portscan.py" in log
    if ran_module != (door == "ansible_module"):
        problems.append(f"{door}: the module {'ran' if ran_module else 'did not run'}")
    if "shard" in scenario.settings:  # portscan_shard: the shard's report, or one line
        if result.get("failed") or "report" not in result:
            return Run({"error": result.get("msg")}, problems)
        report = result["report"]
        return Run(hosts_outcome(report["hosts"]), problems, report)
    if "hosts" not in result:
        if not result.get("failed"):
            problems.append(f"neither hosts nor a failure: {result}")
        return Run({"error": result.get("msg")}, problems)
    hosts = result["hosts"]
    if result.get("failed"):  # with hosts: the scan ran and a report could not be written
        return Run({"report_error": result.get("msg")}, problems)
    run = Run(hosts_outcome(list(hosts.values())), problems)
    if sorted(hosts) != [h["name"] for h in run.outcome["hosts"]]:
        problems.append(f"hosts keyed {sorted(hosts)}")
    if sorted(result.get("failed_hosts", [])) != _failed_names(run.outcome):
        problems.append(f"failed_hosts {result.get('failed_hosts')}")
    _check_file(run, world, door, scenario)
    return run


# -- the merge: portscan merge and portscan_merge --------------------------------------------
MERGE_GROUPS = ("web", "web", "db")
"""The matrix group of each world host: a policy file's group (CLI), an inventory group
(Ansible)."""


def merge_policy(world: World) -> dict[str, Any]:
    """The expectations of the merge scenario, for every vantage: the open port open."""
    return {"expect_open": str(world.open_port)}


def merge_baseline(world: World) -> Path:
    """The session's baseline but the first host's open port closed then: drift now."""
    path = world.root / "merge-baseline.json"
    data = json.loads(world.baseline.read_text())
    first = data["hosts"][0]
    first["ports"] = [p for p in first["ports"] if p["port"] != world.open_port]
    first["open_ports"] = [p for p in first["open_ports"] if p != world.open_port]
    first["closed_count"] += 1
    path.write_text(json.dumps(data))
    return path


def run_cli_merge(world: World, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """``portscan merge SHARDS --policy FILE --baseline FILE --json -``: its merged JSON."""
    root = world.root / "merge-cli"
    root.mkdir(exist_ok=True)
    files = []
    for index, report in enumerate(reports):
        path = root / f"{index}.json"
        path.write_text(json.dumps(report))
        files.append(str(path))
    groups: dict[str, dict[str, Any]] = {}
    for name, group in zip(world.hosts, MERGE_GROUPS, strict=True):
        groups.setdefault(group, {"hosts": []})["hosts"].append(name)
    policy = root / "policy.yml"
    policy.write_text(yaml.safe_dump({"defaults": merge_policy(world), "groups": groups}))
    done = subprocess.run(
        [str(PYTHON), "-m", "nornir_portscan", "merge", *files, "--policy", str(policy),
         "--baseline", str(merge_baseline(world)), "--json", "-"],
        capture_output=True, text=True, timeout=60, env=door_env(),
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def run_ansible_merge(
    world: World, reports: list[dict[str, Any]], settings: dict[str, Any]
) -> dict[str, Any]:
    """``portscan_plan`` (``shards=2``, the plan of the shards' ``settings``), the shard
    reports kept in its directory, ``portscan_merge`` with the inventory's groups and
    expectations and the same baseline: the merged JSON it writes."""
    root = world.root / "merge-ansible"
    root.mkdir(exist_ok=True)
    for index, report in enumerate(reports):
        (root / f"{index}.json").write_text(json.dumps(report))
    children: dict[str, Any] = {}
    for name, group in zip(world.hosts, MERGE_GROUPS, strict=True):
        children.setdefault(group, {"hosts": {}})["hosts"][name] = {}
    expect = {f"portscan_{k}": v for k, v in merge_policy(world).items()}
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local"},
            "hosts": {name: {} for name in world.hosts},
            "children": {
                "portscan_targets": {
                    "hosts": {name: {} for name in world.hosts},
                    "vars": expect,
                    "children": children,
                }
            },
        }
    }
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    plan = {k: settings[k] for k in PLAN_KEYS if k in settings}
    plan.update(shards=2, directory=str(root / "plans"))
    out = root / "merged.json"
    common = {"run_once": True, "delegate_to": "localhost"}
    tasks = [
        {"name": "plan", f"{PACKAGE}.portscan_plan": plan, "register": "plan", **common},
        *(
            {
                "name": f"keep shard {index}",
                "ansible.builtin.copy": {
                    "src": str(root / f"{index}.json"),
                    "dest": f"{{{{ plan.directory }}}}/shards/{index}.json",
                    "mode": "0644",
                },
                **common,
            }
            for index in range(len(reports))
        ),
        {
            "name": "merge",
            f"{PACKAGE}.portscan_merge": {
                "plan": "{{ plan }}",
                "report": str(out),
                "baseline": str(merge_baseline(world)),
            },
            **common,
        },
    ]
    play = {
        "name": "merge",
        "hosts": "all",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": INTERPRETERS["ansible"]},
        "tasks": tasks,
    }
    playbook = root / "merge.yml"
    playbook.write_text(yaml.safe_dump([play], sort_keys=False))
    done = subprocess.run(
        [str(PYTHON.parent / "ansible-playbook"), "-i", str(root / "inventory.yml"),
         str(playbook)],
        capture_output=True, text=True, timeout=300, env=ansible_env(world, "merge"), cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    return data
