"""Containment of runaway agents: kill switch, burst suspension, rate limits, loops, budgets."""
