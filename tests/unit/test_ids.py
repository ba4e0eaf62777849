from __future__ import annotations

import time

from ztgate.ids import time_ordered_id


def test_ids_are_32_hex_characters_and_unique() -> None:
    ids = {time_ordered_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_ids_sort_by_creation_time() -> None:
    first = time_ordered_id()
    time.sleep(0.002)
    assert time_ordered_id() > first
