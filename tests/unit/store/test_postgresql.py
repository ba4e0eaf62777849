"""PostgreSQL as the durable store: the URL, the write lock, failing closed, one chain for all.

The suites of the store, the audit log and the registries run on both kinds
(`store_kind`); these are the parts only PostgreSQL has: several processes
appending to one chain at once, the advisory write lock, a server that goes
away and comes back.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from ztgate.audit.log import AuditLog
from ztgate.audit.reader import AuditReader
from ztgate.audit.record import AuditEntry
from ztgate.cli.main import app
from ztgate.config import load_settings
from ztgate.errors import ConfigError, StoreUnavailableError
from ztgate.ports import free_port
from ztgate.store.database import Database, check_database_url, display_url
from ztgate.store.generations import bump
from ztgate.store.postgres_server import PostgresServer
from ztgate.store.tables import audit_records
from ztgate.testing import FrozenClock, make_settings


@pytest.fixture
def pg(make_database: Callable[..., Database]) -> Database:
    """A migrated PostgreSQL database of the test's own."""
    return make_database("postgresql")


def entry(i: int) -> AuditEntry:
    return AuditEntry(kind="call", outcome="allow", call_id=f"call-{i}", tool="get_weather")


# -- the URL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///var/lib/ztgate/ztgate.db",
        "postgresql+psycopg://ztgate:secret@db.internal:5432/ztgate",
        "postgresql://ztgate@db.internal/ztgate",
    ],
)
def test_sqlite_and_postgresql_through_psycopg_are_accepted(url: str) -> None:
    assert check_database_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg2://ztgate@db/ztgate", "psycopg 3"),
        ("postgresql+asyncpg://ztgate@db/ztgate", "psycopg 3"),
        ("postgresql+psycopg://ztgate@db.internal", "must name a database"),
        ("mysql://ztgate@db/ztgate", "SQLite (sqlite:///PATH) or PostgreSQL"),
        ("not a url", "not a database URL"),
    ],
)
def test_other_urls_are_refused_at_load_in_one_line(tmp_path: Path, url: str, reason: str) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text(f'[store]\nurl = "{url}"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "store.url" in message
    assert reason in message
    assert "\n" not in message


def test_a_plain_postgresql_url_uses_psycopg_3(postgres_server: PostgresServer) -> None:
    db = Database(postgres_server.url().replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert db.is_postgresql
        assert db.engine.dialect.driver == "psycopg"
        db.ping()
    finally:
        db.dispose()


# -- the write lock -------------------------------------------------------------------


def test_writes_are_serialised_and_a_wait_past_the_timeout_fails_closed(pg: Database) -> None:
    impatient = Database(pg.url, busy_timeout_ms=100)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with pg.write() as conn:
            bump(conn, "tools")
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(StoreUnavailableError, match="lock timeout"), impatient.write():
            pass  # pragma: no cover - the lock is never granted
    finally:
        release.set()
        holder.join()
        impatient.dispose()
    with pg.write() as conn:  # granted once the holder committed
        bump(conn, "tools")


def test_an_append_waiting_too_long_for_the_chain_head_fails_closed(
    pg: Database, clock: FrozenClock
) -> None:
    AuditLog(pg, clock).append_now([entry(1)])
    impatient = Database(pg.url, busy_timeout_ms=100)
    log = AuditLog(impatient, clock)
    try:
        with pg.write() as conn:  # another writer holds the head's row lock
            conn.exec_driver_sql("SELECT seq FROM audit_heads WHERE chain = 'main' FOR UPDATE")
            with pytest.raises(StoreUnavailableError, match="lock timeout"):
                log.append_now([entry(2)])
        assert [r.seq for r in log.append_now([entry(3)])] == [2]
    finally:
        impatient.dispose()


def test_a_server_that_does_not_answer_is_unavailable(clock: FrozenClock) -> None:
    db = Database(f"postgresql+psycopg://ztgate@127.0.0.1:{free_port()}/ztgate")
    log = AuditLog(db, clock)
    try:
        with pytest.raises(StoreUnavailableError):
            db.ping()
        with pytest.raises(StoreUnavailableError), db.write():
            pass  # pragma: no cover - never connected
        with pytest.raises(StoreUnavailableError):
            log.append_now([entry(1)])
    finally:
        db.dispose()


# -- one chain, many writers ----------------------------------------------------------

_APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from ztgate.audit.checkpoint import load_signer
    from ztgate.audit.log import AuditLog
    from ztgate.audit.record import AuditEntry
    from ztgate.clock import SystemClock
    from ztgate.config import load_settings

    settings = load_settings(Path(sys.argv[1]))
    name, count = sys.argv[2], int(sys.argv[3])
    signer = load_signer(settings.path(settings.audit.signing_key))

    async def main() -> None:
        database = settings.open_database()
        log = AuditLog(database, SystemClock(), signer=signer, checkpoint_every_records=7)
        await log.start()
        for start in range(0, count, 10):
            await asyncio.gather(*(
                log.append(AuditEntry(kind="call", outcome="allow", call_id=f"{name}-{i}"))
                for i in range(start, min(start + 10, count))
            ))
        await log.stop()
        database.dispose()

    asyncio.run(main())
    """
)


def test_two_processes_appending_at_once_make_one_chain_that_verifies(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.create_database("chain_of_two")
    settings = make_settings(tmp_path, f'[store]\nurl = "{url}"\n')  # ztgate init migrates it
    config = tmp_path / "ztgate.toml"
    count = 150
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(config), name, str(count)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    for process in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors

    database = settings.open_database()
    try:
        with database.read() as conn:
            seqs = conn.execute(select(audit_records.c.seq).order_by(audit_records.c.seq)).all()
            writers = conn.execute(
                select(func.count(func.distinct(func.substr(audit_records.c.call_id, 1, 5))))
            ).scalar_one()
    finally:
        database.dispose()
    assert [row[0] for row in seqs] == list(range(1, 2 * count + 1))
    assert writers == 2
    result = CliRunner().invoke(app, ["--config", str(config), "audit", "verify"])
    assert result.exit_code == 0, result.output
    assert f"ok chain main: {2 * count} records" in " ".join(result.stdout.split())


async def test_gateways_in_one_process_on_separate_engines_interleave_into_one_chain(
    pg: Database, clock: FrozenClock
) -> None:
    databases = [Database(pg.url) for _ in range(3)]
    logs = [AuditLog(db, clock) for db in databases]
    try:
        for log in logs:
            await log.start()
        receipts = await asyncio.gather(*(logs[i % 3].append(entry(i)) for i in range(90)))
        for log in logs:
            await log.stop()
    finally:
        for db in databases:
            db.dispose()
    assert sorted(r.seq for r in receipts) == list(range(1, 91))
    report = AuditReader(pg).verify(None)
    assert report.ok, [(c.chain, c.first_bad_seq, c.problem) for c in report.chains]
    assert [c.records for c in report.chains] == [90]


# -- a restart ------------------------------------------------------------------------


def test_appends_fail_closed_while_the_server_is_down_and_resume_after(
    postgres_server: PostgresServer, pg: Database, clock: FrozenClock
) -> None:
    log = AuditLog(pg, clock)
    assert [r.seq for r in log.append_now([entry(1)])] == [1]
    postgres_server.stop()
    try:
        with pytest.raises(StoreUnavailableError):
            log.append_now([entry(2)])
        with pytest.raises(StoreUnavailableError):
            pg.ping()
    finally:
        postgres_server.start()
    assert [r.seq for r in log.append_now([entry(3)])] == [2]
    pg.ping()
    log.connection.close()


def test_the_url_shown_in_logs_hides_the_password() -> None:
    shown = display_url("postgresql+psycopg://ztgate:s3cret@db.internal:5432/ztgate")
    assert "s3cret" not in shown
    assert shown == "postgresql+psycopg://ztgate:***@db.internal:5432/ztgate"
    assert display_url("sqlite:////srv/ztgate.db") == "sqlite:////srv/ztgate.db"


def test_the_readiness_probe_refuses_a_read_only_database(
    pg: Database, postgres_server: PostgresServer
) -> None:
    pg.probe_write()
    name = pg.engine.url.database
    with psycopg.connect(postgres_server.conninfo(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'.encode())
    reopened = Database(pg.url)
    try:
        with pytest.raises(StoreUnavailableError, match="read-only"):
            reopened.probe_write()
    finally:
        reopened.dispose()


def test_the_urls_own_server_options_are_kept_beside_the_lock_timeout(
    pg: Database,
) -> None:
    db = Database(pg.url + "?options=-c%20statement_timeout%3D7000", busy_timeout_ms=1234)
    try:
        with db.read() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1234ms"
    finally:
        db.dispose()


def test_replicas_migrating_a_fresh_database_at_once_take_turns(
    make_database: Callable[..., Database],
) -> None:
    fresh = make_database("postgresql", migrated=False)
    databases = [Database(fresh.url) for _ in range(3)]
    errors: list[BaseException] = []

    def migrate(database: Database) -> None:
        try:
            database.migrate()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in databases]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for db in databases:
            db.dispose()
    assert errors == []
    with fresh.read() as conn:
        assert conn.execute(select(func.count()).select_from(audit_records)).scalar_one() == 0
