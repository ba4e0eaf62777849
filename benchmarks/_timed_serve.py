"""`ztgate serve`, with every entry of the real pipeline timed (for benchmarks only).

    python benchmarks/_timed_serve.py --config ztgate.toml serve

The very gateway `python -m ztgate serve` runs, with timers wrapped around
what a call goes through: each pre-call and post-call check as the pipeline
runs it (`Pipeline._run`: the check itself and the pipeline's per-check
timeout and bookkeeping), the whole pre-call and result chains, forwarding
to the tool, each audit record, and `Gateway.handle` as a whole. Nothing
else changes: same settings, same checks, same order.

SIGUSR1 writes the samples gathered since the last SIGUSR1 (seconds, per
name) as JSON to the file named by `ZTGATE_BENCH_TIMINGS`, and starts
afresh; so a benchmark sends one before its measured run (to drop the
warm-up) and one after. The timers cost about a microsecond per entry, so
these figures are for the breakdown, not for the end-to-end latency.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ztgate.cli.main import main
from ztgate.forward import Forwarder
from ztgate.gateway import Gateway
from ztgate.pipeline import Pipeline

samples: defaultdict[str, list[float]] = defaultdict(list)
clock = time.perf_counter


def timed(method: Callable[..., Awaitable[Any]], name: Callable[..., str]) -> Any:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return await method(*args, **kwargs)
        finally:
            samples[name(*args, **kwargs)].append(clock() - started)

    return wrapper


def _phase(self: Pipeline, name: str, *_: Any) -> str:
    return f"check:{name}"


Pipeline._run = timed(Pipeline._run, _phase)  # type: ignore[method-assign]
Pipeline.decide = timed(Pipeline.decide, lambda *_: "stage:pre-call checks")  # type: ignore[method-assign]
Pipeline.review = timed(Pipeline.review, lambda *_: "stage:result checks")  # type: ignore[method-assign]
Forwarder.forward = timed(Forwarder.forward, lambda *_: "stage:forward to the tool")  # type: ignore[method-assign]
Gateway._record = timed(Gateway._record, lambda *_, **__: "stage:audit record")  # type: ignore[method-assign]
Gateway.handle = timed(Gateway.handle, lambda *_: "stage:Gateway.handle")  # type: ignore[method-assign]


def dump(signum: int, frame: Any) -> None:
    target = os.environ.get("ZTGATE_BENCH_TIMINGS")
    taken = dict(samples)
    samples.clear()
    if target:
        Path(target).write_text(json.dumps(taken))


signal.signal(signal.SIGUSR1, dump)

if __name__ == "__main__":
    main()
