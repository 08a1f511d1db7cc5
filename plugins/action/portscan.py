# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Controller side of ``nornir_portscan.portscan.portscan``.

- Without ``targets``, build them from the inventory: every host of the play batch with
  ``run_once``, else the current host alone. Address: ``ansible_host``, falling back to the
  inventory name; ports: the task's ``ports`` if it sets them, else ``portscan_ports``, else the
  default; expectations: the task's ``expect_open`` and the like where it sets them, else
  ``portscan_expect_open`` and the like (what the task says beats the inventory). One
  variable per key, so that Ansible's precedence (all, group, child group, host) applies to each
  key on its own: a host that sets only ``portscan_allowed_open`` keeps its group's
  ``portscan_expect_open``. (One dict variable would be replaced whole, not merged.)
- Refuse ``fail_on_violation`` with ``run_once``: Ansible fails every host of the play when a
  run_once task fails, so one violating host would fail them all. A following per-host task
  (``assert: that: scan.hosts[inventory_hostname].passed``) fails exactly the hosts that did not
  pass.
- On a local connection whose interpreter is left to discovery, use the controller's Python:
  discovery would pick the system Python, which rarely has the engine.
- ``run_once`` under a strategy that runs it on every host (``free``, ``host_pinned``): the first
  host scans the batch; the others, arriving with the same task, batch, arguments, loop item and
  ``until`` attempt, get that result instead of each scanning the whole batch again (hosts
  squared). A host that comes back with the same of all these (an include run twice) scans anew.
- ``serial``: a ``run_once`` scan of the inventory covers the batch, so a report path written by
  every batch ends up holding the last one: the task warns.
- ``async``: the module runs (never in this process), as Ansible's async wrapper needs.
- When the module would run here anyway (local connection, no become, no ``environment``, the
  controller's Python), scan in this process instead: the same code (module_utils) without
  the module's start-up cost (building and starting the module takes about half a second, as
  long as the scan of 10,000 ports). Everywhere else the module runs as usual. Scanning the
  play's hosts here, start the scan's workers first, so that they start up while the hosts'
  variables are read (Ansible's ``get_vars``, about 0.2 ms a host); and pause the garbage
  collector for the task, whose process holds the whole inventory for every collection to walk.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import json
import os
import sys
from pathlib import Path

from ansible import constants as C  # noqa: N812 - as ansible names it
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

try:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan
except ImportError:  # ansible itself is fine; only the in-process path is off
    portscan = None

MODULE = "nornir_portscan.portscan.portscan"
PORTS_VAR = "portscan_ports"
# target key -> the host variable that sets it (literal: the engine may be missing here)
POLICY_VARS = {key: f"portscan_{key}" for key in
               ("expect_open", "expect_closed", "expect_filtered", "allowed_open")}
RUN_ONCE_FAILURE = (
    "fail_on_violation cannot be used with run_once: a failed run_once task fails every host "
    "of the play, not only the hosts that did not pass. Leave it off and fail those hosts in the "
    "next task, e.g. ansible.builtin.assert that scan.hosts[inventory_hostname].passed, with "
    "scan.hosts[inventory_hostname].failure as its fail_msg; or drop run_once so that each host "
    "scans itself and fails on its own")
_DISCOVERY = ("", "auto", "auto_legacy", "auto_silent", "auto_legacy_silent")
# strategies that run a run_once task once (the others run it on every host)
_RUN_ONCE_STRATEGIES = ("linear", "debug")
REPORT_OPTIONS = ("report", "report_table", "report_xml", "report_markdown", "report_html")


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        # The garbage collector is paused for the task: this process holds the whole inventory,
        # so each collection walks all of it, while what the task builds holds no cycles.
        collecting = gc.isenabled()
        gc.disable()
        try:
            task_vars = task_vars or {}
            if self._task.run_once and not self._task.async_val and not self._runs_once():
                return self._run_shared(tmp, task_vars)
            return self._run(tmp, task_vars)
        finally:
            if collecting:
                gc.enable()

    def _runs_once(self):
        """Whether the play's strategy runs a run_once task on one host only."""
        strategy = str(getattr(self._play(), "strategy", None) or C.DEFAULT_STRATEGY)
        return strategy.rsplit(".", 1)[-1] in _RUN_ONCE_STRATEGIES

    def _play(self):
        """The task's play; None where a task has none (then nothing is batched or shared)."""
        try:
            return self._task.get_play()
        except AttributeError:
            return None

    def _run_shared(self, tmp, task_vars):
        """One scan for the hosts that each run this run_once task (see the module docstring):
        the result is kept, under a lock, in this run's local temporary directory."""
        loop_var = task_vars.get("ansible_loop_var")
        previous = task_vars.get(self._task.register) if self._task.register else None
        attempt = previous.get("attempts") if self._task.until and previous else None
        key = json.dumps([self._task._uuid, list(task_vars.get("ansible_play_batch", ())),
                          self._task.args, task_vars.get(loop_var) if loop_var else None,
                          attempt], sort_keys=True, default=str)
        directory = Path(C.DEFAULT_LOCAL_TMP) / "nornir_portscan_run_once"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / hashlib.sha256(key.encode()).hexdigest()
        kept = path.with_suffix(".json")
        host = str(task_vars.get("inventory_hostname"))
        with path.with_suffix(".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when this process ends, whatever happens
            try:
                entry = json.loads(kept.read_text())
            except (OSError, ValueError):
                entry = None
            if entry is not None and host not in entry["served"]:
                entry["served"].append(host)
                result = entry["result"]
            else:
                result = self._run(tmp, task_vars)
                entry = {"served": [host], "result": result}
            kept.write_text(json.dumps(entry, default=str))
        if entry["served"][0] != host:
            result = dict(result)
            result.pop("warnings", None)  # shown once, by the host that scanned
        return result

    def _run(self, tmp, task_vars):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if self._task.run_once and boolean(args.get("fail_on_violation", False), strict=False):
            result.update(failed=True, changed=False, msg=RUN_ONCE_FAILURE)
            return result
        interpreter = self._local_interpreter(task_vars)
        here = (interpreter is not None and self._in_process(interpreter)
                and not self._task.async_val)
        # Scanning the play's hosts here: their workers can start while the hosts are read.
        walk = here and self._task.run_once and args.get("targets") is None
        batch = len(task_vars["ansible_play_batch"]) if walk else 0
        with _prestart(args, batch) if batch > 1 else contextlib.nullcontext() as workers:
            if args.get("targets") is None:
                args["targets"] = self._inventory_targets(
                    task_vars, boolean(args.get("inventory_policy", True), strict=False))
            if here:
                result.update(self._scan_here(args, workers))
            else:
                wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
                result.update(self._execute_module(
                    module_name=MODULE, module_args=args, wrap_async=wrap_async,
                    task_vars=task_vars if interpreter is None
                    else self._with_interpreter(task_vars, interpreter)))
                if not wrap_async:
                    self._remove_tmp_path(self._connection._shell.tmpdir)
        warning = self._serial_warning(args, task_vars)
        if warning:
            result["warnings"] = [*result.get("warnings", ()), warning]
        return result

    def _serial_warning(self, args, task_vars):
        """With serial, what becomes of the reports of a run_once scan of the inventory."""
        reports = [str(args[name]) for name in REPORT_OPTIONS if args.get(name)]
        batch = task_vars.get("ansible_play_batch") or ()
        everyone = task_vars.get("ansible_play_hosts_all") or ()
        if not (reports and self._task.run_once and self._task.args.get("targets") is None
                and getattr(self._play(), "serial", None)
                and len(batch) < len(everyone)):
            return None
        return (f"serial: this run_once scan covers this batch only ({len(batch)} of "
                f"{len(everyone)} hosts), and every batch writes {', '.join(reports)} anew: it "
                "ends up holding the last batch. Template the path per batch (e.g. "
                "report: 'scan-{{ ansible_play_batch | first }}.json') or scan in a play "
                "without serial")

    def _inventory_targets(self, task_vars, with_policy):
        if self._task.run_once:
            names = task_vars["ansible_play_batch"]
        else:
            names = [task_vars["inventory_hostname"]]
        hostvars = task_vars["hostvars"]
        # what the task says beats what the inventory says: a loop over port lists scans each
        given = {key for key, value in self._task.args.items() if value is not None}
        policy_vars = {k: v for k, v in POLICY_VARS.items() if with_policy and k not in given}
        targets = []
        for name in names:
            host = hostvars[name]
            # str(): plain strings, not Ansible's tagged ones, which cost ~10x more to copy
            target = {"name": str(name), "address": str(host.get("ansible_host") or name)}
            ports = host.get(PORTS_VAR) if "ports" not in given else None
            if ports not in (None, "", []):
                target["ports"] = ports
            for key, var in policy_vars.items():
                if var in host:  # set, even to null (for allowed_open: no allow-list)
                    target[key] = host[var]
            targets.append(target)
        return targets

    def _host_vars(self, task_vars):
        """The variables of the host the module runs on (the delegate, if any)."""
        delegated = self._task.delegate_to
        return task_vars["ansible_delegated_vars"][delegated] if delegated else task_vars

    def _local_interpreter(self, task_vars):
        """For a local connection, the Python that would run the module; else None."""
        if getattr(self._connection, "transport", None) != "local":
            return None
        host_vars = self._host_vars(task_vars)
        configured = C.config.get_config_value("INTERPRETER_PYTHON", variables=host_vars)
        configured = self._templar.template(configured) if configured else ""
        return sys.executable if configured in _DISCOVERY else str(configured)

    def _in_process(self, interpreter):
        # a task `environment:` is the module's process environment (PYTHONPATH, say): not ours
        return (interpreter == sys.executable and not self._play_context.become
                and not any(self._task.environment or ())
                and portscan is not None and portscan.ENGINE_ERROR is None)

    def _with_interpreter(self, task_vars, interpreter):
        host_vars = dict(self._host_vars(task_vars), ansible_python_interpreter=interpreter)
        delegated = self._task.delegate_to
        if not delegated:
            return host_vars
        return dict(task_vars, ansible_delegated_vars=dict(
            task_vars["ansible_delegated_vars"], **{delegated: host_vars}))

    def _scan_here(self, args, workers):
        """What the module would return, computed in this process."""
        # plain types, not Ansible's tagged ones: as the module gets them, through JSON
        args = json.loads(json.dumps(args, default=str))
        checked = ArgumentSpecValidator(portscan.ARGUMENT_SPEC).validate(args)
        if checked.error_messages:
            msg = checked.errors.msg
            if isinstance(checked.errors[0], UnsupportedError):
                msg = f"Unsupported parameters for ({self._task.action}) module: {msg}"
            return {"failed": True, "changed": False, "msg": msg}
        try:
            result = portscan.run(checked.validated_parameters, self._task.check_mode, workers)
        except portscan.TaskError as exc:  # with a result: fail_on_violation, a report not written
            found = dict(exc.result or {})
            return dict(found, failed=True, changed=portscan.changed(found), msg=str(exc))
        return dict(result, changed=portscan.changed(result))


def _prestart(args, hosts):
    """The scan's worker processes, started to start up while the ``hosts`` are read: one per
    CPU (or ``processes``), at most one per host. On any trouble, none: the scan then starts
    its own and reports what goes wrong."""
    try:
        processes = int(args.get("processes") or 0)
    except (TypeError, ValueError):
        processes = 0
    wanted = processes if processes > 0 else len(os.sched_getaffinity(0)) or 1
    try:
        return portscan.WorkerPool(min(wanted, hosts))
    except portscan.PortscanError:
        return contextlib.nullcontext()
