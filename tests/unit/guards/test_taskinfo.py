"""What guards know about a call's task, cached."""

from __future__ import annotations

from ztgate.guards.taskinfo import TaskInfo, TaskInfoCache, task_id


def test_the_task_comes_from_the_warrant_checks_fact() -> None:
    assert task_id({"task.id": "t1"}) == "t1"
    assert task_id({}) is None
    assert task_id({"task.id": ""}) is None
    assert task_id({"task.id": 7}) is None


async def test_tasks_are_loaded_once_and_missing_ones_are_not_cached() -> None:
    loads: list[str] = []

    def load(task: str) -> TaskInfo | None:
        loads.append(task)
        return TaskInfo(task, f"intent of {task}", 100.0) if task != "gone" else None

    cache = TaskInfoCache(load, size=2)
    assert (await cache.get("a")) == TaskInfo("a", "intent of a", 100.0)
    assert (await cache.get("a")) is not None
    assert await cache.get("gone") is None
    assert await cache.get("gone") is None
    assert loads == ["a", "gone", "gone"]
    await cache.get("b")
    await cache.get("c")  # evicts a (least recently used)
    await cache.get("a")
    assert loads[-1] == "a"
