"""`[store] hot_state_url`: which hot state the gateway builds, and a clear error for a bad URL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ztgate.config import load_settings
from ztgate.errors import ConfigError, StoreUnavailableError
from ztgate.gateway import Gateway
from ztgate.ports import free_port
from ztgate.store.hot import MemoryHotState
from ztgate.store.hot_redis import RedisHotState
from ztgate.store.redis_server import RedisServer
from ztgate.testing import FrozenClock, make_settings


def test_the_default_is_in_process(tmp_path: Path, clock: FrozenClock) -> None:
    settings = make_settings(tmp_path)
    assert settings.store.hot_state_url == ""
    assert isinstance(settings.store.hot_state(clock), MemoryHotState)


async def test_a_redis_url_builds_the_shared_hot_state(tmp_path: Path, clock: FrozenClock) -> None:
    toml = '[store]\nhot_state_url = "redis://:pw@127.0.0.1:6390/2"\nhot_state_prefix = "gw:"\n'
    settings = make_settings(tmp_path, toml)
    hot = settings.store.hot_state(clock)
    assert isinstance(hot, RedisHotState)
    assert hot.name == "redis at redis://:***@127.0.0.1:6390/2"
    await hot.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://cache:6379", "must be a redis://, rediss:// or unix:// URL"),
        ("redis://", "must name a host"),
        ("redis://cache:70000/0", "out of range"),
        ("redis://cache:6379/zero", "database after the host must be a number"),
        ("unix://", "must name a socket"),
    ],
)
def test_a_bad_url_is_refused_at_load(tmp_path: Path, url: str, reason: str) -> None:
    path = tmp_path / "ztgate.toml"
    path.write_text(f'[store]\nhot_state_url = "{url}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key == "store.hot_state_url"
    assert reason in caught.value.diagnostics()
    assert "\n" not in caught.value.diagnostics()


async def test_the_gateway_says_which_hot_state_serves(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    toml = f'[gateway]\nauthentication = "off"\n[store]\nhot_state_url = "{redis_server.url}"\n'
    gateway = Gateway.from_settings(make_settings(tmp_path, toml))
    assert isinstance(gateway.hot, RedisHotState)
    with caplog.at_level(logging.INFO, logger="ztgate.gateway"):
        await gateway.start()
        await gateway.stop()
    assert f"hot state: redis at {redis_server.url}" in caplog.text


async def test_the_gateway_does_not_start_without_its_redis(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    toml = f'[gateway]\nauthentication = "off"\n[store]\nhot_state_url = "{url}"\n'
    gateway = Gateway.from_settings(make_settings(tmp_path, toml))
    with pytest.raises(StoreUnavailableError, match="hot state"):
        await gateway.start()
    assert isinstance(gateway.hot, RedisHotState)
    await gateway.hot.close()
    gateway.database.dispose()


async def test_the_gateway_reseeds_budgets_when_its_redis_lost_its_data(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    toml = (
        f'[gateway]\nauthentication = "off"\n[store]\nhot_state_url = "{redis_server.url}"\n'
        f'hot_state_prefix = "{prefix}"\n'
    )
    gateway = Gateway.from_settings(make_settings(tmp_path, toml))
    assert isinstance(gateway.hot, RedisHotState) and gateway.containment is not None
    reseeded: list[bool] = []

    async def reseed() -> None:
        reseeded.append(True)

    monkeypatch.setattr(gateway.containment, "reseed", reseed)
    await gateway.start()
    try:
        raw = aioredis.Redis.from_url(redis_server.url)
        await raw.delete(prefix + "epoch")  # as after a restart without persistence
        await raw.aclose()
        with pytest.raises(StoreUnavailableError, match="lost its data"):
            await gateway.hot.is_marked("anything")
        for _ in range(100):
            await asyncio.sleep(0.02)
            if reseeded:
                break
        assert reseeded == [True]
        await asyncio.sleep(0.05)
        assert not await gateway.hot.is_marked("anything")
    finally:
        await gateway.stop()
