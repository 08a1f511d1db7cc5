"""The engine's per-probe modules compiled with mypyc, where the build has a C compiler.

Everything else is in pyproject.toml. The compiled modules are the same source as the
plain-Python ones (mypy --strict checks it), only faster: a probe's Python work is about
half of a worker's CPU. Where no compiler is at hand, or ``NORNIR_PORTSCAN_PURE=1`` is set,
the package installs as plain Python and behaves the same.
"""

from __future__ import annotations

import os

from setuptools import setup

# The code every probe runs: the TCP and UDP socket sides, the schedule, the round-trip
# estimates (a class compiled here cannot be subclassed by a plain-Python one).
COMPILED = [
    "nornir_portscan/engine/prober.py",
    "nornir_portscan/engine/schedule.py",
    "nornir_portscan/engine/timing.py",
    "nornir_portscan/engine/udp.py",
]


def extensions() -> list[object]:
    if os.environ.get("NORNIR_PORTSCAN_PURE"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    # the modules they import are type-checked by ``mypy`` (make lint), not by the build,
    # which has none of the development stubs
    flags = ["--follow-imports=silent"]
    modules = mypycify([*flags, *COMPILED], opt_level="3", group_name="nornir_portscan")
    for module in modules:
        module.optional = True  # a failed compile installs the plain-Python modules
    return modules


setup(ext_modules=extensions())
