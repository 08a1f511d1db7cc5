"""Rule 5: the doors agree. The same settings through the CLI, the Python API, the Nornir task
(per host, and ``scan_inventory``) and the Ansible module (in the controller process, and as a
module) give the same hosts, states, verdicts and messages.

Two tests per scenario: each door's outcome is the one the contract asks for, and every door's
outcome is the Python API's, byte for byte (error messages included).
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from conformance_doors import PYTHON, door_env, hosts_outcome
from conformance_scenarios import DOORS, NAMES, Scenario

from nornir_portscan.fleet import merge_reports

SLOW_DOORS = ("ansible", "ansible_module")  # they wait for the playbook run


def _door_params() -> list[object]:
    return [pytest.param(d, marks=pytest.mark.slow) if d in SLOW_DOORS else d for d in DOORS]


def _check(scenario: Scenario, outcome: dict[str, object]) -> None:
    if scenario.expect is not None:
        assert outcome == {"hosts": scenario.expect}
        return
    assert set(outcome) == {scenario.error_kind}, outcome
    message = outcome[scenario.error_kind]
    assert isinstance(message, str)
    assert "\n" not in message
    missing = [phrase for phrase in scenario.error_has if phrase not in message]
    assert not missing, f"{message!r} does not say {missing}"


# doors outermost: the Ansible doors come last, their playbooks run meanwhile
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("door", _door_params())
def test_door_gives_the_contracted_outcome(outcomes, name: str, door: str) -> None:
    scenario = outcomes.scenarios[name]
    if door in scenario.skip:
        pytest.skip(f"{door} cannot express {name}: {scenario.skip[door]}")
    run = outcomes.get(door, name)
    assert run.problems == []
    _check(scenario, run.outcome)


def _dump(outcome: object) -> str:
    def nan_safe(value: object) -> object:
        return "nan" if isinstance(value, float) and math.isnan(value) else value

    return json.dumps(outcome, indent=1, sort_keys=True, default=nan_safe)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_doors_agree(outcomes, name: str) -> None:
    scenario = outcomes.scenarios[name]
    runs = {d: outcomes.get(d, name).outcome for d in DOORS if d not in scenario.skip}
    reference = runs["python"]
    differing = {d: o for d, o in runs.items() if o != reference}
    assert not differing, f"python gives {_dump(reference)}\n" + "\n".join(
        f"{d} gives {_dump(o)}" for d, o in differing.items()
    )


HALVES = ("shard_0_of_2", "shard_1_of_2")
MERGING = ("cli", "python", "ansible")  # the doors whose shard reports carry the plan


@pytest.mark.parametrize(
    "door", [pytest.param(d, marks=pytest.mark.slow) if d in SLOW_DOORS else d for d in MERGING]
)
def test_the_merged_shards_of_a_door_are_the_unsharded_scan(outcomes, door: str) -> None:
    """``--shard 0/2`` and ``1/2`` merged (``merge_reports``; for the CLI, ``portscan merge``)
    are the plain scan of the same targets and ports, and every door's shards are of one
    plan: the same hash as the Python API's."""
    reports = [outcomes.get(door, name).report for name in HALVES]
    assert all(reports), reports
    hashes = {r["shard"]["plan"]["hash"] for r in reports}
    python = {
        r["shard"]["plan"]["hash"] for r in (outcomes.get("python", n).report for n in HALVES)
    }
    assert hashes == python
    assert len(hashes) == 1
    merge = _cli_merge if door == "cli" else lambda _, found: merge_reports(found).to_dict()
    merged = merge(outcomes, reports)
    assert merged["complete"] is True
    assert hosts_outcome(merged["hosts"]) == outcomes.get("python", "plain").outcome


def _cli_merge(outcomes, reports: list[dict[str, object]]) -> dict[str, object]:
    files = []
    for index, report in enumerate(reports):
        path = outcomes.world.root / "cli" / f"merge-{index}.json"
        path.write_text(json.dumps(report))
        files.append(str(path))
    done = subprocess.run(
        [str(PYTHON), "-m", "nornir_portscan", "merge", *files, "--json", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        env=door_env(),
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_shards_from_different_doors_merge_into_the_unsharded_scan(outcomes) -> None:
    """Shard 0/2 scanned by the CLI and 1/2 by Ansible are one plan's shards."""
    reports = [outcomes.get("cli", HALVES[0]).report, outcomes.get("ansible", HALVES[1]).report]
    merged = merge_reports(reports)
    assert merged.complete
    assert hosts_outcome(merged.to_dict()["hosts"]) == outcomes.get("python", "plain").outcome


def _without_sources(data: dict[str, object]) -> dict[str, object]:
    """The merged JSON but where each door kept the shard files (``shards[].source``)."""
    shards = data["shards"]
    assert isinstance(shards, list)
    return {**data, "shards": [{**s, "source": None} for s in shards]}


@pytest.mark.slow
def test_the_cli_merge_and_the_ansible_merge_of_the_same_shards_agree(outcomes) -> None:
    """Rule 5 for the merge: ``portscan merge`` (a policy file's groups and expectations) and
    ``portscan_merge`` (the inventory's groups and ``portscan_expect_open``) of the same two
    shard reports, against the same baseline, give the same merged JSON: hosts, states,
    verdicts, matrix, drift and messages."""
    from conformance_doors import run_ansible_merge, run_cli_merge, settings_for

    reports = [outcomes.get("cli", name).report for name in HALVES]
    assert all(reports), reports
    settings = settings_for(outcomes.world, "ansible", outcomes.scenarios[HALVES[0]])
    cli = run_cli_merge(outcomes.world, reports)
    ansible = run_ansible_merge(outcomes.world, reports, settings)
    assert cli["matrix"]["groups"] == ["db", "web"]
    assert cli["compliance"]["non_compliant"] == 1  # the third host: its port is not open
    opened = [(h["name"], h["opened"]) for h in cli["drift"]["hosts"]]
    assert opened == [(outcomes.world.hosts[0], [outcomes.world.open_port])]
    assert _without_sources(cli) == _without_sources(ansible), (
        f"cli gives {_dump(cli)}\nansible gives {_dump(ansible)}"
    )
