"""The engine that the collection needs, built as pip would install it: a wheel and an sdist
from ``python -m build``, at the version module_utils requires."""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from ansible_support import REPO

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("collection_import")]


def test_engine_builds_as_wheel_and_sdist_at_the_required_version(tmp_path: Path) -> None:
    pytest.importorskip("build")
    from ansible_collections.nornir_portscan.portscan.plugins.module_utils import portscan

    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deprecated" not in done.stdout + done.stderr
    wheels = list(tmp_path.glob("nornir_portscan-*.whl"))
    sdists = list(tmp_path.glob("nornir_portscan-*.tar.gz"))
    assert len(wheels) == len(sdists) == 1, sorted(p.name for p in tmp_path.iterdir())
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(wheel.read(info))
    assert portscan.engine_problem(metadata["Version"]) is None
    assert metadata["License-Expression"] == "Apache-2.0"
    assert {"nornir_portscan/data/top_ports.txt", "nornir_portscan/py.typed",
            "nornir_portscan/pipeline.py"} <= names
    assert not [n for n in names if n.startswith(("plugins/", "tests/", "ansible_collections"))]
    with tarfile.open(sdists[0]) as sdist:
        top = sdists[0].name.removesuffix(".tar.gz")
        assert {f"{top}/LICENSE", f"{top}/pyproject.toml"} <= set(sdist.getnames())
