"""Change broadcasts: how replicas on one PostgreSQL learn of a change at once.

Every management write bumps a change generation in its transaction
(`ztgate.store.generations`); the generations table is the durable record of
what changed. On one SQLite file a gateway notices another process's commit
with `PRAGMA data_version`, for free. On PostgreSQL there is no such thing,
and reading the generations table before every call costs a round trip; so,
when a Redis server is configured too, the writer publishes the names it
bumped on a Redis channel once its transaction has committed
(`ChangePublisher`), and every replica follows the channel
(`ChangeBroadcasts`): a call reads the generations only after a message
arrived, and then reloads what moved, exactly as without broadcasts.

Failing closed, and the durable fallback:

- A replica serves only while it is subscribed and Redis answers: it pings
  Redis on the subscription every `timeout` (at most every second), and a
  ping left unanswered for `stale_after` seconds counts as a lost
  connection (a partition breaks nothing, it only goes silent).
  Otherwise `ready` is False and the watcher raises `StoreUnavailableError`,
  so every call is refused (503), as while Redis holds no hot state.
- Each (re)subscription marks everything as possibly changed: the next
  call re-reads the generations table before it is decided, so whatever was
  published while the replica was away is not lost; if the table cannot be
  read, that call is refused too.
- A publication can still be lost while the replica stays connected (the
  writer died between its commit and its publish, or Redis was briefly
  unreachable from the writer alone): every `resync_seconds` the next call
  re-reads the generations anyway. That bounds how stale a replica can be
  in that rare case; the usual delay is one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ztgate.errors import StoreUnavailableError

logger = logging.getLogger(__name__)

CHANNEL_SUFFIX = "changes"
# The least time a ping may go unanswered before the replica stops serving:
# long enough that a busy event loop is not taken for a silent Redis.
_MIN_STALE_SECONDS = 2.0
# Waits between attempts to subscribe again, in seconds.
_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)


def channel_name(prefix: str) -> str:
    """The channel a store's writers publish on (the hot state's key prefix, then "changes")."""
    return prefix + CHANNEL_SUFFIX


class ChangePublisher:
    """Publishes the generations a committed transaction bumped (called by `Database.write`).

    A failed publication does not undo the commit and does not raise: the
    change is stored, and the replicas' periodic re-read finds it. It is
    logged, with the bound on the delay.
    """

    def __init__(self, url: str, *, prefix: str, timeout: float, resync_seconds: float) -> None:
        """Connect lazily to the Redis at `url`; a publication waits at most `timeout` seconds."""
        self._channel = channel_name(prefix)
        self._resync = resync_seconds
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def __call__(self, names: Iterable[str]) -> None:
        """Tell every replica that generations `names` moved."""
        payload = ",".join(sorted(names))
        try:
            self._client.publish(self._channel, payload)
        except (RedisError, OSError) as exc:
            logger.warning(
                "change to %s committed, but its broadcast failed (%s): "
                "replicas see it within %.1f s, at their next re-read",
                payload,
                exc,
                self._resync,
            )

    def close(self) -> None:
        """Close the connection."""
        self._client.close()


class ChangeBroadcasts:
    """One replica's subscription to the change channel; see the module's docstring."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout: float,
        resync_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Nothing is connected until `start`."""
        self._channel = channel_name(prefix)
        self._timeout = timeout
        self._resync = resync_seconds
        self._ping_every = min(timeout, 1.0)
        self.stale_after = max(_MIN_STALE_SECONDS, 3 * timeout)
        self._monotonic = monotonic
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )
        self._pubsub: PubSub | None = None
        self._follower: asyncio.Task[None] | None = None
        self._subscribed = False
        self._pinged_at = float("-inf")
        self._unanswered_since: float | None = None  # the oldest ping not yet answered
        self._read_at = float("-inf")
        self._pending = True
        self.problem = "not subscribed yet"
        self._message = asyncio.Event()  # set (and replaced) at each message
        self.messages = 0
        self.subscriptions = 0

    @property
    def ready(self) -> bool:
        """Whether this replica may serve: subscribed, and no ping unanswered for too long."""
        return self._subscribed and not self._silent(self._monotonic())

    def _silent(self, now: float) -> bool:
        since = self._unanswered_since
        return since is not None and now - since > self.stale_after

    async def start(self) -> None:
        """Subscribe, then follow the channel in the background.

        Raises:
            StoreUnavailableError: Redis does not answer (the gateway does not start).
        """
        try:
            await self._subscribe()
        except (RedisError, OSError) as exc:
            await self.stop()
            raise StoreUnavailableError(f"change broadcasts unavailable: {exc}") from exc
        self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        """Unsubscribe and close the connections."""
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        await self._drop()
        await self._client.aclose()

    def take(self) -> bool:
        """Whether the generations must be read now (a message came, or it is time to re-read).

        Raises:
            StoreUnavailableError: this replica cannot know what changed
                (not subscribed, or Redis silent for too long).
        """
        now = self._monotonic()
        if not self._subscribed or self._silent(now):
            if self._subscribed:
                self.problem = f"Redis silent for over {self.stale_after:.1f} s"
            self._pending = True  # whenever it is back, read the store before serving
            raise StoreUnavailableError(f"change broadcasts unavailable: {self.problem}")
        if not self._pending and now - self._read_at < self._resync and not self._unread():
            return False
        self._pending = False
        self._read_at = now
        return True

    def _unread(self) -> bool:
        """Whether the subscription has bytes this replica has not handled yet.

        A message published before a call arrived may still sit in the
        socket, or in the stream redis-py reads it from, when the call is
        checked: the event loop runs the call's task before the follower's.
        Then the store is read now, so that a change acknowledged to anyone
        before a call was sent holds for that call (one `select` per call).
        Data that is not a change (a pong) costs one read of the
        generations. redis-py has no public way to look at its buffers;
        should that change, every call reads the store (slower, never stale).
        """
        pubsub = self._pubsub
        try:
            connection: Any = pubsub.connection if pubsub is not None else None
            if connection is None:
                return True
            if connection._parser._buffer or connection._reader._buffer:
                return True
            sock = connection._writer.transport.get_extra_info("socket")
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except Exception:  # internals changed, or the connection is going away
            return True
        return bool(readable)

    async def next_message(self, timeout: float) -> None:
        """Return at the next change message, or after `timeout` seconds (approval waiters)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._message.wait(), timeout)

    def again(self) -> None:
        """The read `take` asked for failed: ask for it on the next call too."""
        self._pending = True

    async def _subscribe(self) -> PubSub:
        pubsub = self._client.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(self._channel)
        deadline = self._monotonic() + self._timeout
        while True:
            message = await pubsub.get_message(timeout=self._timeout)
            if message is not None and message.get("type") == "subscribe":
                break
            if self._monotonic() > deadline:
                raise RedisError("no confirmation of the subscription")
        # Whatever was published before now is in the generations table:
        # read it before the next call is decided.
        self._pending = True
        self._pinged_at = self._monotonic()
        self._unanswered_since = None
        self._subscribed = True
        self.subscriptions += 1
        return pubsub

    async def _follow(self) -> None:
        failures = 0
        while True:
            try:
                pubsub = self._pubsub
                if pubsub is None:
                    pubsub = await self._subscribe()
                    logger.warning("change broadcasts: subscribed again; re-reading the store")
                    failures = 0
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure, not only Redis's: never serve unfollowed
                if not isinstance(exc, RedisError | OSError):
                    logger.exception("change broadcasts: unexpected error")
                if self._subscribed:
                    logger.error(
                        "change broadcasts lost (%s): refusing calls until subscribed again", exc
                    )
                self._subscribed = False
                self.problem = str(exc) or type(exc).__name__
                await self._drop()
                await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
                failures += 1

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=self._ping_every)
            now = self._monotonic()
            if message is not None:
                self._unanswered_since = None  # whatever came, the connection is alive
                if message.get("type") == "message":
                    self._pending = True
                    self.messages += 1
                    self._message.set()
                    self._message = asyncio.Event()
            elif self._silent(now):
                raise RedisError(f"Redis silent for over {self.stale_after:.1f} s")
            if now - self._pinged_at >= self._ping_every:
                self._pinged_at = now
                if self._unanswered_since is None:
                    self._unanswered_since = now
                await pubsub.ping()

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed = False
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
