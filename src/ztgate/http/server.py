"""Running the gateway under uvicorn (with uvloop and httptools)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
import ssl
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn
import uvloop
from cryptography import x509
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ztgate.config import Settings, is_loopback
from ztgate.errors import ConfigError
from ztgate.gateway import Gateway
from ztgate.http.app import create_asgi
from ztgate.http.coalesce import coalescing

logger = logging.getLogger(__name__)


def check_bind(host: str, authentication: str = "off") -> None:
    """Refuse any address but loopback while calls are unauthenticated.

    With `authentication = "required"` every call must prove who it is, so
    any address is allowed.

    Raises:
        ConfigError: `host` is reachable from other machines.
    """
    if authentication != "required" and not is_loopback(host):
        raise ConfigError(
            "gateway",
            "host",
            f"refusing to listen on {host!r}: calls are not authenticated "
            '([gateway] authentication = "off"), so ztgate only listens on loopback '
            "(127.0.0.1, ::1 or localhost)",
        )


def check_workers(settings: Settings) -> None:
    """Refuse `[gateway] workers` above 1 unless every worker can share the state it must.

    Raises:
        ConfigError: several workers, and the hot state in this process, the
            store on SQLite, or `tls = true`.
    """
    workers = settings.gateway.workers
    if workers == 1:
        return
    if not settings.store.hot_state_url:
        raise ConfigError(
            "gateway",
            "workers",
            f"workers = {workers} needs the hot state in Redis ([store] hot_state_url): "
            "kept in each process, a proof used on one worker could be replayed on another "
            "and every rate limit would be multiplied",
        )
    if not settings.database_url.startswith("postgresql"):
        raise ConfigError(
            "gateway",
            "workers",
            f"workers = {workers} needs the store on PostgreSQL ([store] url): "
            "several processes would each hold state of one SQLite file "
            "(docs/deployment.md)",
        )
    if settings.gateway.tls:
        raise ConfigError(
            "gateway",
            "workers",
            f"workers = {workers} with tls = true is not supported: each worker would issue "
            "and renew the gateway's certificate; run one worker per replica",
        )


def uvicorn_config(
    app: object,
    host: str,
    port: int,
    log_level: str,
    *,
    http: Any = "httptools",
    **tls: Any,
) -> uvicorn.Config:
    """A uvicorn config tuned for the gateway (no access log: the audit log is the record).

    `http` is uvicorn's protocol (a name or a class, e.g. `mtls_protocol(...)`);
    `tls` are uvicorn's `ssl_*` settings (see `tls.server_ssl_settings`).
    The httptools protocol writes each response once (`ztgate.http.coalesce`).
    """
    if http == "httptools":
        http = HttpToolsProtocol
    if isinstance(http, type) and issubclass(http, HttpToolsProtocol):
        http = coalescing(http)
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http=http,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        server_header=False,
        # X-Forwarded-* from a client is not evidence of anything: ignore it.
        proxy_headers=False,
        # Open streams (the console's live feed) do not hold up a shutdown.
        timeout_graceful_shutdown=5,
        **tls,
    )


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options for `[gateway] tls = true` (none when false).

    Issues the gateway its X.509-SVID now and writes it under `<data_dir>/tls`.

    Raises:
        ConfigError: the CA cannot be loaded.
        IdentityError: the CA has no active signing authority.
    """
    if not settings.gateway.tls:
        return {}
    from ztgate.clock import SystemClock
    from ztgate.http.tls import (
        TLS_DIR,
        CaIntermediates,
        mtls_protocol,
        server_ssl_settings,
        write_server_svid,
    )
    from ztgate.identity.authority import CertificateAuthority

    identity = settings.identity
    ca_dir = settings.path(identity.ca_dir)
    ca = CertificateAuthority.load(ca_dir, SystemClock(), passphrase=identity.passphrase())
    files = write_server_svid(
        ca, settings.path(settings.data_dir) / TLS_DIR, ttl=settings.gateway.tls_svid_ttl_seconds
    )
    logger.info("serving HTTPS as %s (certificate in %s)", files.spiffe_id, files.certfile)
    return {"http": mtls_protocol(CaIntermediates(ca_dir)), **server_ssl_settings(files)}


async def _renew_tls(settings: Settings, server: uvicorn.Server, stop: asyncio.Event) -> None:
    from ztgate.clock import SystemClock
    from ztgate.http.tls import TLS_DIR, keep_server_svid_fresh
    from ztgate.identity.authority import CertificateAuthority

    identity = settings.identity

    def load_ca() -> CertificateAuthority:
        return CertificateAuthority.load(
            settings.path(identity.ca_dir), SystemClock(), passphrase=identity.passphrase()
        )

    def live_context() -> ssl.SSLContext | None:
        config = server.config
        return config.ssl if config.loaded else None

    await keep_server_svid_fresh(
        load_ca,
        settings.path(settings.data_dir) / TLS_DIR,
        ttl=settings.gateway.tls_svid_ttl_seconds,
        context=live_context,
        stop=stop,
    )


async def _trust_client_roots(
    gateway: Gateway, server: uvicorn.Server, stop: asyncio.Event
) -> None:
    """Keep the handshake's trust store at the local and federated trust domains' roots."""
    from ztgate.http.tls import keep_client_roots_fresh

    identity = gateway.identity
    if identity is None:
        return

    def roots() -> list[x509.Certificate]:
        return [root for bundle in identity.bundles().values() for root in bundle.x509_roots]

    def live_context() -> ssl.SSLContext | None:
        config = server.config
        return config.ssl if config.loaded and server.started else None

    await keep_client_roots_fresh(roots, live_context, stop=stop)


def serve(settings: Settings) -> None:
    """Serve the gateway (and the demo tools when enabled) until interrupted.

    Raises:
        ConfigError: an unsafe bind address or an unusable setting.
        IdentityError: `tls = true` but the CA cannot sign the gateway's SVID.
    """
    check_bind(settings.gateway.host, settings.gateway.authentication)
    if settings.gateway.authentication == "off":
        logger.warning(
            'UNSAFE: [gateway] authentication = "off": calls are not authenticated '
            "(listening on loopback only; for local development)"
        )
    check_workers(settings)
    if settings.gateway.workers > 1:
        _serve_workers(settings)
        return
    tls = tls_options(settings)
    gateway = Gateway.from_settings(settings)
    servers = [
        uvicorn.Server(
            uvicorn_config(
                create_asgi(gateway),
                settings.gateway.host,
                settings.gateway.port,
                settings.gateway.log_level,
                **tls,
            )
        )
    ]
    if settings.demo.tools:
        from ztgate.demo.tools import create_tools_app

        servers.append(
            uvicorn.Server(
                uvicorn_config(
                    create_tools_app(), "127.0.0.1", settings.demo.port, settings.gateway.log_level
                )
            )
        )

    async def run() -> None:
        stop = asyncio.Event()
        workload_api = None
        if settings.identity.workload_api:
            from ztgate.identity.service import serve_workload_api

            path = settings.path(settings.identity.workload_socket)
            workload_api = asyncio.create_task(serve_workload_api(settings, path, stop))
        renewal = trust = None
        if settings.gateway.tls:
            renewal = asyncio.create_task(_renew_tls(settings, servers[0], stop))
            trust = asyncio.create_task(_trust_client_roots(gateway, servers[0], stop))
        try:
            await asyncio.gather(*(server.serve() for server in servers))
        finally:
            stop.set()
            if workload_api is not None:
                await workload_api
            if renewal is not None:
                await renewal
            if trust is not None:
                await trust

    uvloop.run(run())


# -- several worker processes on one listening socket -----------------------------------


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the signals to its caller (the supervisor's loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """The one listening socket every worker accepts on (bound once, here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(settings: Settings, sock: socket.socket, number: int, started: Any) -> None:
    """One worker process: its own gateway (store pool, Redis client) on the shared socket."""
    logging.basicConfig(
        level=settings.gateway.log_level.upper(),
        format=f"%(asctime)s %(levelname)s worker-{number} %(name)s: %(message)s",
    )
    gateway = Gateway.from_settings(settings)
    config = uvicorn_config(
        create_asgi(gateway),
        settings.gateway.host,
        settings.gateway.port,
        settings.gateway.log_level,
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            started.set()
        await serving

    uvloop.run(run())
    if not server.started:  # the gateway did not start (its store, its Redis): said above
        raise SystemExit(3)


def _serve_workers(settings: Settings) -> None:
    """`[gateway] workers = N`: N processes accepting on one socket, this one supervising.

    The socket is bound here once and handed to N spawned processes (what
    uvicorn's own `workers` does, which needs an import string instead of
    this process's settings): the kernel gives each connection to one
    worker, and connections queued on the socket outlive a worker that dies.
    A worker that exits is started again (after 1, 2, 4 ... 30 s when it
    keeps dying within seconds of its start, as when Redis does not answer);
    if no worker ever got as far as serving, the supervisor stops them all
    and exits 1, as `ztgate serve` does when it cannot start. The demo tools
    and the Workload API run once, in this supervisor. SIGINT or SIGTERM stops
    the workers (each drains as `ztgate serve` does) and then this process.

    Raises:
        SystemExit: no worker could start.
    """
    sock = _listen(settings.gateway.host, settings.gateway.port)
    context = multiprocessing.get_context("spawn")
    count = settings.gateway.workers
    started = context.Event()  # set by the first worker that gets as far as serving
    failed = False

    def start(number: int) -> BaseProcess:
        process = context.Process(
            target=_worker,
            args=(settings, sock, number, started),
            name=f"ztgate-worker-{number}",
        )
        process.start()
        return process

    async def supervise() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        workers = [start(number) for number in range(1, count + 1)]
        logger.info(
            "ztgate running on http://%s:%s with %d worker processes (pids %s)",
            settings.gateway.host,
            sock.getsockname()[1],
            count,
            ", ".join(str(w.pid) for w in workers),
        )
        helpers: list[asyncio.Task[None]] = []
        tools: _Server | None = None
        if settings.demo.tools:
            from ztgate.demo.tools import create_tools_app

            tools = _Server(
                uvicorn_config(
                    create_tools_app(), "127.0.0.1", settings.demo.port, settings.gateway.log_level
                )
            )
            helpers.append(asyncio.create_task(tools.serve()))
        if settings.identity.workload_api:
            from ztgate.identity.service import serve_workload_api

            path = settings.path(settings.identity.workload_socket)
            helpers.append(asyncio.create_task(serve_workload_api(settings, path, stop)))
        nonlocal failed
        born = [loop.time()] * count
        quick_deaths = [0] * count
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                for index, worker in enumerate(workers):
                    if stop.is_set() or worker.is_alive():
                        continue
                    if not started.is_set():
                        logger.error(
                            "worker %d exited with %s before serving: stopping (see above)",
                            index + 1,
                            worker.exitcode,
                        )
                        failed = True
                        stop.set()
                        break
                    now = loop.time()
                    quick_deaths[index] = quick_deaths[index] + 1 if now - born[index] < 10 else 0
                    delay = (
                        min(30.0, 2.0 ** (quick_deaths[index] - 1)) if quick_deaths[index] else 0
                    )
                    logger.warning(
                        "worker %d (pid %s) exited with %s: starting it again in %g s",
                        index + 1,
                        worker.pid,
                        worker.exitcode,
                        delay,
                    )
                    if delay:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), delay)
                        if stop.is_set():
                            break
                    workers[index] = start(index + 1)
                    born[index] = loop.time()
        finally:
            stop.set()
            for worker in workers:
                worker.terminate()
            for worker in workers:
                await asyncio.to_thread(worker.join, 10)
                if worker.is_alive():
                    worker.kill()
                    await asyncio.to_thread(worker.join, 5)
            if tools is not None:
                tools.should_exit = True
            await asyncio.gather(*helpers, return_exceptions=True)
            sock.close()

    uvloop.run(supervise())
    if failed:
        raise SystemExit(1)
