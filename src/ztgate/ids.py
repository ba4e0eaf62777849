"""Identifiers that sort by creation time."""

from __future__ import annotations

import secrets
import time


def time_ordered_id() -> str:
    """32 hex characters: milliseconds since the epoch, then 80 random bits.

    Ids that sort by time keep the audit log's call-id index append-mostly.
    """
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"
