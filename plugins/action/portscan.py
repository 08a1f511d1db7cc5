# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Controller side of ``nornir_portscan.portscan.portscan``.

- Without ``targets``, build them from the inventory: every host of the play batch with
  ``run_once``, else the current host alone. Address: ``ansible_host``, falling back to the
  inventory name; ports: ``portscan_ports``, falling back to the task's ``ports``.
- On a local connection whose interpreter is left to discovery, use the controller's Python:
  discovery would pick the system Python, which rarely has the engine.
- When the module would run here anyway (local connection, no become, the controller's Python),
  scan in this process instead: the same code (module_utils) without the module's start-up cost
  (building and starting the module takes about half a second, as long as the scan of 10,000
  ports). Everywhere else the module runs as usual.
"""

from __future__ import annotations

import sys

from ansible import constants as C  # noqa: N812 - as ansible names it
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

try:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan
except ImportError:  # ansible itself is fine; only the in-process path is off
    portscan = None

MODULE = "nornir_portscan.portscan.portscan"
PORTS_VAR = "portscan_ports"
_DISCOVERY = ("", "auto", "auto_legacy", "auto_silent", "auto_legacy_silent")


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if args.get("targets") is None:
            args["targets"] = self._inventory_targets(task_vars)
        interpreter = self._local_interpreter(task_vars)
        if interpreter is None:
            result.update(self._execute_module(module_name=MODULE, module_args=args,
                                               task_vars=task_vars))
        elif self._in_process(interpreter):
            result.update(self._scan_here(args))
        else:
            result.update(self._execute_module(
                module_name=MODULE, module_args=args,
                task_vars=self._with_interpreter(task_vars, interpreter)))
        return result

    def _inventory_targets(self, task_vars):
        if self._task.run_once:
            names = task_vars["ansible_play_batch"]
        else:
            names = [task_vars["inventory_hostname"]]
        hostvars = task_vars["hostvars"]
        targets = []
        for name in names:
            host = hostvars[name]
            target = {"name": name, "address": host.get("ansible_host") or name}
            ports = host.get(PORTS_VAR)
            if ports not in (None, "", []):
                target["ports"] = ports
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
        return (interpreter == sys.executable and not self._play_context.become
                and portscan is not None and portscan.ENGINE_IMPORT_ERROR is None)

    def _with_interpreter(self, task_vars, interpreter):
        host_vars = dict(self._host_vars(task_vars), ansible_python_interpreter=interpreter)
        delegated = self._task.delegate_to
        if not delegated:
            return host_vars
        return dict(task_vars, ansible_delegated_vars=dict(
            task_vars["ansible_delegated_vars"], **{delegated: host_vars}))

    def _scan_here(self, args):
        """What the module would return, computed in this process."""
        checked = ArgumentSpecValidator(portscan.ARGUMENT_SPEC).validate(args)
        if checked.error_messages:
            return {"failed": True, "changed": False, "msg": checked.errors.msg}
        try:
            result = portscan.run(checked.validated_parameters, self._task.check_mode)
        except portscan.TaskError as exc:
            return {"failed": True, "changed": False, "msg": str(exc)}
        return dict(result, changed=False)
