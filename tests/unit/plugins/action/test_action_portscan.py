"""The action plugin's choices that need no playbook run: which strategies run a run_once task
once, and the serial warning."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ansible_collections.nornir_portscan.portscan.plugins.action import portscan


def plugin(strategy=None, serial=None, run_once=True, args=None):
    play = SimpleNamespace(strategy=strategy, serial=serial)
    task = SimpleNamespace(get_play=lambda: play, run_once=run_once, args=args or {})
    action = portscan.ActionModule.__new__(portscan.ActionModule)
    action._task = task
    return action


@pytest.mark.parametrize(("strategy", "once"), [
    ("linear", True), ("ansible.builtin.linear", True), ("debug", True), ("free", False),
    ("ansible.builtin.free", False), ("host_pinned", False), (None, True)])
def test_which_strategies_run_a_run_once_task_once(strategy, once):
    assert plugin(strategy)._runs_once() is once


BATCHED = {"ansible_play_batch": ["a", "b"], "ansible_play_hosts_all": ["a", "b", "c"]}


def test_serial_warning_names_the_batch_and_the_reports():
    warning = plugin(serial=[2])._serial_warning({"report": "/r.json"}, BATCHED)
    assert warning.startswith("serial: this run_once scan covers this batch only (2 of 3 hosts),"
                              " and every batch writes /r.json anew")


@pytest.mark.parametrize(("action", "args", "task_vars"), [
    (plugin(serial=None), {"report": "/r.json"}, BATCHED),  # no serial
    (plugin(serial=[2]), {}, BATCHED),  # no report
    (plugin(serial=[2], run_once=False), {"report": "/r.json"}, BATCHED),
    (plugin(serial=[2], args={"targets": ["127.0.0.1"]}), {"report": "/r.json"}, BATCHED),
    (plugin(serial=[3]), {"report": "/r.json"},
     {"ansible_play_batch": ["a", "b", "c"], "ansible_play_hosts_all": ["a", "b", "c"]}),
])
def test_no_serial_warning_where_the_report_is_whole(action, args, task_vars):
    assert action._serial_warning(args, task_vars) is None
