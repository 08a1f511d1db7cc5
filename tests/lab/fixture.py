"""The session-scoped ``lab`` fixture. Import it from ``tests/conftest.py``::

    from tests.lab.fixture import lab  # noqa: F401

It brings the lab up (or reuses one already up with the same config, and then leaves it up),
yields a ``Lab`` and tears down what it built. Where namespaces cannot be made (not root, no
``ip``/``nft``/``iptables``, ``ip netns add`` refused) every test that uses it is skipped with
the reason. Environment knobs: ``NPL_HOSTS``, ``NPL_HOSTS6``, ``NPL_LATENCY_MS``, ``NPL_LOSS``,
``NPL_BACKLOG``, ``NPL_PREFIX``; ``NPL_KEEP=1`` leaves the lab up after the session.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from .lab import Lab, LabUnavailableError, down, up
from .truth import LabConfig

__all__ = ["config_from_env", "lab", "running_lab"]


def config_from_env(**overrides: object) -> LabConfig:
    """The default ``LabConfig``, changed by ``NPL_*`` variables, then by ``overrides``."""
    env = os.environ
    values: dict[str, object] = {}
    for key, cast in (
        ("hosts", int),
        ("hosts6", int),
        ("latency_ms", float),
        ("loss", float),
        ("backlog", int),
        ("prefix", str),
    ):
        raw = env.get(f"NPL_{key.upper()}")
        if raw:
            values[key] = cast(raw)
    values.update(overrides)
    return LabConfig(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def running_lab(config: LabConfig) -> Iterator[Lab]:
    """A lab for one ``config`` (use another ``prefix`` to run it beside the default one).

    Skips the calling test where the lab cannot run here."""
    try:
        path, built = up(config)
    except LabUnavailableError as exc:
        pytest.skip(f"network lab unavailable: {exc}")
    try:
        yield Lab.load(config, path)
    finally:
        if built and not os.environ.get("NPL_KEEP"):
            down(config.prefix)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The lab with the default (or ``NPL_*``) config, for the whole session."""
    with running_lab(config_from_env()) as running:
        yield running
