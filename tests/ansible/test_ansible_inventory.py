"""The inventory plugin ``nornir_portscan.portscan.portscan``: ``ansible-inventory`` for real,
in the lab's network namespace, against listeners on 127.0.0.0/8."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ansible_support import BIN, NetnsListeners

pytestmark = pytest.mark.netns

CONFIG = """
plugin: nornir_portscan.portscan.portscan
targets: [127.0.0.10-14]
exclude: [127.0.0.14]
ports: 22,8080,8443
timeout: 0.5
groups:
  ssh: 22 in portscan_open_ports
keyed_groups:
  - key: portscan_open_ports
    prefix: port
compose:
  web_url: "'http://' ~ ansible_host ~ ':8080/'"
"""


def inventory(ansible_env: dict[str, str], netns: str, tmp_path: Path, config: str,
              *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "lab.portscan.yml"
    path.write_text(config)
    return subprocess.run(
        ["ip", "netns", "exec", netns, str(BIN / "ansible-inventory"), "-i", str(path),
         "--list", *args], env=ansible_env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120)


def plain(value: object) -> object:
    """``--list`` shows the plugin's strings as ``{"__ansible_unsafe": ...}``: they are data,
    never templated."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def groups(listed: dict) -> dict[str, list[str]]:
    return {name: sorted(group.get("hosts", [])) for name, group in listed.items()
            if name not in ("_meta", "all") and group.get("hosts")}


@pytest.fixture
def ports_open(lab: NetnsListeners) -> NetnsListeners:
    lab.open([("127.0.0.11", 22), ("127.0.0.11", 8080), ("127.0.0.12", 8080),
              ("127.0.0.14", 22)])  # .14 is excluded; .10 and .13 listen on nothing
    return lab


def test_hosts_with_open_ports_become_groups(ansible_env: dict[str, str], netns: str,
                                             ports_open: NetnsListeners, tmp_path: Path) -> None:
    done = inventory(ansible_env, netns, tmp_path, CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = json.loads(done.stdout)
    assert groups(listed) == {"ssh": ["127.0.0.11"], "port_22": ["127.0.0.11"],
                              "port_8080": ["127.0.0.11", "127.0.0.12"]}
    hostvars = plain(listed["_meta"]["hostvars"])
    assert set(hostvars) == {"127.0.0.11", "127.0.0.12"}
    assert hostvars["127.0.0.11"] == {
        "ansible_host": "127.0.0.11", "portscan_open_ports": [22, 8080],
        "portscan_filtered_ports": [], "portscan_udp_open_ports": [],
        "portscan_udp_open_filtered_ports": [], "portscan_udp_filtered_ports": [],
        "portscan_status": "up",
        "web_url": "http://127.0.0.11:8080/"}


def test_open_only_false_adds_every_host_that_answered(
        ansible_env: dict[str, str], netns: str, ports_open: NetnsListeners,
        tmp_path: Path) -> None:
    done = inventory(ansible_env, netns, tmp_path, CONFIG + "open_only: false\n")
    assert done.returncode == 0, done.stdout + done.stderr
    hostvars = plain(json.loads(done.stdout)["_meta"]["hostvars"])
    # every address of the lab answers (closed ports are an answer); the excluded one is not there
    assert set(hostvars) == {"127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"}
    assert hostvars["127.0.0.13"]["portscan_open_ports"] == []


def test_cache_keeps_the_scan_until_flushed(ansible_env: dict[str, str], netns: str,
                                            lab: NetnsListeners, tmp_path: Path) -> None:
    cached = CONFIG + (f"cache: true\ncache_plugin: ansible.builtin.jsonfile\n"
                       f"cache_connection: {tmp_path}/cache\ncache_timeout: 600\n")
    lab.open([("127.0.0.12", 8080)])
    first = inventory(ansible_env, netns, tmp_path, cached)
    assert first.returncode == 0, first.stdout + first.stderr
    assert set(json.loads(first.stdout)["_meta"]["hostvars"]) == {"127.0.0.12"}
    assert list((tmp_path / "cache").iterdir())
    lab.open([("127.0.0.11", 22)])  # a new open port: the cache does not know it yet
    again = inventory(ansible_env, netns, tmp_path, cached)
    assert set(json.loads(again.stdout)["_meta"]["hostvars"]) == {"127.0.0.12"}
    flushed = inventory(ansible_env, netns, tmp_path, cached, "--flush-cache")
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert set(json.loads(flushed.stdout)["_meta"]["hostvars"]) == {"127.0.0.11", "127.0.0.12"}


def test_bad_ports_fail_with_one_line(ansible_env: dict[str, str], netns: str,
                                      tmp_path: Path) -> None:
    done = inventory(ansible_env, netns, tmp_path, CONFIG.replace("22,8080,8443", "22,90-80"))
    said = " ".join((done.stdout + done.stderr).split())
    assert "lab.portscan.yml: invalid port range '90-80'" in said, said
    assert "Traceback" not in said


def test_hosts_open_on_udp_only_are_added_with_their_udp_ports(
        ansible_env: dict[str, str], netns: str, lab: NetnsListeners, tmp_path: Path) -> None:
    lab.open_udp("127.0.0.12", 5353, 5354)
    lab.open([("127.0.0.11", 22)])
    config = CONFIG.replace("ports: 22,8080,8443", "ports: T:22,U:5353-5355").replace(
        "\ngroups:\n", "\ngroups:\n  dns: 5353 in portscan_udp_open_ports\n")
    done = inventory(ansible_env, netns, tmp_path, config)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = json.loads(done.stdout)
    hostvars = plain(listed["_meta"]["hostvars"])
    assert set(hostvars) == {"127.0.0.11", "127.0.0.12"}, done.stderr  # .12: UDP only
    assert hostvars["127.0.0.12"] == {
        "ansible_host": "127.0.0.12", "portscan_open_ports": [], "portscan_filtered_ports": [],
        "portscan_udp_open_ports": [5353], "portscan_udp_open_filtered_ports": [5354],
        "portscan_udp_filtered_ports": [], "portscan_status": "up",
        "web_url": "http://127.0.0.12:8080/"}
    assert hostvars["127.0.0.11"]["portscan_udp_open_ports"] == []
    assert groups(listed) == {"dns": ["127.0.0.12"], "ssh": ["127.0.0.11"],
                              "port_22": ["127.0.0.11"]}


def test_protocol_udp_makes_unqualified_ports_udp(
        ansible_env: dict[str, str], netns: str, lab: NetnsListeners, tmp_path: Path) -> None:
    lab.open_udp("127.0.0.11", 22)
    lab.open([("127.0.0.12", 22)])  # TCP: not scanned under protocol udp
    done = inventory(ansible_env, netns, tmp_path, CONFIG + "protocol: udp\n")
    assert done.returncode == 0, done.stdout + done.stderr
    hostvars = plain(json.loads(done.stdout)["_meta"]["hostvars"])
    assert set(hostvars) == {"127.0.0.11"}
    assert hostvars["127.0.0.11"]["portscan_udp_open_ports"] == [22]
    assert hostvars["127.0.0.11"]["portscan_open_ports"] == []
