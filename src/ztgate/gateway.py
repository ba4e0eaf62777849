"""The gateway runtime: state, checks, audit and forwarding, shared by every front door.

A front door (HTTP now; MCP and the egress proxy later) parses its transport
into a `ToolCall` and hands it to `Gateway.handle`, which decides, records,
forwards and reviews. Every answer is recorded in the audit chain before the
front door sends it; if the record cannot be written, the call fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ztgate.approvals.notify import Notifier
from ztgate.approvals.registry import Approval, ApprovalRegistry
from ztgate.audit import AuditEntry, AuditLog
from ztgate.audit.checkpoint import load_signer
from ztgate.audit.redact import preview, preview_text
from ztgate.canonical import canonical_json
from ztgate.clock import Clock, SystemClock
from ztgate.config import Settings
from ztgate.containment.service import Containment
from ztgate.errors import GatewayError, StoreError, UpstreamError
from ztgate.forward import Forwarder
from ztgate.guards.assembly import Guards
from ztgate.guards.injection.check import InjectionResultCheck, InjectionSeenCheck
from ztgate.guards.injection.scanner import Scanner
from ztgate.guards.justification import JustificationCheck
from ztgate.guards.pinning import pin_on_registration
from ztgate.identity import check as authentication
from ztgate.identity.check import AuthenticationCheck
from ztgate.identity.entries import GENERATION as ENTRIES_GENERATION
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.federation import Federation, peers_from_settings
from ztgate.identity.federation import state_dir as federation_state_dir
from ztgate.identity.providers import LocalBundles, RegisteredIds
from ztgate.identity.revocation import GENERATION as REVOCATIONS_GENERATION
from ztgate.identity.revocation import LiveRevocations, RevocationSet
from ztgate.identity.verify import TrustBundle
from ztgate.ids import time_ordered_id
from ztgate.mcp.servers import GENERATION as MCP_SERVERS_GENERATION
from ztgate.mcp.task_instances import TaskBinding
from ztgate.metrics import Metrics
from ztgate.models import Credentials, Decision, Outcome, ToolCall, ToolResult, Verdict
from ztgate.obligations import apply as apply_obligations
from ztgate.obligations import summary as obligations_summary
from ztgate.pipeline import STORE_UNAVAILABLE, CallContext, Check, Pipeline, ResultCheck
from ztgate.policy.check import PolicyCheck
from ztgate.policy.live import GENERATION as POLICY_GENERATION
from ztgate.schema.check import ArgumentsSchemaCheck, ResultSchemaCheck
from ztgate.store.database import Database
from ztgate.store.generations import GenerationWatcher
from ztgate.store.hot import HotState
from ztgate.tasks.registry import GENERATION as TASKS_GENERATION
from ztgate.tasks.registry import TaskRegistry
from ztgate.tools.catalog import Catalog, CatalogEntry
from ztgate.tools.model import Tool
from ztgate.tools.registry import GENERATION as TOOLS_GENERATION
from ztgate.tools.registry import InTransaction, ToolRegistry
from ztgate.warrants.checks import FACT as WARRANT_FACT
from ztgate.warrants.checks import proven_caller
from ztgate.warrants.service import WarrantService

logger = logging.getLogger(__name__)


class Failure(Enum):
    """Why a call got no result, when it was not simply denied."""

    STORE_UNAVAILABLE = "store-unavailable"
    UPSTREAM_FAILED = "upstream-failed"
    UPSTREAM_TIMEOUT = "upstream-timeout"
    RESULT_WITHHELD = "result-withheld"


@dataclass(frozen=True, slots=True)
class CallReport:
    """What happened to one call: its decision and, when it ran, its result."""

    call: ToolCall
    decision: Decision | None
    result: ToolResult | None = None
    review: Decision | None = None
    failure: Failure | None = None
    detail: str = ""
    approval: Approval | None = None  # the request it waits on, or the approval it used

    @property
    def outcome(self) -> Outcome:
        """Allow only when the call ran and its result passed review; ask while it waits."""
        if self.approval is not None and self.result is None and self.failure is None:
            return Outcome.ASK
        if self.failure is None and self.result is not None and self.decision is not None:
            return Outcome.ALLOW
        return Outcome.DENY


def default_checks(settings: Settings | None = None, guards: Guards | None = None) -> list[Check]:
    """The pre-call checks after identity and warrants, in order."""
    tiers = settings.warrants.require_justification if settings else ("write", "critical")
    justification = guards.justification(tiers) if guards else JustificationCheck(tiers)
    return [justification, ArgumentsSchemaCheck()]


class CallerIdentity:
    """What the `authenticate` check consults, kept fresh by `Gateway.refresh`.

    The local bundle is reloaded when the CA's state file changes; the
    registered SPIFFE IDs and the revocations are reloaded when their
    generations move (the gateway's watcher already reads those once per
    call), so a call with nothing changed costs one `stat` and two lookups.
    """

    def __init__(self, settings: Settings, database: Database, clock: Clock) -> None:
        """Load the local trust bundle (the database is read in `start`).

        Raises:
            ConfigError: there is no usable CA.
        """
        identity = settings.identity
        self.database = database
        self.clock = clock
        self.trust_domain = identity.trust_domain
        # Federated trust domains' bundles: files, and bundle endpoints
        # refreshed in the background (`Gateway.start`).
        self.federation = Federation(
            peers_from_settings(settings),
            clock,
            state_dir=federation_state_dir(settings),
            local_trust_domain=identity.trust_domain,
            local_roots=lambda: self.local_bundle().x509_roots,
        )
        self.bundles = LocalBundles(
            settings.path(identity.ca_dir),
            clock,
            passphrase=identity.passphrase(),
            federation=self.federation,
        )
        self.registered = RegisteredIds(EntryRegistry(database, clock, identity.trust_domain))
        self._live: LiveRevocations | None = None
        self._revocations = RevocationSet()
        self.check = AuthenticationCheck(
            audience=settings.gateway.audience,
            bundles=self.bundles,
            revocations=self.revocations,
            registered=self.registered,
            skew=float(identity.clock_skew_seconds),
        )

    def local_bundle(self) -> TrustBundle:
        """The local trust domain's bundle (as the `authenticate` check sees it)."""
        bundles = self.bundles()
        return bundles[self.trust_domain]

    def start(self) -> None:
        """Read the entries and revocations (the database is migrated by now)."""
        self._live = LiveRevocations(self.database, self.clock)
        self._revocations = self._live.reload()
        self.registered.reload()

    def stop(self) -> None:
        """Close the revocations' watcher."""
        if self._live is not None:
            self._live.close()

    def revocations(self) -> RevocationSet:
        """The revocations as of the last reload."""
        return self._revocations

    def changed(self, names: set[str]) -> None:
        """Reload what the generations in `names` cover."""
        if ENTRIES_GENERATION in names:
            self.registered.reload()
            logger.info("registration entries reloaded: %d SPIFFE IDs", len(self.registered))
        if REVOCATIONS_GENERATION in names and self._live is not None:
            self._revocations = self._live.reload()
            logger.info("revocations reloaded: %d active", len(self._revocations))


def default_result_checks() -> list[ResultCheck]:
    """The post-call checks, in order."""
    return [ResultSchemaCheck()]


@dataclass
class Gateway:
    """The assembled gateway."""

    settings: Settings
    database: Database
    audit: AuditLog
    forwarder: Forwarder
    pipeline: Pipeline
    clock: Clock = field(default_factory=SystemClock)
    ids: Callable[[], str] = field(default=lambda: time_ordered_id())
    metrics: Metrics = field(default_factory=Metrics)
    identity: CallerIdentity | None = None
    warrants: WarrantService | None = None
    hot: HotState | None = None
    containment: Containment | None = None
    policy: PolicyCheck | None = None
    guards: Guards | None = None

    def __post_init__(self) -> None:
        self.registry = ToolRegistry(self.database, self.clock)
        self.catalog = Catalog()
        # Sharing the audit writer's connection when it writes on the event
        # loop: then only other processes' commits move data_version.
        shared = self.audit.connection if self.audit.inline else None
        # Replicas on PostgreSQL with Redis learn of changes by broadcast
        # instead of reading the generations before every call.
        store = self.settings.store
        self.broadcasts = (
            store.change_broadcasts() if store.broadcasts_changes(self.database) else None
        )
        self._watcher = GenerationWatcher(self.database, shared, self.broadcasts)
        self._checkpointer: asyncio.Task[None] | None = None
        # MCP upstream servers' sessions, and the egress proxy their enclaves reach out through.
        self.mcp_upstreams: Any = None
        self._egress_proxy: Any = None
        self._mcp_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self.approvals = ApprovalRegistry(self.database, self.clock, audit=self.audit)
        if self.broadcasts is not None:  # a decision on another replica wakes waiters here
            self.approvals.pause = self.broadcasts.next_message
        self.notifier = Notifier(self.settings.approvals)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        checks: Sequence[Check] | None = None,
        result_checks: Sequence[ResultCheck] | None = None,
    ) -> Gateway:
        """Build the gateway the settings describe.

        Raises:
            ConfigError: a key file or setting is unusable.
        """
        clock = clock or SystemClock()
        database = settings.open_database()
        audit = AuditLog(
            database,
            clock,
            chain=settings.audit.chain,
            signer=load_signer(settings.path(settings.audit.signing_key)),
            checkpoint_every_records=settings.audit.checkpoint_every_records,
            checkpoint_every_seconds=settings.audit.checkpoint_every_seconds,
        )
        gw = settings.gateway
        forwarder = Forwarder(
            timeout=gw.upstream_timeout_seconds,
            max_result_bytes=gw.max_result_bytes,
            connections=gw.upstream_connections,
        )
        hot = settings.store.hot_state(clock)
        guards = Guards(settings, hot)
        chosen = default_checks(settings, guards) if checks is None else list(checks)
        identity = None
        warrants = None
        if gw.authentication == "required":
            # Who is calling comes before anything else is looked at; then
            # for which task, proven for this very call, within its scope.
            identity = CallerIdentity(settings, database, clock)
            registry = TaskRegistry.from_settings(settings, database, clock, audit)
            warrants = WarrantService(settings, database, clock, hot, registry)
            guards.use_tasks(registry.get)
            chosen = [identity.check, *warrants.checks(), *chosen]
        containment = Containment(settings, database, clock, hot, audit)
        chosen = containment.arrange(chosen)
        results = default_result_checks() if result_checks is None else list(result_checks)
        if result_checks is None:
            # Results are scanned for injected instructions (a classifier that
            # does not load stops the start); later calls of a task that read
            # some carry the fact.
            injection = settings.guards.injection
            scanner = Scanner.from_settings(settings)
            results.append(
                InjectionResultCheck(
                    scanner, hot, action=injection.action, ttl=injection.seen_ttl_seconds
                )
            )
            if checks is None:
                chosen = [*chosen, InjectionSeenCheck(hot)]
            # What the task read is recorded, for provenance and justifications.
            results.extend(guards.result_checks())
        if checks is None:
            # Pinning, provenance, DLP, egress (and the intent judge): facts for
            # policy, and refusals no policy may overrule.
            chosen = [*chosen, *guards.checks()]
        policy = None
        if checks is None:
            # The organisation's rules decide last, over what the checks found.
            policy = PolicyCheck.from_settings(
                settings,
                clock,
                tasks=warrants.registry.get if warrants else None,
                owner=identity.registered.owner if identity else None,
            )
            chosen = [*chosen, policy]
        pipeline = Pipeline(chosen, results, check_timeout=gw.check_timeout_seconds)
        return cls(
            settings,
            database,
            audit,
            forwarder,
            pipeline,
            clock=clock,
            identity=identity,
            warrants=warrants,
            hot=hot,
            containment=containment,
            policy=policy,
            guards=guards,
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Migrate, load the tools, and start the audit writer and the forwarder.

        Raises:
            StoreUnavailableError: the database, or a shared hot state, does not answer.
        """
        await self._start_hot_state()
        self.database.migrate()
        self.registry.sync(self.settings.declared_tools(), pin=self._pin_new, also=self._unpinned)
        self.catalog = Catalog(self.registry.all())
        if self.policy is not None:  # a set that does not load stops the start
            self.policy.start(lambda: self.catalog, self.metrics.registry)
        if self.broadcasts is not None:
            await self.broadcasts.start()
            logger.info("change broadcasts: subscribed; the store is re-read only when told")
        self._watcher.prime()
        if self.identity is not None:
            self.identity.start()
            await self.identity.federation.start(self.metrics)
        if self.warrants is not None:
            self.warrants.start()
        if self.containment is not None:
            await self.containment.start(self.metrics)
        await self.audit.start()
        await self.forwarder.start()
        if self.settings.egress_proxy.enabled:  # agents use it too, enclaves or not
            await self._start_egress_proxy()
        await self._follow_mcp_servers()
        if self.database.is_sqlite:  # PostgreSQL checkpoints by itself
            self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint_wal())

    async def _start_hot_state(self) -> None:
        """Say which hot state serves; a shared one must answer before the gateway starts."""
        from ztgate.store.hot_redis import RedisHotState

        if isinstance(self.hot, RedisHotState):
            await self.hot.ping()
            await self.hot.begin(recover=self._recover_hot_state)
            logger.info(
                "hot state: %s, keys prefixed %r (shared by every gateway naming it)",
                self.hot.name,
                self.settings.store.hot_state_prefix,
            )
        elif self.hot is not None:
            logger.info("hot state: in this process (not shared with other gateways)")

    async def _recover_hot_state(self) -> None:
        """What a shared hot state that lost its data gets back: the budgets' use, from the DB."""
        if self.containment is not None:
            await self.containment.reseed()

    async def _start_egress_proxy(self) -> None:
        """Start the egress proxy (once): enclaves' only way out, and agents' with their SVID."""
        if self._egress_proxy is not None:
            return
        from ztgate.egress.agents import AgentEgress
        from ztgate.egress.service import start_egress_proxy

        agents = None
        if self.identity is not None and self.warrants is not None:
            egress = self.settings.guards.egress
            agents = AgentEgress(
                self.pipeline.checks,
                self.clock,
                allowed_domains=egress.allowed_domains,
                agent_domains=egress.agent_domains,
                test_destinations=self.settings.egress_proxy.agent_test_destinations,
                refresh=self.refresh,
            )
        self._egress_proxy = await start_egress_proxy(
            self.settings, self.audit, self.metrics.registry, agents=agents
        )

    async def _enclave_command(
        self, server: Any, stack: contextlib.AsyncExitStack, task: TaskBinding | None = None
    ) -> Any:
        """Start `server`'s enclave (kept until `stack` closes); the command to run in it.

        For `task`'s own instance of a per-task server the enclave is attributed
        to the agent and the task, held to their domains too, and given the
        task's secrets (`ztgate.mcp.task_secrets`).
        """
        from pathlib import Path

        from ztgate.enclave import Enclave, EnclaveSpec, SandboxOptions
        from ztgate.mcp.task_secrets import task_secrets

        for_task: dict[str, Any] = {}
        if task is not None:
            secrets: dict[str, str] = {}
            if server.secrets_command:
                secrets = await task_secrets(
                    server.secrets_command, server=server.name, agent=task.agent,
                    task_id=task.task_id,
                )  # fmt: skip
            agent_domains = self.settings.guards.egress.agent_domains.get(task.agent)
            for_task = {
                "agent": task.agent,
                "task_id": task.task_id,
                "secrets": secrets,
                "agent_domains": tuple(agent_domains) if agent_domains is not None else None,
                "task_domains": task.domains(server.name),
            }
        spec = EnclaveSpec(
            name=server.name,
            command=server.command,
            args=tuple(server.args),
            env=dict(server.env),
            read_only_paths=tuple(Path(p) for p in server.read_only_paths),
            read_write_paths=tuple(Path(p) for p in server.read_write_paths),
            cwd=Path(server.cwd) if server.cwd else None,
            allowed_domains=tuple(server.allowed_domains),
            allowed_test_destinations=tuple(server.allowed_test_destinations),
            sandbox=server.sandbox,
            **for_task,
        )
        options = SandboxOptions.from_settings(self.settings.enclaves)
        enclave = await stack.enter_async_context(Enclave(spec, self._egress_proxy, options))
        return enclave.command()

    async def stop(self) -> None:
        """Drain the audit writer, close the forwarder and the database."""
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        if self.mcp_upstreams is not None:
            await self.mcp_upstreams.stop()
        if self._egress_proxy is not None:
            await self._egress_proxy.stop()
        await self.forwarder.stop()
        await self.notifier.close()
        if self.guards is not None:
            await self.guards.stop()
        if self.containment is not None:
            await self.containment.stop()
        await self.audit.stop()
        if self.audit.batches:
            logger.info(
                "audit: %d records in %d commits (%.1f per commit)",
                self.audit.batched_records,
                self.audit.batches,
                self.audit.batched_records / self.audit.batches,
            )
        self._watcher.close()
        if self.broadcasts is not None:
            await self.broadcasts.stop()
        if self.identity is not None:
            await self.identity.federation.stop()
            self.identity.stop()
        from ztgate.store.hot_redis import RedisHotState

        if isinstance(self.hot, RedisHotState):
            await self.hot.close()
        self.database.dispose()

    def _pin_new(self, tool: Tool) -> bool:
        """Whether declaring a new tool approves it (its description hides nothing)."""
        guards = self.settings.guards
        return not guards.pinning or pin_on_registration(
            tool.description,
            (tool.input_schema, tool.output_schema),
            guards.injection.threshold,
        )

    def _unpinned(self, tool: Tool, current: Tool | None) -> InTransaction | None:
        """The audit record of a config change that leaves a tool waiting for approval."""
        if current is not None and current.pin_sha256 != tool.fingerprint:
            why = "its description or schemas changed since it was approved"
        elif current is None and not self._pin_new(tool):
            why = "its description reads as instructions"
        else:
            return None
        entry = AuditEntry(
            kind="admin",
            outcome="allow",
            tool=tool.name,
            detail={"action": "tool.unpinned", "source": "config", "reason": why},
        )
        logger.warning("tool %s waits for a principal's approval: %s", tool.name, why)
        return lambda conn: self.audit.append_within(conn, [entry])

    async def _checkpoint_wal(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(self.database.checkpoint_wal)
            except StoreError as exc:
                logger.warning("WAL checkpoint failed: %s", exc)

    def refresh(self) -> None:
        """Reload whatever another process changed since the last call.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        changed = self._watcher.changed()
        if TOOLS_GENERATION in changed:
            self.catalog = Catalog(self.registry.all())
            logger.info("tool registry reloaded: %d tools", len(self.catalog))
        if self.identity is not None and changed:
            self.identity.changed(changed)
        if self.warrants is not None and TASKS_GENERATION in changed:
            self.warrants.changed()
        if self.containment is not None and changed:
            self.containment.changed(changed)
        if MCP_SERVERS_GENERATION in changed:
            self._schedule(self._follow_mcp_servers())
        if POLICY_GENERATION in changed and self.policy is not None:
            self.policy.live.look_now()

    def _schedule(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` beside the calls (connecting to a server is slow); not without a loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work.close()
            return
        task = loop.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _follow_mcp_servers(self) -> None:
        """Open the stored MCP upstream servers' sessions, close removed ones (ztgate.mcp.upstream).

        At the start and whenever `ztgate mcp add` or `remove` changed them.
        """
        from ztgate.mcp.servers import McpServerRegistry
        from ztgate.mcp.upstream import McpUpstreams

        async with self._mcp_lock:
            servers = await asyncio.to_thread(McpServerRegistry(self.database, self.clock).all)
            if not servers and self.mcp_upstreams is None:
                return
            if self.mcp_upstreams is None:
                self.mcp_upstreams = McpUpstreams(
                    [],
                    sync=lambda _server, tools: self.registry.sync(
                        tools, pin=self._pin_new, also=self._unpinned
                    ),
                    post=self.forwarder.post,
                    timeout=self.settings.gateway.upstream_timeout_seconds,
                    max_result_bytes=self.settings.gateway.max_result_bytes,
                    task_instances_per_server=self.settings.mcp.task_instances_per_server,
                    task_instance_idle_seconds=self.settings.mcp.task_instance_idle_seconds,
                )
                self.forwarder.mcp = self.mcp_upstreams
                upstreams = self.mcp_upstreams
                self.metrics.mcp_task_instances.set_function(
                    lambda: upstreams.task_instances.count()
                )
            if any(s.transport == "stdio" for s in servers):
                await self._start_egress_proxy()  # once (it may run for agents already)
                self.mcp_upstreams.use_enclaves(self._enclave_command)
            await self.mcp_upstreams.reconcile(servers)
            self.catalog = Catalog(self.registry.all())  # with the imported tools

    # -- calls -------------------------------------------------------------------

    def new_call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        justification: str = "",
        credentials: Credentials | None = None,
        front_door: str = "http",
        call_id: str | None = None,
        approval_id: str | None = None,
    ) -> ToolCall:
        """A `ToolCall` with its id, canonical argument hash and arrival time.

        Raises:
            InvalidInputError: the arguments have no canonical JSON form.
        """
        return ToolCall(
            call_id=call_id or self.ids(),
            tool=tool,
            arguments=arguments,
            canonical_arguments=canonical_json(arguments),
            justification=justification,
            credentials=credentials or Credentials(),
            received_at=self.clock.now(),
            front_door=front_door,
            approval_id=approval_id,
        )

    async def handle(self, call: ToolCall) -> CallReport:
        """Decide, record, forward and review one call.

        Raises:
            StoreError: the audit record could not be written (fail closed:
                the caller must answer with an error, never with a result).
        """
        self._in_flight += 1
        try:
            return await self._handle(call)
        finally:
            self._in_flight -= 1

    async def _handle(self, call: ToolCall) -> CallReport:
        try:
            self.refresh()
        except StoreError as exc:
            logger.error("store unavailable, refusing call %s: %s", call.call_id, exc)
            return CallReport(call, None, failure=Failure.STORE_UNAVAILABLE, detail=str(exc))
        entry = self.catalog.get(call.tool)
        ctx = CallContext(self.clock, tool=entry)
        previews = _Previews(call)
        decision = await self.pipeline.decide(call, ctx)
        principal, task_id = proven_caller(decision)
        if principal is not None and call.agent is None:
            # The agent the record names is the one the SVID proved, and the
            # task the one its warrant proved.
            call = dataclasses.replace(call, agent=principal, task_id=task_id)
            decision = dataclasses.replace(decision, call=call)
            previews = _Previews(call)
        approval = None
        if decision.outcome is Outcome.ASK:
            # A person decides: a stored request (202), or the approval the
            # agent presents for this very call, used once.
            decision, approval = await self._asked(call, entry, decision)
        if entry is None and decision.outcome is Outcome.ALLOW:
            # Whatever the configured checks say, there is nothing to forward to.
            refusal = Verdict("registry", Outcome.DENY, f"unknown tool {call.tool!r}")
            decision = Decision(
                call, (*decision.verdicts, refusal), decision.phase, decision.elapsed_seconds
            )
        await ctx.settle(decision.outcome)  # e.g. a budget reservation kept or given back
        self.metrics.observe(decision)
        self.metrics.decision_seconds.observe(decision.elapsed_seconds)
        if decision.outcome is not Outcome.ALLOW or entry is None:
            asked = tuple(v for v in decision.verdicts if v.outcome is Outcome.ASK)
            status = denial_status(decision)
            if approval is not None and decision.outcome is Outcome.ASK:
                pending = {"approval": approval.id, "expires_at": approval.expires_at}
                await self._record(previews, decision, "decision", "ask", 202, extra=pending)
                return CallReport(call, decision, approval=approval)
            await self._record(
                previews, decision, "decision", decision.outcome.value, status, checked=asked
            )
            if status == 503:  # refused because a store did not answer: said as such
                detail = "; ".join(f"{v.check}: {v.reason}" for v in decision.deciding)
                return CallReport(call, decision, failure=Failure.STORE_UNAVAILABLE, detail=detail)
            return CallReport(call, decision)
        early = entry.spec.risk.value in self.settings.audit.record_before_forward
        if early:
            # A tool with side effects: the decision is durable before the
            # tool runs, so a crash mid-call still leaves a record that it may
            # have run. A read leaves one record, after its result.
            await self._record(previews, decision, "decision", "allow", None)
        try:
            task = _task_binding(principal, task_id, ctx) if entry.spec.source == "mcp" else None
            result = await self.forwarder.forward(entry.spec, call, task)
        except UpstreamError as exc:
            failure = Failure.UPSTREAM_TIMEOUT if exc.timeout else Failure.UPSTREAM_FAILED
            self.metrics.upstream_errors.labels(failure.value).inc()
            status = 504 if exc.timeout else 502
            await self._record(previews, decision, "result", "error", status, reason=exc.message)
            return CallReport(call, decision, failure=failure, detail=exc.message)
        self.metrics.upstream_seconds.observe(result.elapsed_seconds)
        review = await self.pipeline.review(call, result, ctx)
        self.metrics.observe(review)
        if review.outcome is not Outcome.ALLOW:  # nobody can answer an ask about a result yet
            await self._record(previews, review, "result", "deny", 502)
            reasons = "; ".join(r["reason"] for r in review.reasons())
            return CallReport(
                call, decision, review=review, failure=Failure.RESULT_WITHHELD, detail=reasons
            )
        extra: dict[str, Any] = {"upstream_status": result.status}
        obligations = review.obligations
        if obligations:
            # What the agent gets: spotlighted, redacted or quarantined.
            result = dataclasses.replace(result, body=apply_obligations(result.body, obligations))
            extra["obligations"] = obligations_summary(obligations)
        await self._record(
            previews,
            review,
            "result",
            "allow",
            200,
            extra=extra,
            checked=() if early else decision.verdicts,
        )
        return CallReport(call, decision, result=result, review=review, approval=approval)

    async def _asked(
        self, call: ToolCall, entry: CatalogEntry | None, decision: Decision
    ) -> tuple[Decision, Approval | None]:
        """An asked call: a new pending request, or the approval it presents, used once."""
        if entry is None or call.agent is None or call.task_id is None or self.warrants is None:
            why = "a human must approve this call; only a task's call can wait for approval"
            return _refused(decision, why), None
        try:
            if call.approval_id is not None:
                used, why = await asyncio.to_thread(self.approvals.consume, call.approval_id, call)
                if used is None:
                    return _refused(decision, why), None
                return _approved(decision, used), used
            task = await asyncio.to_thread(self.warrants.registry.get, call.task_id)
            settings = self.settings.approvals
            approval = await asyncio.to_thread(
                self.approvals.create,
                call,
                risk=entry.spec.risk.value,
                principal=task.principal,
                intent=task.intent,
                reasons=decision.reasons() + decision.findings(),
                ttl=settings.timeout_for(call.tool),
                second_person=settings.require_second_person,
            )
        except GatewayError as exc:  # fail closed
            logger.error("approval for call %s unavailable: %s", call.call_id, exc)
            return _refused(decision, f"the approval could not be stored: {exc.message}"), None
        if approval.request.get("call_id") == call.call_id:  # new, not the same call again
            self.notifier.send(approval)
        return decision, approval

    async def record_rejection(self, call_id: str, status: int, reason: str) -> None:
        """Record a request refused at the edge, before it became a call.

        Raises:
            StoreError: the record could not be written.
        """
        await self.audit.append(
            AuditEntry(
                kind="rejected",
                outcome="deny",
                call_id=call_id,
                status=status,
                reasons=[{"check": "edge", "outcome": "deny", "reason": reason}],
            )
        )

    async def _record(
        self,
        previews: _Previews,
        decision: Decision,
        kind: str,
        outcome: str,
        status: int | None,
        *,
        reason: str | None = None,
        extra: Mapping[str, Any] | None = None,
        checked: tuple[Verdict, ...] = (),
    ) -> None:
        call = previews.call
        reasons = [_as_reason(v) for v in checked] + decision.reasons()
        if kind == "decision":
            reasons += decision.findings()
        if reason is not None:
            reasons = [{"check": "upstream", "outcome": "deny", "reason": reason}]
        try:
            await self.audit.append(
                gather=self._in_flight > 1,  # alone, nothing to group-commit with
                entry=AuditEntry(
                    kind=kind,
                    outcome=outcome,
                    call_id=call.call_id,
                    agent=call.agent,
                    task_id=call.task_id,
                    tool=call.tool,
                    status=status,
                    reasons=reasons,
                    arguments_sha256=call.arguments_sha256,
                    arguments_preview=previews.arguments,
                    justification=previews.justification,
                    detail={"phase": decision.phase.value, **(extra or {})},
                ),
            )
        except GatewayError:
            self.metrics.audit_failures.inc()
            raise


def unauthenticated(decision: Decision) -> bool:
    """True if the `authenticate` check is what denied the call (a 401, not a 403)."""
    return decision.outcome is Outcome.DENY and any(
        v.check == authentication.NAME for v in decision.deciding
    )


def denial_status(decision: Decision) -> int:
    """A refusal in HTTP terms: 503 (a store did not answer), 401, 429 (retry later), or 403."""
    if any(verdict.facts.get(STORE_UNAVAILABLE) for verdict in decision.deciding):
        return 503
    if unauthenticated(decision):
        return 401
    return 429 if decision.retry_after is not None else 403


def _task_binding(agent: str | None, task_id: str | None, ctx: CallContext) -> TaskBinding | None:
    """Whom an MCP call runs for, as its SVID and warrant proved (None: no task)."""
    if agent is None or task_id is None:
        return None
    warrant = ctx.facts.get(WARRANT_FACT)
    return TaskBinding(agent, task_id, getattr(warrant, "scope", None))


def _as_reason(verdict: Verdict) -> dict[str, str]:
    return {"check": verdict.check, "outcome": verdict.outcome.value, "reason": verdict.reason}


class _Previews:
    """A call's redacted previews, computed once however many records it gets."""

    def __init__(self, call: ToolCall) -> None:
        self.call = call

    @functools.cached_property
    def arguments(self) -> str:
        return preview(self.call.arguments)

    @functools.cached_property
    def justification(self) -> str | None:
        return preview_text(self.call.justification) or None


def _refused(decision: Decision, reason: str) -> Decision:
    """An asked call denied: the approval is missing, rejected, expired or for another call."""
    refusal = Verdict("approval", Outcome.DENY, reason)
    return Decision(
        decision.call, (*decision.verdicts, refusal), decision.phase, decision.elapsed_seconds
    )


def _approved(decision: Decision, approval: Approval) -> Decision:
    """An asked call a principal approved: its asks answered, naming who and which approval."""
    note = f"approved by {approval.decided_by} (approval {approval.id})"
    verdicts = tuple(
        dataclasses.replace(v, outcome=Outcome.ALLOW, reason=f"{v.reason}; {note}")
        if v.outcome is Outcome.ASK
        else v
        for v in decision.verdicts
    )
    return Decision(
        decision.call,
        (*verdicts, Verdict("approval", Outcome.ALLOW, note)),
        decision.phase,
        decision.elapsed_seconds,
    )
