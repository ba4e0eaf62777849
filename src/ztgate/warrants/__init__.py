"""Warrants (task-scoped, key-bound credentials) and the proof every call carries."""
