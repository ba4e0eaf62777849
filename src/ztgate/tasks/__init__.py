"""Tasks: one job for one agent, its intent, scope, budget and expiry."""
