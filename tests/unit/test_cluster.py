"""`ztgate.cluster`: the balancer's config, the store settings written, and failing to start.

The cluster itself runs in `tests/integration/test_cluster.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from ztgate import cluster
from ztgate.cluster import LocalCluster, haproxy_config, with_store
from ztgate.config import load_settings

URL = "postgresql+psycopg://ztgate@127.0.0.1:5433/ztgate"
REDIS = "redis://127.0.0.1:6380/0"


def test_the_haproxy_config_checks_readyz_and_sticks_mcp_sessions(tmp_path: Path) -> None:
    text = haproxy_config("127.0.0.1", 8470, [("replica-1", 8481), ("replica-2", 8482)], tmp_path)
    assert "bind 127.0.0.1:8470" in text
    assert "option httpchk GET /readyz" in text
    assert "http-check expect status 200" in text
    assert "stick match req.hdr(mcp-session-id)" in text
    assert "stick store-response res.hdr(mcp-session-id)" in text
    assert "server replica-1 127.0.0.1:8481 check" in text
    assert "server replica-2 127.0.0.1:8482 check" in text
    assert f"stats socket {tmp_path} " in text


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config("127.0.0.1", 8470, [("r1", 8481)], tmp_path / "s.sock"))
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "text",
    [
        "[gateway]\nport = 1\n",
        "[store]\nbusy_timeout_ms = 100\n",
        "[gateway]\nport = 1\n\n[store]\n# url = ''\n\n[audit]\nchain = 'x'\n",
    ],
)
def test_the_store_settings_go_into_the_store_section(tmp_path: Path, text: str) -> None:
    written = with_store(text, URL, REDIS)
    parsed = tomllib.loads(written)
    assert parsed["store"]["url"] == URL
    assert parsed["store"]["hot_state_url"] == REDIS
    path = tmp_path / "ztgate.toml"
    path.write_text(written)
    settings = load_settings(path)
    assert settings.store.hot_state_url == REDIS


def test_the_demo_config_with_the_stores_loads(tmp_path: Path) -> None:
    from ztgate.cli.init import config_text

    path = tmp_path / "ztgate.toml"
    path.write_text(with_store(config_text(demo=True), URL, REDIS))
    settings = load_settings(path)
    assert settings.demo.tools is True
    assert settings.database_url.startswith("postgresql")


def test_without_haproxy_it_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="make haproxy"):
        LocalCluster(tmp_path).start()


def test_a_failed_start_stops_what_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[bool] = []

    def broken(self: LocalCluster, haproxy: str, timeout: float) -> None:
        raise RuntimeError("redis-server is not installed")

    monkeypatch.setattr(cluster.shutil, "which", lambda _name: "/usr/sbin/haproxy")
    monkeypatch.setattr(LocalCluster, "_start", broken)
    monkeypatch.setattr(LocalCluster, "stop", lambda self: stopped.append(True))
    with pytest.raises(RuntimeError, match="redis-server"):
        LocalCluster(tmp_path).start()
    assert stopped == [True]
