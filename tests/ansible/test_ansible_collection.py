"""The collection as a whole: docs match the argument spec, ansible-doc, validate-modules,
ansible-lint on playbooks/, the built artifact, and the demo inventory that `make demo` uses."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_support import BIN, REPO, demo_hosts

from nornir_portscan.audit.drift import Drift
from nornir_portscan.audit.gates import Audit, WaitResult
from nornir_portscan.audit.policy import evaluate, parse_policy
from nornir_portscan.models import (
    HostResult,
    HostStatus,
    PortResult,
    PortState,
    ScanOptions,
    ScanReport,
)

FQCN = "nornir_portscan.portscan.portscan"
MODULE = REPO / "plugins" / "modules" / "portscan.py"


def ansible(tool: str, *args: str, env: dict[str, str], cwd: Path = REPO,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def module_docs() -> dict[str, Any]:
    """DOCUMENTATION, EXAMPLES and RETURN of the module, parsed from its source."""
    namespace: dict[str, Any] = {}
    source = MODULE.read_text()
    exec(source[: source.index("\nfrom ansible")], namespace)  # only the three strings
    return {key: yaml.safe_load(namespace[key]) for key in ("DOCUMENTATION", "EXAMPLES",
                                                            "RETURN")}


@pytest.mark.usefixtures("collection_import")
def test_documented_options_match_the_argument_spec() -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import (
        ARGUMENT_SPEC,
    )

    options = module_docs()["DOCUMENTATION"]["options"]
    assert sorted(options) == sorted(ARGUMENT_SPEC)
    for name, spec in ARGUMENT_SPEC.items():
        doc = options[name]
        fields = ("type", "default", "choices", "elements", "required")
        assert {f: doc.get(f) for f in fields} == {f: spec.get(f) for f in fields}, name


def audit_of_one_host() -> Audit:
    """An audit with everything in it: a policy, a baseline and a wait."""
    host = HostResult("web1", "127.0.0.1", HostStatus.UP,
                      (PortResult(22, PortState.OPEN, "syn-ack", 0.1, 1),), scanned=(22,))
    report = ScanReport((host,), ScanOptions(), started=0.0, finished=1.0, probes_sent=1)
    verdict = evaluate(host, parse_policy({"expect_open": "22"}))
    return Audit(report, (verdict,), Drift(()), WaitResult(True, 0.1, 1))


@pytest.mark.usefixtures("collection_import")
def test_documented_return_matches_a_real_result() -> None:
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils.portscan import (
        summary_message,
        task_result,
    )

    result = task_result(audit_of_one_host())
    result.update(reports=[], would_write=[], msg=summary_message(result))
    returned = module_docs()["RETURN"]
    assert sorted(returned) == sorted(result)
    entry = result["hosts"]["web1"]
    documented = returned["hosts"]["contains"]
    conditional = {"rate_limited"}  # a host whose ICMP rate limit slowed its UDP scan has it
    assert sorted(set(documented) - conditional) == sorted(entry)
    audit = audit_of_one_host()
    slowed = replace(audit.report.hosts[0], rate_limited=True)
    udp_entry = task_result(replace(audit, report=replace(audit.report, hosts=(slowed,))))
    assert udp_entry["hosts"]["web1"]["rate_limited"] is True
    assert sorted(documented) == sorted(udp_entry["hosts"]["web1"])
    assert sorted(documented["ports"]["contains"]) == sorted(entry["ports"][0])
    booleans = sorted(k for k, v in documented.items() if v["type"] == "bool"
                      and k not in conditional)  # fmt: skip
    assert booleans == sorted(k for k, v in entry.items() if isinstance(v, bool))
    for key in ("drift", "wait", "policy"):
        assert sorted(documented[key]["sample"]) == sorted(entry[key]), key
    for key in ("compliance", "drift", "wait", "summary"):
        assert sorted(returned[key]["sample"]) == sorted(result[key]), key


def test_examples_use_fully_qualified_modules() -> None:
    modules = [next(key for key in task if key != "name" and "." in key)
               for task in module_docs()["EXAMPLES"]]
    assert modules == [FQCN, FQCN, FQCN, "ansible.builtin.debug", "ansible.builtin.assert", FQCN]


def test_ansible_doc_renders(ansible_env: dict[str, str]) -> None:
    done = ansible("ansible-doc", FQCN, env=ansible_env)
    assert done.returncode == 0, done.stderr
    assert f"> MODULE {FQCN}" in done.stdout.replace("\x1b[1m", "").replace("\x1b[0m", "")
    as_json = ansible("ansible-doc", "--json", FQCN, env=ansible_env)
    doc = json.loads(as_json.stdout)[FQCN]["doc"]
    assert doc["module"] == "portscan"
    assert doc["has_action"] is True


def test_validate_modules(tmp_path: Path, collections_path: Path) -> None:
    """ansible-test's validate-modules, run directly: ``ansible-test sanity`` would download
    its own pip bootstrap script, which cannot be done offline."""
    pytest.importorskip("voluptuous")
    pytest.importorskip("antsibull_docs_parser")
    import ansible_test

    validate = Path(ansible_test.__file__).parent / (
        "_util/controller/sanity/validate-modules/validate.py")
    collection = "ansible_collections/nornir_portscan/portscan"
    done = subprocess.run(
        [sys.executable, str(validate), "--format", "json", "--arg-spec", "--collection",
         collection, "--collection-version", "0.1.0", "--plugin-type", "module",
         "plugins/modules/portscan.py"],
        cwd=collections_path / collection, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(collections_path), "ANSIBLE_COLLECTIONS_PATH":
             str(collections_path), "PATH": str(BIN), "HOME": str(tmp_path)})
    report = json.loads(done.stdout or "{}")
    errors = [e["code"] for result in report.values() for e in result["errors"]]
    # The collection is Apache-2.0, like the project: no GPLv3 header on purpose.
    assert errors == ["missing-gplv3-license"], done.stdout + done.stderr


def test_ansible_lint_passes_on_the_playbooks(ansible_env: dict[str, str]) -> None:
    if not (BIN / "ansible-lint").exists():
        pytest.skip("ansible-lint is not installed (pip install ansible-lint)")
    done = ansible("ansible-lint", "--offline", "--nocolor", "playbooks/", env=ansible_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed: 0 failure(s), 0 warning(s)" in done.stdout + done.stderr


def test_built_artifact_holds_the_collection_only(ansible_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    done = ansible("ansible-galaxy", "collection", "build", str(REPO), "--output-path",
                   str(tmp_path), env=ansible_env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    with tarfile.open(tmp_path / "nornir_portscan-portscan-0.1.0.tar.gz") as tar:
        names = {member.name for member in tar.getmembers()}
    top = {name.split("/")[0] for name in names}
    assert top <= {"MANIFEST.json", "FILES.json", "README.md", "LICENSE", "CHANGELOG.rst",
                   "changelogs", "docs", "meta", "plugins", "playbooks"}, sorted(top)
    assert {"plugins/modules/portscan.py", "plugins/action/portscan.py",
            "plugins/module_utils/portscan.py", "meta/runtime.yml", "playbooks/scan.yml",
            "playbooks/audit.yml", "playbooks/gate_change.yml",
            "playbooks/inventory/demo.yml", "docs/ansible.md", "LICENSE", "CHANGELOG.rst",
            "changelogs/changelog.yaml"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_galaxy_importer_accepts_the_built_collection(ansible_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    """What Galaxy runs on an upload: no error, no warning (a missing changelog, license or
    repository is one)."""
    pytest.importorskip("galaxy_importer")
    done = ansible("ansible-galaxy", "collection", "build", str(REPO), "--output-path",
                   str(tmp_path), env=ansible_env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "galaxy_importer.main",
         str(tmp_path / "nornir_portscan-portscan-0.1.0.tar.gz")],
        env=ansible_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "Importer processing completed successfully" in log, log
    assert not [line for line in log.splitlines() if "ERROR" in line or "WARNING" in line], log


def test_changelog_fragments_and_release_are_valid(ansible_env: dict[str, str]) -> None:
    if not (BIN / "antsibull-changelog").exists():
        pytest.skip("antsibull-changelog is not installed (pip install antsibull-changelog)")
    done = ansible("antsibull-changelog", "lint", env=ansible_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "", done.stdout
    release = yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text())
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert galaxy["version"] in release["releases"]


def test_galaxy_metadata_is_complete() -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    for key in ("repository", "documentation", "issues", "homepage"):
        assert str(galaxy.get(key, "")).startswith("https://"), key
    assert galaxy["license"] == ["Apache-2.0"]
    assert "Apache License" in (REPO / "LICENSE").read_text()


def test_demo_inventory_matches_make_demo() -> None:
    demo = REPO / "examples" / "demo.py"
    if not demo.exists():
        pytest.skip("examples/demo.py is not there")
    spec = importlib.util.spec_from_file_location("portscan_demo", demo)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert demo_hosts() == {name: (address, list(ports))
                            for name, (address, ports) in module.DEMO_HOSTS.items()}


def test_playbooks_and_inventory_stay_on_loopback() -> None:
    for path in [*(REPO / "playbooks").rglob("*.yml"), REPO / "docs" / "ansible.md", MODULE]:
        text = path.read_text()
        for word in text.replace(",", " ").replace("(", " ").split():
            if word.count(".") == 3 and word.replace(".", "").isdigit():
                assert word.startswith("127."), f"{path}: {word}"


def test_execution_environment_lists_the_engine(collections_path: Path, tmp_path: Path) -> None:
    if not (BIN / "ansible-builder").exists():
        pytest.skip("ansible-builder is not installed (pip install ansible-builder)")
    done = subprocess.run([str(BIN / "ansible-builder"), "introspect", str(collections_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    found = yaml.safe_load(done.stdout.split("\n", 1)[1])
    origin = "  # from collection nornir_portscan.portscan"
    assert f"nornir-portscan>=0.1.0,<0.2.0{origin}" in found["python"]
    assert f"python3 [platform:rpm platform:dpkg]{origin}" in found["system"]


def test_sanity_ignores_are_few_and_each_says_why() -> None:
    for path in (REPO / "tests" / "sanity").glob("ignore-*.txt"):
        lines = path.read_text().splitlines()
        assert len(lines) <= 10, path
        for line in lines:
            entry, _, why = line.partition(" # ")
            assert len(entry.split()) == 2, line
            assert len(why.split()) >= 4, f"{path.name}: {line!r} says not why"
