"""Approvals: asked calls that wait for a principal's decision (docs/approvals.md)."""
