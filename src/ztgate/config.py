"""Settings: one `ztgate.toml`, overridable by `ZTGATE_*` environment variables.

Every setting has a safe default, so `ztgate serve` works with no file at all.
Nested keys use a double underscore in the environment:
`ZTGATE_GATEWAY__PORT=9000` overrides `[gateway] port`. Relative paths are
resolved against the directory of the config file (or the working directory
when there is none).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ztgate.clock import Clock
from ztgate.errors import ConfigError, InvalidInputError
from ztgate.store.database import Database, check_database_url
from ztgate.store.hot import HotState, MemoryHotState
from ztgate.tools.flow import ToolFlow
from ztgate.tools.model import Tool, ToolLimits, parse_risk

if TYPE_CHECKING:
    from ztgate.store.broadcasts import ChangeBroadcasts

DEFAULT_CONFIG = Path("ztgate.toml")
CONFIG_ENV = "ZTGATE_CONFIG"
# A SPIFFE ID naming a workload (a path), in the grammar of the SPIFFE ID spec.
_SPIFFE_ID = r"^spiffe://[a-z0-9._-]{1,255}(/[A-Za-z0-9._-]+)+$"
# A host name, or "*." and a domain (its subdomains).
_DOMAIN = re.compile(
    r"(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySettings(_Section):
    """The HTTP front door."""

    host: str = "127.0.0.1"
    port: int = Field(8470, ge=0, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    max_json_depth: int = Field(32, ge=2, le=512)
    max_result_bytes: int = Field(4 * 1_048_576, ge=1024, le=256 * 1_048_576)
    check_timeout_seconds: float = Field(2.0, gt=0, le=60)
    upstream_timeout_seconds: float = Field(10.0, gt=0, le=3600)
    upstream_connections: int = Field(256, ge=1, le=10_000)
    workers: int = Field(1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "required": every call must present an SVID (JWT-SVID bearer token) that
    # verifies, is registered and is not revoked; then the gateway may also
    # listen beyond loopback. "off" (the default for now) keeps calls
    # unauthenticated and loopback-only; "required" becomes the default next.
    # "off" is for local development only: loopback, with a warning at start.
    authentication: Literal["off", "required"] = "required"
    # The audience a JWT-SVID must name to be accepted by this gateway.
    audience: str = Field("ztgate", min_length=1, max_length=255)
    # HTTPS with optional client certificates (mTLS): the gateway serves its own
    # X.509-SVID (spiffe://<trust domain>/ztgate/gateway, issued at start-up) and
    # accepts clients' X.509-SVIDs as credentials.
    tls: bool = False
    # Lifetime of the gateway's own X.509-SVID (it is issued again at each start).
    tls_svid_ttl_seconds: int = Field(86400, ge=60, le=30 * 86400)


class StoreSettings(_Section):
    """The durable store, and where the hot state lives."""

    # The durable store: "" is the SQLite file <data_dir>/ztgate.db; a
    # sqlite:///PATH or postgresql+psycopg://USER@HOST[:PORT]/DB URL names
    # another (docs/deployment.md). `synchronous` is SQLite's alone.
    url: str = ""
    synchronous: Literal["normal", "full"] = "normal"
    busy_timeout_ms: int = Field(5000, ge=0, le=600_000)
    # Hot state (proofs already used, rate-limit buckets, budgets, loop and
    # burst counters, marks): "" keeps it in this process; a redis://,
    # rediss:// or unix:// URL keeps it in Redis, shared by every gateway
    # naming the same server and prefix. While Redis does not answer within
    # the timeout, calls are denied.
    hot_state_url: str = ""
    hot_state_prefix: str = Field("ztgate:", min_length=1, max_length=128)
    hot_state_timeout_seconds: float = Field(0.5, gt=0, le=30)
    # With PostgreSQL and Redis both, writers publish every change on Redis
    # and replicas re-read the store only when told (docs/deployment.md);
    # this often they re-read it anyway, in case a message was lost.
    change_resync_seconds: float = Field(1.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_database_url(url) if url else url

    @field_validator("hot_state_url")
    @classmethod
    def _hot_state_url(cls, url: str) -> str:
        _check_hot_state_url(url)
        return url

    def open(self, url: str) -> Database:
        """A `Database` for `url` with these settings, publishing its changes if broadcast."""
        database = Database(url, synchronous=self.synchronous, busy_timeout_ms=self.busy_timeout_ms)
        if self.broadcasts_changes(database):
            from ztgate.store.broadcasts import ChangePublisher

            database.after_commit = ChangePublisher(
                self.hot_state_url,
                prefix=self.hot_state_prefix,
                timeout=self.hot_state_timeout_seconds,
                resync_seconds=self.change_resync_seconds,
            )
        return database

    def broadcasts_changes(self, database: Database) -> bool:
        """Whether changes to `database` are broadcast: it is PostgreSQL, and Redis is named."""
        return database.is_postgresql and bool(self.hot_state_url)

    def change_broadcasts(self) -> ChangeBroadcasts:
        """A replica's subscription to the changes (see `broadcasts_changes`)."""
        from ztgate.store.broadcasts import ChangeBroadcasts

        return ChangeBroadcasts(
            self.hot_state_url,
            prefix=self.hot_state_prefix,
            timeout=self.hot_state_timeout_seconds,
            resync_seconds=self.change_resync_seconds,
        )

    def hot_state(self, clock: Clock) -> HotState:
        """The hot state these settings name: in this process on `clock`, or Redis."""
        if not self.hot_state_url:
            return MemoryHotState(clock)
        from ztgate.store.hot_redis import RedisHotState  # redis is imported only when used

        return RedisHotState.from_url(
            self.hot_state_url,
            prefix=self.hot_state_prefix,
            timeout=self.hot_state_timeout_seconds,
        )


def _check_hot_state_url(url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ValueError("hot_state_url must name a host: redis://HOST[:PORT][/DB]")
        _ = parts.port  # ValueError for a port that is not a number in range
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError("hot_state_url: the database after the host must be a number")
    elif parts.scheme == "unix":
        if not parts.path:
            raise ValueError("hot_state_url must name a socket: unix:///PATH")
    else:
        raise ValueError(
            "hot_state_url must be a redis://, rediss:// or unix:// URL (empty: in this process)"
        )


class AuditSettings(_Section):
    """The audit chain."""

    chain: str = Field("main", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    signing_key: Path = Path(".ztgate/keys/audit-ed25519.pem")
    public_key: Path = Path(".ztgate/keys/audit-ed25519.pub")
    checkpoint_every_records: int = Field(1000, ge=1)
    # Risk tiers whose allowed calls are recorded before the tool runs too
    # (two records: the decision, then the result), not only after.
    record_before_forward: tuple[Literal["read", "write", "critical"], ...] = ("write", "critical")
    checkpoint_every_seconds: float = Field(60.0, gt=0)


class FederationSettings(_Section):
    """Another trust domain whose SVIDs are trusted, and where its bundle comes from.

    Either `bundle_file` (re-read when it changes) or `bundle_endpoint_url`
    (its SPIFFE bundle endpoint, fetched in the background). With the
    `https_spiffe` profile, `bundle_file` is the bootstrap bundle that
    authenticates the endpoint until the first fetch.
    """

    trust_domain: str = Field(pattern=r"^[a-z0-9._-]{1,255}$")
    bundle_file: Path | None = None
    bundle_endpoint_url: str | None = Field(None, max_length=2048)
    endpoint_profile: Literal["https_web", "https_spiffe"] = "https_web"
    # https_spiffe: the SPIFFE ID the endpoint server's X.509-SVID must carry.
    endpoint_spiffe_id: str | None = Field(None, pattern=_SPIFFE_ID, max_length=2048)
    # https_web: trust the CAs in this PEM file instead of the system's.
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FederationSettings:
        url, spiffe = self.bundle_endpoint_url, self.endpoint_profile == "https_spiffe"
        if url is None:
            if self.bundle_file is None:
                raise ValueError("set bundle_file or bundle_endpoint_url")
            if self.endpoint_spiffe_id is not None or self.ca_file is not None:
                raise ValueError("endpoint_spiffe_id and ca_file need bundle_endpoint_url")
            return self
        _check_endpoint_url(url)
        if not spiffe:
            if self.bundle_file is not None:
                raise ValueError(
                    "set bundle_file or bundle_endpoint_url, not both (a bootstrap "
                    'bundle_file goes with endpoint_profile = "https_spiffe")'
                )
            if self.endpoint_spiffe_id is not None:
                raise ValueError('endpoint_spiffe_id needs endpoint_profile = "https_spiffe"')
            return self
        if self.endpoint_spiffe_id is None:
            raise ValueError('endpoint_profile = "https_spiffe" needs endpoint_spiffe_id')
        if self.ca_file is not None:
            raise ValueError('ca_file is for endpoint_profile = "https_web"')
        if self.endpoint_trust_domain == self.trust_domain and self.bundle_file is None:
            raise ValueError(
                "the endpoint's SPIFFE ID is in this trust domain: set bundle_file to its "
                "bootstrap bundle"
            )
        return self

    @property
    def endpoint_trust_domain(self) -> str | None:
        """The trust domain of `endpoint_spiffe_id`, if set."""
        if self.endpoint_spiffe_id is None:
            return None
        return self.endpoint_spiffe_id.removeprefix("spiffe://").split("/", 1)[0]


def _check_endpoint_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("bundle_endpoint_url must be an https:// URL with a host")
    _ = parts.port  # ValueError for a port that is not a number in range
    if parts.username is not None or parts.password is not None:
        raise ValueError("bundle_endpoint_url must not carry user information")


class IdentitySettings(_Section):
    """The trust domain and its certificate authority."""

    trust_domain: str = Field("ztgate.local", pattern=r"^[a-z0-9._-]{1,255}$")
    ca_dir: Path = Path(".ztgate/ca")
    # The CA's private keys are encrypted when this environment variable is set.
    passphrase_env: str = Field("ZTGATE_CA_PASSPHRASE", pattern=r"^[A-Z_][A-Z0-9_]*$")
    # Seconds; a few seconds is allowed so that rotation can be exercised in tests.
    x509_svid_ttl_seconds: int = Field(600, ge=2, le=86400)
    jwt_svid_ttl_seconds: int = Field(300, ge=2, le=86400)
    # The SPIFFE Workload API's Unix socket (its directory must exist).
    workload_socket: Path = Path(".ztgate/agent.sock")
    # `ztgate serve` also serves the Workload API on that socket.
    workload_api: bool = True
    root_ttl_days: int = Field(365, ge=1, le=3650)
    signing_ttl_days: int = Field(30, ge=1, le=365)
    clock_skew_seconds: int = Field(30, ge=0, le=300)
    # Other trust domains (e.g. an existing SPIRE deployment) whose SVIDs authenticate too.
    federation: tuple[FederationSettings, ...] = ()

    @model_validator(mode="after")
    def _federation_domains(self) -> IdentitySettings:
        names = [peer.trust_domain for peer in self.federation]
        if self.trust_domain in names:
            raise ValueError(f"federation: {self.trust_domain} is the local trust domain")
        if len(set(names)) != len(names):
            raise ValueError("federation: a trust domain is listed more than once")
        for peer in self.federation:
            served_by = peer.endpoint_trust_domain
            if served_by is not None and served_by not in {self.trust_domain, *names}:
                raise ValueError(
                    f"federation: the bundle endpoint of {peer.trust_domain} is "
                    f"{peer.endpoint_spiffe_id}, of trust domain {served_by}, which is neither "
                    "local nor federated"
                )
        return self

    def passphrase(self) -> bytes | None:
        """The CA passphrase from the environment, if one is set."""
        value = os.environ.get(self.passphrase_env, "")
        return value.encode() if value else None


class WarrantSettings(_Section):
    """Tasks, warrants and the proof every call carries."""

    # The key warrants are signed with (EC P-256, mode 0600; created if missing).
    signing_key: Path = Path(".ztgate/keys/warrant-es256.pem")
    # A proof's `iat` must be within this many seconds of the gateway's clock.
    proof_window_seconds: int = Field(30, ge=1, le=300)
    # How many times a warrant may be delegated down (0: no delegation).
    max_delegation_depth: int = Field(3, ge=0, le=16)
    # A task's lifetime when its creator names none, and the longest allowed.
    default_task_ttl_seconds: int = Field(3600, ge=10, le=30 * 86400)
    max_task_ttl_seconds: int = Field(7 * 86400, ge=10, le=365 * 86400)
    # Every write or critical call must carry a justification.
    require_justification: tuple[Literal["read", "write", "critical"], ...] = (
        "write",
        "critical",
    )


class RateSettings(_Section):
    """A token bucket: `rate_per_second` calls a second on average, up to `burst` at once."""

    rate_per_second: float = Field(gt=0, le=1e6)
    # Default: the rate rounded up (at least 1).
    burst: int | None = Field(None, ge=1, le=1_000_000)

    @property
    def capacity(self) -> float:
        """The bucket's size."""
        return float(self.burst or max(1, math.ceil(self.rate_per_second)))


class LimitsSettings(_Section):
    """Containment: rate limits, loops, bursts, alerts (see docs/containment.md)."""

    # Token buckets per agent, per task and per tool (all callers of a tool
    # together; a tool's own `limits` replaces this one). None: no limit.
    agent: RateSettings | None = None
    task: RateSettings | None = None
    tool: RateSettings | None = None
    # The same tool with the same arguments more than this many times within
    # the window, in one task: denied and flagged. 0: off.
    loop_max_repeats: int = Field(10, ge=0, le=1_000_000)
    loop_window_seconds: float = Field(300.0, gt=0, le=86400)
    # An agent making more than calls_per_second x window_seconds calls
    # within window_seconds is suspended until a principal resumes it. 0: off.
    burst_calls_per_second: float = Field(50.0, ge=0, le=1e6)
    burst_window_seconds: float = Field(1.0, gt=0, le=60)
    # Where alerts (a suspension) are POSTed as JSON; "" logs them only.
    alert_webhook_url: str = Field("", max_length=2048)
    alert_timeout_seconds: float = Field(5.0, gt=0, le=60)
    # How often each gateway process writes the tasks' budget use to the store.
    usage_flush_seconds: float = Field(1.0, gt=0, le=60)

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook(cls, url: str) -> str:
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("alert_webhook_url must be an http:// or https:// URL with a host")
            _ = parts.port  # ValueError for a port that is not a number in range
        return url

    @property
    def burst_threshold(self) -> int:
        """Calls within `burst_window_seconds` beyond which an agent is suspended (0: off)."""
        if not self.burst_calls_per_second:
            return 0
        return max(1, math.floor(self.burst_calls_per_second * self.burst_window_seconds))


class PolicySettings(_Section):
    """The Cedar policies every call is decided by (see docs/policy.md)."""

    # A directory of .cedar files (and an optional tags.toml); `ztgate init`
    # copies the default set there. While it does not exist, the built-in
    # default set is used.
    dir: Path = Path(".ztgate/policies")
    # How often, at most, the gateway looks for edits (0: before every call).
    reload_check_seconds: float = Field(0.0, ge=0, le=3600)


class InjectionSettings(_Section):
    """Result scanning for injected instructions (see docs/guards.md)."""

    # The built-in detector (rules, invisible characters, encodings).
    detector: bool = True
    # A result whose most suspicious string scores at least this is flagged.
    threshold: float = Field(0.5, gt=0, le=1)
    # A directory with model.onnx + tokenizer.json (+ config.json): an ML
    # classifier run as well (needs ztgate[ml]); checked at start. None: off.
    classifier_path: Path | None = None
    classifier_threshold: float = Field(0.5, gt=0, le=1)
    # The classifier's positive label (default: injection / jailbreak / malicious).
    classifier_label: str = Field("", max_length=64)
    # What the agent gets when a result is flagged: the result marked as
    # untrusted data (spotlight), a notice instead of it (quarantine), or the
    # result with the matched spans removed (redact).
    action: Literal["spotlight", "quarantine", "redact"] = "spotlight"
    # How long a task stays marked as having read injected content (longer
    # than any task lives by default: warrants.max_task_ttl_seconds).
    seen_ttl_seconds: int = Field(7 * 86400, ge=60, le=365 * 86400)


class ProvenanceSettings(_Section):
    """Where argument values came from: what each task read, and from where."""

    enabled: bool = True
    # A task's record lives as long as the task, and at most this long.
    ttl_seconds: int = Field(86400, ge=60, le=365 * 86400)
    # Values (and, separately, text fingerprints) remembered per task; beyond,
    # new ones are dropped (and so read as of unknown origin: untrusted).
    max_values_per_task: int = Field(50_000, ge=100, le=10_000_000)
    # Characters of one result scanned for values.
    max_result_chars: int = Field(1_048_576, ge=1024, le=256 * 1_048_576)


class EgressSettings(_Section):
    """Destination hosts in arguments: allow-lists, and never the inside of the network."""

    enabled: bool = True
    # Resolve the hosts of URL arguments and refuse private, loopback,
    # link-local and metadata addresses (false: literal addresses only).
    resolve: bool = True
    resolve_timeout_seconds: float = Field(1.0, gt=0, le=30)
    resolve_cache_seconds: float = Field(30.0, ge=0, le=3600)
    # Hosts URL and e-mail arguments may name, for agents not listed in
    # agent_domains ("*.acme.example" covers its subdomains). Empty: any.
    allowed_domains: tuple[str, ...] = ()
    # Per agent (SPIFFE ID): the hosts it may name, instead of allowed_domains.
    agent_domains: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_domain(d) for d in domains)

    @field_validator("agent_domains")
    @classmethod
    def _agents(cls, agents: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return {agent: tuple(_domain(d) for d in ds) for agent, ds in agents.items()}


def _domain(value: str) -> str:
    name = value.strip().lower().rstrip(".")
    if not _DOMAIN.fullmatch(name):
        raise ValueError(f"{value!r} is not a host name (ASCII; '*.' for subdomains)")
    return name


class JudgeSettings(_Section):
    """The intent-alignment judge: a model asked whether a call serves its task."""

    enabled: bool = False
    # An OpenAI-compatible chat completions endpoint (a local model server).
    url: str = Field("http://127.0.0.1:8000/v1/chat/completions", max_length=2048)
    model: str = Field("", max_length=256)
    # The environment variable holding its API key, if it needs one.
    api_key_env: str = Field("ZTGATE_JUDGE_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")
    # Keep below gateway.check_timeout_seconds; a slower answer denies.
    timeout_seconds: float = Field(1.5, gt=0, le=60)
    # Calls to tools of these risk tiers are judged.
    tiers: tuple[Literal["read", "write", "critical"], ...] = ("write", "critical")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        _ = parts.port  # ValueError for a port that is not a number in range
        return url


class GuardsSettings(_Section):
    """Guards against indirect prompt injection and exfiltration."""

    injection: InjectionSettings = InjectionSettings()
    provenance: ProvenanceSettings = ProvenanceSettings()
    # Outbound DLP: secrets, personal data and encoded blobs in what tools send out.
    dlp: bool = True
    egress: EgressSettings = EgressSettings()
    # A justification copied from the task's untrusted tool results is refused.
    justification_not_copied: bool = True
    judge: JudgeSettings = JudgeSettings()
    # A tool whose description or schemas changed is refused until approved again.
    pinning: bool = True


class ApprovalsSettings(_Section):
    """Asked calls waiting for a principal's decision (docs/approvals.md)."""

    # How long a request waits for a decision, unless its tool says otherwise.
    timeout_seconds: float = Field(600.0, gt=0, le=7 * 86400)
    # Per tool: {"payments.send" = 120.0}.
    tool_timeout_seconds: dict[str, float] = Field(default_factory=dict)
    # Four eyes: a critical call's own task principal may not approve it.
    require_second_person: bool = False
    # Notifications: POSTed in the background, never in a call's way.
    webhook_url: str = ""
    webhook_format: Literal["json", "slack"] = "json"
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=60)
    # Where a request is shown: the link is <link_base>/approvals/<id>; with
    # the web console, link_base = "http://host:port/console".
    link_base: str = ""

    def timeout_for(self, tool: str) -> float:
        """The seconds a request for `tool` waits for a decision."""
        return self.tool_timeout_seconds.get(tool, self.timeout_seconds)


class ConsoleSettings(_Section):
    """The web console under /console (docs/console.md)."""

    enabled: bool = True
    # A session ends this long after login, or after this long without a request.
    session_ttl_seconds: int = Field(8 * 3600, ge=60, le=30 * 86400)
    idle_timeout_seconds: int = Field(1800, ge=60, le=30 * 86400)
    # Failed logins allowed per name, and per client address, within the window.
    login_attempts_per_name: int = Field(5, ge=1, le=1000)
    login_attempts_per_address: int = Field(20, ge=1, le=10_000)
    login_window_seconds: float = Field(300.0, gt=0, le=86400)


class McpSettings(_Section):
    """The MCP front door at /mcp (docs/mcp.md)."""

    enabled: bool = True
    # Host headers (`name:port`, `*` for any port) /mcp answers besides the
    # gateway's own address and loopback: a DNS-rebinding defence.
    allowed_hosts: list[str] = Field(default_factory=list, max_length=64)
    # Per-task instances of stdio servers (`ztgate mcp add --per-task`): at
    # most this many run for one server; one ends after this long without a call.
    task_instances_per_server: int = Field(16, ge=1, le=4096)
    task_instance_idle_seconds: float = Field(300.0, gt=0, le=86400)


class EgressProxySettings(_Section):
    """The egress proxy, enclaves' only way out (docs/egress-proxy.md)."""

    # Also listen on TCP (host:port) for clients with an enclave's proxy
    # credentials; the enclaves' own Unix sockets need nothing here.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8472, ge=0, le=65535)
    connect_timeout_seconds: float = Field(10.0, gt=0, le=300)
    idle_timeout_seconds: float = Field(300.0, gt=0, le=86400)
    max_connections: int = Field(256, ge=1, le=100_000)
    # One enclave's share: relaying at once (twice as many open on its socket).
    max_connections_per_enclave: int = Field(32, ge=1, le=100_000)
    # Refusals recorded one by one per enclave (past it: counted, summarised).
    refusal_records_per_second: float = Field(20.0, gt=0, le=100_000)
    max_header_bytes: int = Field(16384, ge=1024, le=1_048_576)
    resolve_timeout_seconds: float = Field(2.0, gt=0, le=30)
    # `host:port` agents may reach through the proxy even on loopback: for tests only.
    agent_test_destinations: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("agent_test_destinations")
    @classmethod
    def _host_and_port(cls, value: list[str]) -> list[str]:
        for item in value:
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port")
        return value


class EnclaveSettings(_Section):
    """How stdio MCP servers are sandboxed (docs/enclaves.md)."""

    bwrap: str = Field("bwrap", min_length=1)
    # The enclave's user and group when ztgate runs as root (nobody, nogroup).
    uid: int = Field(65534, ge=1, le=2**32 - 2)
    gid: int = Field(65534, ge=1, le=2**32 - 2)
    # Where the relay listens on the enclave's own loopback.
    relay_port: int = Field(3128, ge=1, le=65535)


class DemoSettings(_Section):
    """The built-in demo tool server (off unless asked for)."""

    tools: bool = False
    port: int = Field(8471, ge=0, le=65535)


class ToolSettings(_Section):
    """A tool declared in the config file."""

    name: str
    url: str
    risk: str = "write"
    description: str = ""
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "additionalProperties": False}
    )
    output_schema: dict[str, Any] | None = None
    timeout_seconds: float | None = None
    # The tool's own rate limit and price: rate_per_second, burst, cost, cost_argument.
    limits: dict[str, Any] | None = None
    # Trusted result fields, egress, argument roles (see docs/guards.md).
    flow: dict[str, Any] | None = None

    def to_tool(self) -> Tool:
        """The registry's `Tool` for this declaration.

        Raises:
            InvalidInputError: a field is invalid.
        """
        return Tool(
            name=self.name,
            upstream_url=self.url,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            risk=parse_risk(self.risk),
            description=self.description,
            timeout_seconds=self.timeout_seconds,
            limits=ToolLimits.from_json(self.limits),
            flow=ToolFlow.from_json(self.flow),
            source="config",
        )


class Settings(BaseSettings):
    """All of ztgate's settings."""

    model_config = SettingsConfigDict(
        env_prefix="ZTGATE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Path(".ztgate")
    gateway: GatewaySettings = GatewaySettings()
    store: StoreSettings = StoreSettings()
    audit: AuditSettings = AuditSettings()
    identity: IdentitySettings = IdentitySettings()
    warrants: WarrantSettings = WarrantSettings()
    policy: PolicySettings = PolicySettings()
    guards: GuardsSettings = GuardsSettings()
    demo: DemoSettings = DemoSettings()
    limits: LimitsSettings = LimitsSettings()
    approvals: ApprovalsSettings = ApprovalsSettings()
    egress_proxy: EgressProxySettings = EgressProxySettings()
    enclaves: EnclaveSettings = EnclaveSettings()
    console: ConsoleSettings = ConsoleSettings()
    mcp: McpSettings = McpSettings()
    tools: list[ToolSettings] = Field(default_factory=list)

    # Where the settings came from, and the directory relative paths start
    # at: set by `load_settings`, never read from the file or the environment.
    _source: str = PrivateAttr("defaults")
    _base_dir: Path = PrivateAttr(Path("."))

    @property
    def source(self) -> str:
        """The config file these settings came from (or "environment")."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """The directory relative paths resolve against."""
        return self._base_dir

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, tools: list[ToolSettings]) -> list[ToolSettings]:
        names = [tool.name for tool in tools]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"tool declared more than once: {', '.join(duplicates)}")
        return tools

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables override the file, which overrides defaults."""
        return (env_settings, init_settings)

    def path(self, value: Path) -> Path:
        """`value` resolved against the config's directory."""
        return value if value.is_absolute() else self.base_dir / value

    def open_database(self) -> Database:
        """The database these settings point at (not yet migrated)."""
        return self.store.open(self.database_url)

    @property
    def database_url(self) -> str:
        """The store URL (an SQLite file in the data directory by default)."""
        if self.store.url:
            return self.store.url
        return f"sqlite:///{self.path(self.data_dir) / 'ztgate.db'}"

    def declared_tools(self) -> list[Tool]:
        """The tools of the `[[tools]]` section.

        Raises:
            ConfigError: a declared tool is invalid.
        """
        declared = []
        for index, tool in enumerate(self.tools):
            try:
                declared.append(tool.to_tool())
            except InvalidInputError as exc:
                raise ConfigError(
                    self.source, f"tools[{index}] ({tool.name})", exc.message
                ) from exc
        return declared


def config_path(explicit: Path | None = None) -> Path:
    """The config file to read: `--config`, else `$ZTGATE_CONFIG`, else `./ztgate.toml`."""
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file (if there is one) and the environment.

    Raises:
        ConfigError: the file cannot be parsed, or a value is invalid; the
            message names the file, the key and the reason.
    """
    file = config_path(path)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(file), "", f"not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(str(file), "", f"cannot read: {exc.strerror}") from exc
    elif path is not None:
        raise ConfigError(str(file), "", "config file not found")
    source = str(file) if file.exists() else "environment"
    base = file.resolve().parent if file.exists() else Path.cwd()
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        env_name = "ZTGATE_" + "__".join(str(part) for part in error["loc"]).upper()
        where = f"environment variable {env_name}" if env_name in os.environ else source
        raise ConfigError(where, key, _reason(error)) from exc
    settings._source = source
    settings._base_dir = base
    return settings


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    return str(error["msg"])


def is_loopback(host: str) -> bool:
    """True if binding `host` exposes the gateway to this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
