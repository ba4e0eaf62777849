"""One running enclave: its grant and Unix socket on the egress proxy, and its command.

`start()` checks that a sandbox can be created (or, for a server the
operator opted out for, logs a warning), serves the enclave's own socket on
the egress proxy (in a fresh directory, mode 0700; the socket, mode 0600,
belongs to the enclave's user), and `command()` then gives the wrapped
command for the MCP SDK. `stop()` closes the socket and removes the
directory. See spec.py for the whole API.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from ztgate.egress.decision import Attribution, EgressRules
from ztgate.egress.grants import Grant
from ztgate.egress.proxy import EgressProxy
from ztgate.enclave.probe import check_sandbox, running_as_root
from ztgate.enclave.sandbox import SandboxOptions, enclave_environment, launch_command
from ztgate.enclave.spec import EnclaveSpec, SandboxUnavailableError, WrappedCommand

logger = logging.getLogger(__name__)


class Enclave:
    """An enclave for one stdio MCP server (an async context manager)."""

    def __init__(
        self, spec: EnclaveSpec, proxy: EgressProxy, options: SandboxOptions | None = None
    ) -> None:
        """The enclave of `spec`, reaching out through `proxy` (started by the caller)."""
        self.spec = spec
        self._proxy = proxy
        self.options = options or SandboxOptions()
        self.grant_id = f"{spec.name}.{secrets.token_hex(6)}"
        self._dir: Path | None = None
        self._bwrap: str | None = None

    @property
    def socket_path(self) -> Path | None:
        """The egress proxy's socket for this enclave, while it runs."""
        return None if self._dir is None else self._dir / "proxy.sock"

    async def start(self) -> None:
        """Check the sandbox and serve the enclave's proxy socket.

        Raises:
            SandboxUnavailableError: no sandbox can be created here, or a
                configured path does not exist (the server must not start).
        """
        if not self.spec.sandbox:
            logger.warning(
                "MCP server %s runs WITHOUT a sandbox (sandbox = false in its config): "
                "it can reach the network and files directly",
                self.spec.name,
            )
            return
        for path in (*self.spec.read_only_paths, *self.spec.read_write_paths):
            if not path.exists():
                raise SandboxUnavailableError(
                    f"enclave {self.spec.name}: configured path {path} does not exist"
                )
        bound = (*self.spec.read_only_paths, *self.spec.read_write_paths)
        cwd = self.spec.cwd
        if cwd is not None and not any(cwd.is_relative_to(path) for path in bound):
            raise SandboxUnavailableError(
                f"enclave {self.spec.name}: its working directory {cwd} is not a configured path"
            )
        await check_sandbox(self.options)
        self._bwrap = self.options.bwrap_path()
        self._dir = Path(tempfile.mkdtemp(prefix="ztgate-enclave-"))
        rules = EgressRules.build(
            self.spec.allowed_domains,
            agent_domains=self.spec.agent_domains,
            task_domains=self.spec.task_domains,
            test_destinations=self.spec.allowed_test_destinations,
        )
        attribution = Attribution(self.spec.name, self.spec.agent, self.spec.task_id)
        self._proxy.add_enclave(Grant(self.grant_id, attribution, rules))
        socket = self._dir / "proxy.sock"
        await self._proxy.listen_unix(self.grant_id, socket)
        if running_as_root():
            os.chown(socket, self.options.uid, self.options.gid)

    def command(self) -> WrappedCommand:
        """The command, arguments and environment to start the server with.

        Raises:
            SandboxUnavailableError: the enclave is not started.
        """
        spec = self.spec
        if not spec.sandbox:
            return WrappedCommand(spec.command, spec.args, {**spec.env, **spec.secrets})
        if self._dir is None or self._bwrap is None:
            raise SandboxUnavailableError(f"enclave {spec.name} is not started")
        command, args = launch_command(
            spec, self._dir / "proxy.sock", self.options, self._bwrap, as_root=running_as_root()
        )
        return WrappedCommand(command, args, enclave_environment(spec))

    async def stop(self) -> None:
        """Stop serving the enclave's socket and remove its directory."""
        if self._dir is None:
            return
        await self._proxy.remove_enclave(self.grant_id)
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    async def __aenter__(self) -> Enclave:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
