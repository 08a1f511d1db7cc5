# Copyright: nornir-portscan contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: portscan
short_description: Build an inventory from a TCP port scan
version_added: 0.1.0
description:
  - Scans O(targets) (addresses, octet ranges, CIDR blocks, hostnames) for O(ports) with the
    nornir-portscan engine, in the controller process, and adds every host that has an open
    port (with O(open_only=false), every host that answered at all).
  - "Each host is named by its address (or by its name for a hostname target) and gets the
    variables C(ansible_host), C(portscan_open_ports), C(portscan_filtered_ports) and
    C(portscan_status). O(groups), O(keyed_groups) and O(compose) build on them, so that
    C(groups: {ssh: '22 in portscan_open_ports'}) makes the hosts with port 22 open a group."
  - With O(cache), the scan's result is kept in the inventory cache and read back instead of
    scanning again until it expires (C(--flush-cache) scans anew).
  - The scan runs where C(ansible-inventory) or C(ansible-playbook) runs, so it shows what the
    controller can reach.
requirements:
  - python >= 3.11
  - nornir-portscan >= 0.1.0, < 0.2.0 in the controller's Python
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin, C(nornir_portscan.portscan.portscan).
    required: true
    type: str
    choices: [nornir_portscan.portscan.portscan]
  targets:
    description: What to scan, in the module's O(targets) string syntax.
    required: true
    type: list
    elements: str
  ports:
    description: Ports to scan, in nmap's C(-p) syntax, e.g. C(22,80,443) or C(top100).
    type: str
    default: top100
  exclude:
    description: Targets to leave out, same syntax as O(targets).
    type: list
    elements: str
    default: []
  exclude_ports:
    description: Ports to leave out, same syntax as O(ports).
    type: str
  timeout:
    description: Connect timeout in seconds (the ceiling of the adaptive timeout).
    type: float
    default: 1.0
  retries:
    description: Extra attempts for ports that gave no response.
    type: int
    default: 1
  concurrency:
    description: Probes in flight per worker process.
    type: int
    default: 1000
  processes:
    description: Worker processes; one per CPU when not set.
    type: int
  max_hosts:
    description: Refuse targets that add up to more hosts than this (the scope guard).
    type: int
    default: 65536
  address_family:
    description: The address family to resolve hostnames in.
    type: str
    choices: [ipv4, ipv6, both]
    default: ipv4
  open_only:
    description:
      - Add only the hosts with at least one open port. With C(false), every host that answered
        (open or closed ports, or ICMP errors sent by the host itself) is added; hosts that did
        not answer never are.
    type: bool
    default: true
"""

EXAMPLES = r"""
# inventory/lab.portscan.yml
plugin: nornir_portscan.portscan.portscan
targets: [127.0.0.10-20]
ports: 22,80,443,5432
groups:
  ssh: 22 in portscan_open_ports
  web: portscan_open_ports | intersect([80, 443]) | length > 0
keyed_groups:
  - key: portscan_open_ports
    prefix: port
compose:
  ansible_port: 22
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /tmp/portscan-inventory
cache_timeout: 600
"""

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

try:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan
except ImportError:
    portscan = None

# plugin option -> module option of the same meaning
SCAN_OPTIONS = ("targets", "ports", "exclude", "exclude_ports", "timeout", "retries",
                "concurrency", "processes", "max_hosts", "address_family")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "nornir_portscan.portscan.portscan"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("portscan.yml", "portscan.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        key = self.get_cache_key(path)
        use_cache = self.get_option("cache")
        update = use_cache and not cache
        hosts = None
        if use_cache and cache:
            try:
                hosts = self._cache[key]
            except KeyError:
                update = True
        if hosts is None:
            hosts = self._scan(path)
        if update:
            self._cache[key] = hosts
        self._populate(hosts)

    def _scan(self, path):
        """``{name: host variables}`` of the hosts to add."""
        if portscan is None or portscan.ENGINE_ERROR:
            raise AnsibleParserError(
                f"{path}: " + (portscan.ENGINE_ERROR if portscan else "module_utils is missing"))
        params = {name: self.get_option(name) for name in SCAN_OPTIONS}
        params["inventory_policy"] = False
        checked = ArgumentSpecValidator(portscan.ARGUMENT_SPEC).validate(params)
        if checked.error_messages:
            raise AnsibleParserError(f"{path}: {checked.errors.msg}")
        try:
            result = portscan.run(checked.validated_parameters)
        except portscan.TaskError as exc:
            raise AnsibleParserError(f"{path}: {exc}") from None
        wanted = "open_ports" if self.get_option("open_only") else "up"
        return {name: {"ansible_host": entry["address"],
                       "portscan_open_ports": entry["open_ports"],
                       "portscan_filtered_ports": entry["filtered_ports"],
                       "portscan_status": entry["status"]}
                for name, entry in result["hosts"].items() if entry[wanted]}

    def _populate(self, hosts):
        strict = self.get_option("strict")
        for name, variables in hosts.items():
            self.inventory.add_host(name)
            for key, value in variables.items():
                self.inventory.set_variable(name, key, value)
            self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, name,
                                              strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name,
                                           strict=strict)
