"""Makes the ``lab`` fixture available to the lab's own tests."""

from .fixture import lab

__all__ = ["lab"]
