"""Run ``ansible-test`` (sanity, units) on the collection as it ships: ``make sanity``.

The repo root is the collection root, and it also holds the engine (``nornir_portscan/``), its
tests and benchmarks, which ansible-test would check as collection content: it lists a git
tree's tracked files and anything else in a directory, and no setting excludes a path. So this
builds the collection (``ansible-galaxy collection build`` honours ``build_ignore``), unpacks it
under ``ansible_collections/nornir_portscan/portscan`` in a temporary directory, adds the
ansible-test layout (``tests/sanity/``, ``tests/unit/plugins/``, ``tests/config.yml``) and runs
ansible-test there: it sees exactly the files that users install.

ansible-test bootstraps pip in each test's virtual environment with a script that it downloads
from a host outside the package registries; where that script is not cached yet, a stand-in
(pip from the wheel that ``ensurepip`` bundles) is put in its place. The requirements of each
test still come from the package index, pinned by ansible-test.

Usage: ``python tests/ansible/run_ansible_test.py sanity|units [ansible-test options]``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
# the ansible-test layout: not shipped, added to the built collection
LAYOUT = ("tests/sanity", "tests/unit/plugins", "tests/config.yml")

GET_PIP = '''"""Stand-in for pip's get-pip.py, written by nornir-portscan's
tests/ansible/run_ansible_test.py: install what ansible-test asks for with the pip wheel that
ensurepip bundles."""
import glob
import os
import sys

import ensurepip

wheel = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))[0]
sys.path.insert(0, wheel)
from pip._internal.cli.main import main  # noqa: E402

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", *args]))
'''


def pip_bootstrap() -> None:
    """Put the stand-in where ansible-test caches its pip bootstrap script, unless it is there."""
    import ansible_test

    source = (Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
              ).read_text()
    found = re.search(r"pip='([0-9.]+)'", source)
    if found is None:
        return
    cache = Path("~/.ansible/test/cache").expanduser()
    script = cache / f"get_pip_{found.group(1).replace('.', '_')}.py"
    if not script.exists():
        cache.mkdir(parents=True, exist_ok=True)
        script.write_text(GET_PIP)


def stage(workdir: Path) -> Path:
    """The built collection, unpacked, with the ansible-test layout added; returns its root."""
    env = {**os.environ, "ANSIBLE_HOME": str(workdir / "home"),
           "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO),
                    "--output-path", str(workdir)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    (tarball,) = workdir.glob("nornir_portscan-portscan-*.tar.gz")
    root = workdir / "ansible_collections" / "nornir_portscan" / "portscan"
    root.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="data")
    for name in LAYOUT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("sanity", "units"):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    pip_bootstrap()
    with tempfile.TemporaryDirectory(prefix="portscan-ansible-test-") as tmp:
        root = stage(Path(tmp))
        command = [str(BIN / "ansible-test"), argv[0], "--local", "--python", PYTHON,
                   "--color", "no", *argv[1:]]
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
        return subprocess.run(command, cwd=root, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
