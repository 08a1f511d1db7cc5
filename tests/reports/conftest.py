"""Fixtures of the report tests; the helpers are in ``report_support``."""

from report_support import audit, real_audit

__all__ = ["audit", "real_audit"]
