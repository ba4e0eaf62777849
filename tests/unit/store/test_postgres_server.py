"""The throwaway PostgreSQL cluster the tests and benchmarks start."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import psycopg
import pytest

from ztgate.store import postgres_server
from ztgate.store.postgres_server import PostgresServer, find_bindir


def _query(server: PostgresServer, sql: str, database: str = "postgres") -> object:
    with psycopg.connect(server.conninfo(database), connect_timeout=5) as conn:
        row = conn.execute(sql.encode()).fetchone()
        assert row is not None
        return row[0]


def test_the_binaries_are_found_on_the_path_or_in_debians_directory() -> None:
    bindir = find_bindir()
    assert bindir is not None
    assert (bindir / "initdb").exists()
    assert (bindir / "pg_ctl").exists()


def test_without_postgresql_the_hint_names_the_make_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres_server, "find_bindir", lambda: None)
    with pytest.raises(RuntimeError, match="make postgres"):
        PostgresServer()


def test_the_cluster_is_ours_on_loopback_without_durability(
    postgres_server: PostgresServer,
) -> None:
    assert _query(postgres_server, "SHOW listen_addresses") == "127.0.0.1"
    assert _query(postgres_server, "SHOW fsync") == "off"
    assert _query(postgres_server, "SHOW port") == str(postgres_server.port)
    assert _query(postgres_server, "SELECT current_user") == "ztgate"
    socket_dir = _query(postgres_server, "SHOW unix_socket_directories")
    assert socket_dir == str(postgres_server.directory)
    assert (
        postgres_server.url("x")
        == f"postgresql+psycopg://ztgate@127.0.0.1:{postgres_server.port}/x"
    )


def test_as_root_the_cluster_runs_as_an_unprivileged_user(
    postgres_server: PostgresServer,
) -> None:
    owner = pwd.getpwuid(Path(postgres_server.data).stat().st_uid).pw_name
    if os.geteuid() == 0:
        assert owner in ("postgres", "nobody")
    else:
        assert owner == pwd.getpwuid(os.geteuid()).pw_name


def test_databases_are_created_from_a_template_and_dropped(
    postgres_server: PostgresServer,
) -> None:
    postgres_server.create_database("source")
    with psycopg.connect(postgres_server.conninfo("source"), autocommit=True) as conn:
        conn.execute(b"CREATE TABLE kept (n int)")
        conn.execute(b"INSERT INTO kept VALUES (7)")
    url = postgres_server.create_database("copy", template="source")
    assert url.endswith("/copy")
    assert _query(postgres_server, "SELECT n FROM kept", "copy") == 7
    for name in ("copy", "source"):
        postgres_server.drop_database(name)
    assert _query(postgres_server, "SELECT count(*) FROM pg_database WHERE datname = 'copy'") == 0


def test_a_crash_and_a_restart_keep_committed_data_and_the_port(tmp_path: Path) -> None:
    with PostgresServer() as server:
        port = server.port
        server.create_database("kept")
        with psycopg.connect(server.conninfo("kept"), autocommit=True) as conn:
            conn.execute(b"CREATE TABLE t (n int)")
            conn.execute(b"INSERT INTO t VALUES (1)")
        server.crash()
        assert not server.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.conninfo(), connect_timeout=2)
        server.start()  # recovery from the WAL
        assert server.port == port
        assert _query(server, "SELECT n FROM t", "kept") == 1
        server.restart()
        assert _query(server, "SELECT count(*) FROM t", "kept") == 1
        directory = server.directory
    assert not directory.exists()
