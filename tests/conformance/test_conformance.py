"""Rule 5: the doors agree. The same settings through the CLI, the Python API, the Nornir task
(per host, and ``scan_inventory``) and the Ansible module (in the controller process, and as a
module) give the same hosts, states, verdicts and messages.

Two tests per scenario: each door's outcome is the one the contract asks for, and every door's
outcome is the Python API's, byte for byte (error messages included).
"""

from __future__ import annotations

import json
import math

import pytest
from conformance_scenarios import DOORS, NAMES, Scenario

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
