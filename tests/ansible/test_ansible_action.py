"""Unit tests of the action plugin's own pieces (the playbook tests run it whole)."""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("collection_import")


def _action() -> Any:
    from ansible_collections.nornir_portscan.portscan.plugins.action import portscan

    return portscan


def _children() -> set[int]:
    return {int(pid) for pid in Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()}


def test_the_garbage_collector_is_paused_for_the_task_and_restored_on_errors() -> None:
    action = _action()
    seen = []

    class Failing(action.ActionModule):
        def __init__(self) -> None:  # no Ansible machinery: only run() is under test
            self._task = SimpleNamespace(run_once=False, async_val=0)

        def _run(self, tmp: object, task_vars: object) -> dict[str, Any]:
            seen.append(gc.isenabled())
            raise RuntimeError("boom")

    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="boom"):
        Failing().run(task_vars={})
    assert (seen, gc.isenabled()) == ([False], True)


def test_workers_are_started_one_per_cpu_and_at_most_one_per_host() -> None:
    action = _action()
    before = _children()
    with action._prestart({}, 1) as pool:
        assert len(_children() - before) == 1
    with action._prestart({"processes": "3"}, 100) as pool:
        assert len(_children() - before) == 3
    assert _children() == before
    assert pool is not None


def test_workers_that_cannot_start_leave_the_scan_to_start_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    action = _action()

    def refuse(processes: int | None = None) -> None:
        raise action.portscan.PortscanError("cannot start a worker process")

    monkeypatch.setattr(action.portscan, "WorkerPool", refuse)
    assert isinstance(action._prestart({}, 10), contextlib.nullcontext)
