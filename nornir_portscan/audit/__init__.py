"""Audits: exposure policies, drift against a baseline, and change gates (wait)."""
