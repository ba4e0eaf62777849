"""Hot state in Redis, shared by every gateway replica that names the same server.

`RedisHotState` has the semantics of `MemoryHotState` (see `ztgate.store.hot`),
operation for operation. Each operation is one round trip: a Lua script
(registered once, run by EVALSHA and loaded again if the server forgot it)
or one command, so each is atomic however many replicas call at once.

Keys are `<prefix><kind>:<key>`, three kinds, because `MemoryHotState` keeps
three families apart (one name may hold a bucket, a window and totals at
the same time):

- `e:` an expiring entry (a nonce, a mark, a counter, totals, a map of
  notes): a hash whose field `@e` is its expiry in seconds, `@n` a counter,
  `@t` totals, `@c` the number of note fields, and `.<field>` the JSON list
  of one field's labels. An entry is alive while `@e` is in the future;
  the scripts check that, so expiry is exact, and Redis drops the key a
  little after (`PEXPIRE`) so that nothing stays behind.
- `b:` a token bucket: a hash of its tokens `t` and when they were counted `at`.
- `w:` a sliding window: a list of event times, oldest first.

Every key expires: an expiring entry at its TTL, a bucket when it would be
full again, a window when its newest event leaves it (plus `_SLACK_MS`).

Time: by default every script reads the server's `TIME`, one clock for
every replica (a step of the server's clock backwards counts as no time
for buckets and windows). Given a `Clock`, the scripts use the caller's
time instead: wall time for TTLs, monotonic time for buckets and windows,
exactly as `MemoryHotState` does; the tests pass a frozen clock so that
one suite, with time travel, runs against both implementations.

Failing closed: an unreachable server, a timeout or an error reply raises
`HotStateUnavailableError` (a `StoreUnavailableError`); the pipeline turns
a check that raises into a deny, so a replay check that cannot ask Redis
refuses the call.

A server that lost its data (restarted without persistence, flushed) is
noticed: `begin` leaves a key, `<prefix>epoch`, that every script but
`seed` looks for (and keeps alive). Without it an operation raises, and the
hot state recovers in the background: the `recover` callback given to
`begin` puts back what can be (the gateway seeds the budgets' use again
from the database), then the epoch is set to the time of the recovery.
Until then every operation is refused; after it, `remember_once` refuses
for its TTL any key that might have been remembered before the loss (a
proof used just before could otherwise be replayed once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from ztgate.clock import Clock
from ztgate.errors import GatewayError, StoreUnavailableError
from ztgate.store.hot import MAX_LABELS, Bucket

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Redis keeps a key this much longer than it is alive: the scripts decide
# liveness, the server's expiry only reclaims memory.
_SLACK_MS = 1000
# The epoch key lives this long after the last operation that looked at it.
_EPOCH_MS = 30 * 86400 * 1000
# Error replies of the scripts (the first word is the error's code).
_LOST = "ZTGATELOST"
_RECOVERING = "ZTGATERECOVERING"

# Shared by the scripts: the time, the expiring entries, the epoch. The last
# of KEYS is always the epoch key.
_PRELUDE = (
    """
local function clock(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
local function ms(seconds)
  if seconds ~= seconds or seconds > 1e12 then seconds = 1e12 end
  if seconds < 0 then seconds = 0 end
  return math.ceil(seconds * 1000) + SLACK_MS
end
local function alive(key, now)
  local e = redis.call('HGET', key, '@e')
  if e and tonumber(e) > now then return true end
  redis.call('DEL', key)
  return false
end
local function renew(key, now, ttl)
  redis.call('HSET', key, '@e', fmt(now + ttl))
  redis.call('PEXPIRE', key, ms(ttl))
end
local function intact()
  return redis.call('PEXPIRE', KEYS[#KEYS], EPOCH_MS) == 1
end
local function lost()
  return redis.error_reply('LOST_CODE the hot state lost its data')
end
local function join(values)
  local out = {}
  for i, v in ipairs(values) do out[i] = fmt(v) end
  return table.concat(out, ',')
end
local function split(raw)
  local out = {}
  for v in string.gmatch(raw, '[^,]+') do out[#out + 1] = tonumber(v) end
  return out
end
""".replace("SLACK_MS", str(_SLACK_MS))
    .replace("EPOCH_MS", str(_EPOCH_MS))
    .replace("LOST_CODE", _LOST)
)

# KEYS[1] epoch; ARGV 'clean', or the time ('' for the server's) -> 1 if set
_BEGIN = """
local value = 0
if ARGV[1] ~= 'clean' then value = clock(ARGV[1]) end
if redis.call('SET', KEYS[1], fmt(value), 'NX', 'PX', EPOCH_MS) then return 1 end
return 0
""".replace("EPOCH_MS", str(_EPOCH_MS))

# KEYS[1] entry; ARGV now, ttl -> 1 if new
_REMEMBER_ONCE = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then return lost() end
intact()
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
if alive(KEYS[1], now) then return 0 end
if now < tonumber(epoch) + ttl then
  local upto = fmt(tonumber(epoch) + ttl)
  return redis.error_reply('RECOVERING_CODE maybe seen before the loss: refused until ' .. upto)
end
renew(KEYS[1], now, ttl)
return 1
""".replace("RECOVERING_CODE", _RECOVERING)

# KEYS[1] entry; ARGV now, amount, ttl -> the counter
_INCR = """
if not intact() then return lost() end
local now = clock(ARGV[1])
if not alive(KEYS[1], now) then renew(KEYS[1], now, tonumber(ARGV[3])) end
return redis.call('HINCRBY', KEYS[1], '@n', ARGV[2])
"""

# KEYS[1] entry; ARGV now, ttl
_MARK = """
if not intact() then return lost() end
local now = clock(ARGV[1])
alive(KEYS[1], now)
renew(KEYS[1], now, tonumber(ARGV[2]))
return 1
"""

# KEYS[1] entry; ARGV now -> 1 while alive
_IS_MARKED = """
if not intact() then return lost() end
if alive(KEYS[1], clock(ARGV[1])) then return 1 end
return 0
"""

# KEYS buckets; ARGV now, cost, then rate and burst of each -> {wait, index} or {}
_TAKE = """
if not intact() then return lost() end
local now = clock(ARGV[1])
local cost = tonumber(ARGV[2])
local levels = {}
local wait = 0
local slowest = nil
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  local rate = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', key, 't', 'at')
  local tokens = burst
  if state[1] then
    tokens = tonumber(state[1])
    local elapsed = now - tonumber(state[2])
    if elapsed > 0 then tokens = tokens + elapsed * rate end
    if tokens > burst then tokens = burst end
  end
  levels[i] = tokens
  if tokens < cost then
    local short = math.huge
    if cost <= burst then short = (cost - tokens) / rate end
    if short > wait then wait = short; slowest = i end
  end
end
if slowest then return {fmt(wait), slowest} end
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  local rate = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local left = levels[i] - cost
  redis.call('HSET', key, 't', fmt(left), 'at', fmt(now))
  redis.call('PEXPIRE', key, ms((burst - left) / rate))
end
return {}
"""

# KEYS[1] window; ARGV now, window, cap -> the events in the window
_HIT = """
if not intact() then return lost() end
local now = clock(ARGV[1])
local window = tonumber(ARGV[2])
local key = KEYS[1]
local horizon = now - window
while true do
  local first = redis.call('LINDEX', key, 0)
  if not first or tonumber(first) > horizon then break end
  redis.call('LPOP', key)
end
redis.call('RPUSH', key, fmt(now))
redis.call('LTRIM', key, -tonumber(ARGV[3]), -1)
redis.call('PEXPIRE', key, ms(window))
return redis.call('LLEN', key)
"""

# KEYS[1] entry; ARGV now, ttl, n, n amounts, n limits ('' for none) -> {added, totals}
_CHARGE = """
if not intact() then return lost() end
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local key = KEYS[1]
local current = nil
if alive(key, now) then
  local raw = redis.call('HGET', key, '@t')
  if raw then current = split(raw) end
end
local totals = {}
local after = {}
for i = 1, n do
  totals[i] = current and current[i] or 0
  after[i] = totals[i] + tonumber(ARGV[3 + i])
end
for i = 1, n do
  local limit = ARGV[3 + n + i]
  if limit ~= '' and tonumber(ARGV[3 + i]) > 0 and after[i] > tonumber(limit) then
    return {0, join(totals)}
  end
end
if not current then renew(key, now, ttl) end
redis.call('HSET', key, '@t', join(after))
return {1, join(after)}
"""

# KEYS[1] entry; ARGV now, ttl, totals -> 1 if set
_SEED = """
local now = clock(ARGV[1])
local key = KEYS[1]
if alive(key, now) and redis.call('HEXISTS', key, '@t') == 1 then return 0 end
renew(key, now, tonumber(ARGV[2]))
redis.call('HSET', key, '@t', ARGV[3])
return 1
"""

# KEYS[1] entry; ARGV now, ttl, cap, max labels, then field and label pairs
_NOTE = """
if not intact() then return lost() end
local now = clock(ARGV[1])
local key = KEYS[1]
local cap = tonumber(ARGV[3])
local most = tonumber(ARGV[4])
alive(key, now)
local count = tonumber(redis.call('HGET', key, '@c') or '0')
for i = 5, #ARGV, 2 do
  local field = '.' .. ARGV[i]
  local label = ARGV[i + 1]
  local raw = redis.call('HGET', key, field)
  if not raw then
    if count < cap then
      count = count + 1
      redis.call('HSET', key, field, cjson.encode({label}))
    end
  else
    local labels = cjson.decode(raw)
    if #labels < most then
      local found = false
      for _, known in ipairs(labels) do
        if known == label then found = true; break end
      end
      if not found then
        labels[#labels + 1] = label
        redis.call('HSET', key, field, cjson.encode(labels))
      end
    end
  end
end
redis.call('HSET', key, '@c', count)
renew(key, now, tonumber(ARGV[2]))
return 1
"""

# KEYS[1] entry; ARGV now, fields -> each field's labels (JSON) or false
_NOTES = """
local key = KEYS[1]
if not intact() then return lost() end
if not alive(key, clock(ARGV[1])) then return {} end
local fields = {}
for i = 2, #ARGV do fields[i - 1] = '.' .. ARGV[i] end
return redis.call('HMGET', key, unpack(fields))
"""


class HotStateUnavailableError(StoreUnavailableError):
    """The shared hot state (Redis) is unreachable or failed; callers must fail closed."""


def redacted(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisHotState:
    """The shared implementation: every replica naming the same server sees the same state."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "ztgate:",
        clock: Clock | None = None,
        name: str = "redis",
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self.name = name
        self._epoch = prefix + "epoch"
        self._recover: Callable[[], Awaitable[None]] | None = None
        self._recovering: asyncio.Task[None] | None = None
        register = client.register_script
        self._begin = register(_PRELUDE + _BEGIN)
        self._remember_once = register(_PRELUDE + _REMEMBER_ONCE)
        self._incr = register(_PRELUDE + _INCR)
        self._mark = register(_PRELUDE + _MARK)
        self._is_marked = register(_PRELUDE + _IS_MARKED)
        self._take = register(_PRELUDE + _TAKE)
        self._hit = register(_PRELUDE + _HIT)
        self._charge = register(_PRELUDE + _CHARGE)
        self._seed = register(_PRELUDE + _SEED)
        self._note = register(_PRELUDE + _NOTE)
        self._notes = register(_PRELUDE + _NOTES)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "ztgate:",
        timeout: float = 0.5,
        clock: Clock | None = None,
    ) -> RedisHotState:
        """Connect (lazily) to the server at `url`; each command waits at most `timeout` seconds.

        A failed command is tried once more on a new connection (a pooled
        connection may have died with a restarted server), then it raises.
        """
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )
        return cls(client, prefix=prefix, clock=clock, name=f"redis at {redacted(url)}")

    async def ping(self) -> None:
        """Raise `HotStateUnavailableError` unless the server answers."""
        await self._run(self._client.ping)

    async def begin(self, recover: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start using the server: its state counts as whole; `recover` is awaited if it is lost.

        Operations raise until `begin` was called once by some client of the
        same server and prefix (a gateway calls it at start).
        """
        self._recover = recover
        await self._script(self._begin, [], "clean")

    async def close(self) -> None:
        """Stop a recovery under way and close the connections."""
        if self._recovering is not None:
            self._recovering.cancel()
            await asyncio.gather(self._recovering, return_exceptions=True)
        await self._client.aclose()

    async def remember_once(self, key: str, ttl: float) -> bool:
        """Store `key` for `ttl` seconds; True if it was new."""
        found = await self._script(self._remember_once, [self._entry(key)], self._now(), ttl)
        return bool(found)

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        """Add `amount` to the counter at `key`, creating it with `ttl` if absent."""
        return int(await self._script(self._incr, [self._entry(key)], self._now(), amount, ttl))

    async def mark(self, key: str, ttl: float) -> None:
        """Set a flag at `key` for `ttl` seconds."""
        await self._script(self._mark, [self._entry(key)], self._now(), ttl)

    async def unmark(self, key: str) -> None:
        """Clear the flag at `key`."""
        await self._run(lambda: self._client.delete(self._entry(key)))

    async def is_marked(self, key: str) -> bool:
        """True while the flag at `key` is set."""
        return bool(await self._script(self._is_marked, [self._entry(key)], self._now()))

    async def take(self, buckets: Sequence[Bucket], cost: float = 1.0) -> tuple[float, str | None]:
        """Take `cost` tokens from every bucket, or none; (0.0, None), or the wait and why."""
        if not buckets:
            return 0.0, None
        args: list[Any] = [self._monotonic(), _num(cost)]
        for bucket in buckets:
            args += [_num(bucket.rate), _num(bucket.burst)]
        keys = [self._prefix + "b:" + bucket.key for bucket in buckets]
        found = await self._script(self._take, keys, *args)
        if not found:
            return 0.0, None
        return float(found[0]), buckets[int(found[1]) - 1].key

    async def hit(self, key: str, window: float, cap: int) -> int:
        """Record an event; how many of the newest `cap` are within `window` seconds."""
        keys = [self._prefix + "w:" + key]
        return int(await self._script(self._hit, keys, self._monotonic(), window, max(1, cap)))

    async def charge(
        self,
        key: str,
        amounts: Sequence[float],
        limits: Sequence[float | None],
        ttl: float,
    ) -> tuple[bool, tuple[float, ...]]:
        """Add `amounts` to the totals at `key` unless a limit would be passed."""
        if len(limits) != len(amounts):
            raise ValueError("one limit for each amount")
        args: list[Any] = [self._now(), ttl, len(amounts)]
        args += [_num(amount) for amount in amounts]
        args += ["" if limit is None else _num(limit) for limit in limits]
        added, totals = await self._script(self._charge, [self._entry(key)], *args)
        return bool(added), _totals(totals, len(amounts))

    async def seed(self, key: str, totals: Sequence[float], ttl: float) -> bool:
        """Set the totals at `key` unless some are there."""
        joined = ",".join(_num(total) for total in totals)
        return bool(await self._script(self._seed, [self._entry(key)], self._now(), ttl, joined))

    async def forget(self, key: str) -> None:
        """Delete whatever is stored at `key`."""
        names = [self._prefix + kind + key for kind in ("e:", "b:", "w:")]
        await self._run(lambda: self._client.delete(*names))

    async def note(self, key: str, entries: Mapping[str, str], ttl: float, cap: int) -> None:
        """Add `entries` (field -> label) to the map at `key`, which then lives `ttl` seconds."""
        args: list[Any] = [self._now(), ttl, cap, MAX_LABELS]
        for name, label in entries.items():
            args += [name, label]
        await self._script(self._note, [self._entry(key)], *args)

    async def notes(self, key: str, fields: Sequence[str]) -> list[frozenset[str]]:
        """The labels noted at `key` for each of `fields`."""
        if not fields:
            return []
        found = await self._script(self._notes, [self._entry(key)], self._now(), *fields)
        if not found:
            return [frozenset()] * len(fields)
        return [frozenset(json.loads(raw)) if raw else frozenset() for raw in found]

    # -- plumbing ------------------------------------------------------------------------

    def _entry(self, key: str) -> str:
        return self._prefix + "e:" + key

    def _now(self) -> str:
        return "" if self._clock is None else _num(self._clock.now())

    def _monotonic(self) -> str:
        return "" if self._clock is None else _num(self._clock.monotonic())

    async def _script(self, script: Any, keys: list[str], *args: Any) -> Any:
        keys = [*keys, self._epoch]
        return await self._run(lambda: script(keys=keys, args=list(args)))

    async def _run(self, command: Callable[[], Awaitable[T]]) -> T:
        try:
            return await command()
        except ResponseError as exc:
            if str(exc).startswith(_LOST):
                self._start_recovery()
                raise HotStateUnavailableError(
                    f"hot state ({self.name}) lost its data (a restart without persistence?): "
                    "refused until it is recovered"
                ) from exc
            if str(exc).startswith(_RECOVERING):
                detail = str(exc).partition(" ")[2]
                raise HotStateUnavailableError(
                    f"hot state ({self.name}) recovered from a loss: {detail}"
                ) from exc
            raise HotStateUnavailableError(f"hot state ({self.name}) failed: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise HotStateUnavailableError(
                f"hot state ({self.name}) unavailable: {type(exc).__name__}: {exc}"
            ) from exc

    def _start_recovery(self) -> None:
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.get_running_loop().create_task(self._recovery())

    async def _recovery(self) -> None:
        """Put back what can be, then mark the state whole again as of now."""
        logger.warning("hot state (%s) lost its data: recovering", self.name)
        try:
            if self._recover is not None:
                await self._recover()
            await self._script(self._begin, [], self._now())
        except GatewayError as exc:
            logger.error("hot state (%s) not recovered yet (tried again): %s", self.name, exc)
            return
        logger.warning("hot state (%s) recovered", self.name)


def _num(value: float) -> str:
    """A number as the scripts read it back exactly (Lua reads no "inf": the largest double)."""
    number = float(value)
    if math.isnan(number):
        raise ValueError("not a number")
    if math.isinf(number):
        return "1.7976931348623157e308" if number > 0 else "-1.7976931348623157e308"
    return repr(number)


def _totals(raw: str, count: int) -> tuple[float, ...]:
    values = tuple(float(part) for part in raw.split(",") if part)
    return values if len(values) == count else (0.0,) * count
