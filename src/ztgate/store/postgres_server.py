"""A throwaway PostgreSQL cluster for the tests and the benchmarks.

Each `PostgresServer` makes its own cluster (`initdb`, trust authentication,
superuser `ztgate`) in a scratch directory and runs it with `pg_ctl` on a
free loopback port, its Unix socket in the same directory, durability off
(`fsync = off`: a test cluster need not survive a power loss; the
benchmarks' `durable` cluster keeps PostgreSQL's defaults); it never uses
a server that happens to be running. PostgreSQL refuses to run as root: run
as root, the cluster belongs to Debian's `postgres` user (or `nobody`) and
every command runs as that user (`runuser`). `stop` and `start` again on the
same port and data simulate a restart; `crash` stops it without a shutdown
checkpoint, as a killed server would.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from ztgate.ports import free_port

INSTALL_HINT = "PostgreSQL is not installed: run 'make postgres' (Debian's postgresql package)"
SUPERUSER = "ztgate"


def find_bindir() -> Path | None:
    """The directory of `initdb` and `pg_ctl`: on the PATH, else Debian's newest."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: [int(p) if p.isdigit() else 0 for p in Path(path).parts[-3].split(".")],
    )
    return Path(candidates[-1]).parent if candidates else None


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


def _reachable_tempdir() -> str:
    # The cluster's user must reach its directory: a $TMPDIR under /root would
    # not do (every directory above it must be searchable by others).
    base = Path(tempfile.gettempdir()).resolve()
    if all(part.stat().st_mode & 0o001 for part in (base, *base.parents)):
        return str(base)
    return "/tmp"  # noqa: S108 - sticky and searchable by everyone


class PostgresServer:
    """A PostgreSQL cluster of our own; a context manager that starts and stops it."""

    def __init__(self, bindir: Path | None = None, *, durable: bool = False) -> None:
        """`durable`: fsync on, as a production server runs (the benchmarks); off for tests."""
        found = bindir or find_bindir()
        if found is None:
            raise RuntimeError(INSTALL_HINT)
        self.bindir = found
        self.port = free_port()
        root = os.geteuid() == 0
        self._scratch = tempfile.TemporaryDirectory(
            prefix="ztgate-postgres-", dir=_reachable_tempdir() if root else None
        )
        self.directory = Path(self._scratch.name)
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._as: list[str] = []
        if root:
            user = _unprivileged_user()
            entry = pwd.getpwnam(user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            self._as = ["runuser", "-u", user, "--"]
        self.durable = durable
        self.running = False

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this server (over TCP on loopback)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """The libpq connection string of `database` (for psycopg directly)."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def _run(self, program: str, *args: str, timeout: float = 60.0) -> None:
        command = [*self._as, str(self.bindir / program), *args]
        result = subprocess.run(  # noqa: S603 - PostgreSQL's own programs, fixed arguments
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()[-2000:]} {log}"
            )

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (making the cluster the first time) and wait until it accepts."""
        if self.running:
            return
        if not self.data.exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.directory}",
                "-c listen_addresses=127.0.0.1",
                *(() if self.durable else ("-c fsync=off", "-c full_page_writes=off")),
                "-c max_connections=200",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (a clean shutdown, clients disconnected) or `immediate`."""
        if not self.running:
            return
        self.running = False
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def crash(self) -> None:
        """Stop the server as a crash would (no shutdown checkpoint; recovery at next start)."""
        self.stop("immediate")

    def restart(self) -> None:
        """Stop and start again on the same port and data."""
        self.stop()
        self.start()

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` (a copy of `template`, if given); returns its URL."""
        import psycopg

        clause = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{clause}'.encode())
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, disconnecting whoever is still connected."""
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def close(self) -> None:
        """Stop the server and remove its directory."""
        try:
            if self.running:
                self.stop("immediate")
        finally:
            self._scratch.cleanup()

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
