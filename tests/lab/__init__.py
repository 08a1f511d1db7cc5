"""The project's test network ("the lab"): namespaces, hundreds of targets, latency and loss.

``python -m tests.lab up|down|status`` from the repository root; the pytest fixture ``lab`` lives
in ``tests.lab.fixture``. See ``tests/lab/README.md``.
"""

from .lab import Lab, LabError, LabUnavailableError, down, status, up
from .truth import LabConfig

__all__ = ["Lab", "LabConfig", "LabError", "LabUnavailableError", "down", "status", "up"]
