"""The package's doctests, as part of the suite (netutils runs them the same way)."""

import doctest
import importlib
import pkgutil

import pytest

import nornir_portscan

# The worker and its probers import gevent, which never enters a process that is not a
# worker (a later test checks this process); __main__ runs the command line.
NOT_HERE = {
    "nornir_portscan.engine.worker",
    "nornir_portscan.engine.prober",
    "nornir_portscan.engine.udp",
    "nornir_portscan.__main__",
}
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(nornir_portscan.__path__, "nornir_portscan.")
    if info.name not in NOT_HERE
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failed == 0


def test_the_examples_are_found():
    assert "nornir_portscan.ports" in MODULES
    assert doctest.testmod(importlib.import_module("nornir_portscan.ports")).attempted >= 3
