"""`ztgate init`: a commented config, the data directory, keys and the schema."""

from __future__ import annotations

from pathlib import Path

from ztgate.audit.checkpoint import generate_key
from ztgate.cli.toml import array_of_tables
from ztgate.clock import SystemClock
from ztgate.config import Settings, load_settings
from ztgate.demo.tools import demo_tool_declarations
from ztgate.identity.authority import STATE_FILE, CertificateAuthority
from ztgate.identity.spiffe_id import parse_trust_domain
from ztgate.policy.loader import install_defaults
from ztgate.principals.registry import ADMIN, PrincipalRegistry
from ztgate.warrants.keys import load_or_create

DEFAULT_CONFIG_TEXT = """\
# ztgate configuration. Every setting is optional: the values shown are the
# defaults. Any setting can be overridden from the environment with ZTGATE_,
# nested keys joined by a double underscore, e.g. ZTGATE_GATEWAY__PORT=9000.
# Relative paths are relative to this file's directory.

# Where the embedded database and the keys live.
# data_dir = ".ztgate"

[gateway]
# Until agent identity is configured, calls are unauthenticated and ztgate
# refuses to listen on anything but loopback.
# host = "127.0.0.1"
# port = 8470
# max_body_bytes = 1048576        # larger request bodies get 413
# max_json_depth = 32             # deeper nesting gets 400
# max_result_bytes = 4194304      # larger tool results are refused (502)
# check_timeout_seconds = 2.0     # a check that takes longer denies
# upstream_timeout_seconds = 10.0 # a tool that takes longer gets 504
# upstream_connections = 256
# log_level = "info"
# Worker processes on one port; above 1 needs the hot state in Redis and the
# store on PostgreSQL (docs/deployment.md).
# workers = 1
# Every call must present an SVID (an X.509-SVID over mTLS or a JWT-SVID
# bearer token) that verifies, is registered and is not revoked. "off" is for
# local development only: calls are not authenticated, ztgate listens on
# loopback only and warns at every start.
# authentication = "required"
# The audience a JWT-SVID must name.
# audience = "ztgate"
# HTTPS. At start-up the gateway issues itself an X.509-SVID,
# spiffe://<trust_domain>/ztgate/gateway (a URI SAN only, no DNS name: clients
# verify the server by that SPIFFE ID, or by the trust domain's root
# <data_dir>/tls/roots.pem with hostname checking off), and writes it to
# <data_dir>/tls (mode 0600). Clients may present an X.509-SVID of the trust
# domain as their credentials; a client without one can still use a bearer.
# The certificate is not renewed while the gateway runs: restart it within
# tls_svid_ttl_seconds.
# tls = false
# tls_svid_ttl_seconds = 86400

[store]
# SQLAlchemy URL; empty means the SQLite file <data_dir>/ztgate.db. PostgreSQL
# (shared by gateway replicas): "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB".
# url = ""
# SQLite only: "normal": committed records survive a crash of the gateway
# process (WAL); "full": they also survive a power loss, at one fsync per commit.
# synchronous = "normal"
# How long a write waits for another writer (the CLI, another worker) before
# failing closed (on PostgreSQL: its lock_timeout).
# busy_timeout_ms = 5000

[audit]
# chain = "main"
# signing_key = ".ztgate/keys/audit-ed25519.pem"   # Ed25519, mode 0600
# public_key = ".ztgate/keys/audit-ed25519.pub"    # give this to auditors
# checkpoint_every_records = 1000
# Allowed calls to tools of these risk tiers are recorded twice: once before
# the tool runs (so a crash mid-call still leaves a trace), once with the
# result. Other tiers get one record, after the result.
# record_before_forward = ["write", "critical"]
# checkpoint_every_seconds = 60

[identity]
# The SPIFFE trust domain of this gateway's agents: spiffe://<trust_domain>/...
# trust_domain = "ztgate.local"
# ca_dir = ".ztgate/ca"
# When this environment variable is set, the CA's private keys are encrypted
# with its value (set it for `init` and every later command).
# passphrase_env = "ZTGATE_CA_PASSPHRASE"
# x509_svid_ttl_seconds = 600
# jwt_svid_ttl_seconds = 300
# root_ttl_days = 365
# signing_ttl_days = 30
# clock_skew_seconds = 30
# The SPIFFE Workload API socket agents get their identities from; `ztgate
# serve` serves it too unless workload_api = false.
# workload_socket = ".ztgate/agent.sock"
# workload_api = true
# Trust another trust domain's SVIDs (e.g. an existing SPIRE deployment's),
# with its SPIFFE bundle in a file (re-read when it changes):
# [[identity.federation]]
# trust_domain = "partner.example"
# bundle_file = "partner-bundle.json"
# or fetched from its SPIFFE bundle endpoint (in the background, per the
# bundle's refresh hint; the last good bundle is kept in <data_dir>/federation).
# https_web checks the server like a browser (ca_file: a private CA);
# https_spiffe wants the server's X.509-SVID to be endpoint_spiffe_id, first
# checked with the bootstrap bundle in bundle_file, then with each fetched one:
# [[identity.federation]]
# trust_domain = "spire.example"
# bundle_endpoint_url = "https://spire.example:8443"
# endpoint_profile = "https_spiffe"        # or "https_web" (the default)
# endpoint_spiffe_id = "spiffe://spire.example/spire/server"
# bundle_file = "spire-bootstrap.json"

[warrants]
# Every call carries a warrant (the task's credential, bound to the agent's
# key) and a proof (a signature over that one call, fresh and single-use).
# signing_key = ".ztgate/keys/warrant-es256.pem"
# proof_window_seconds = 30
# max_delegation_depth = 3
# default_task_ttl_seconds = 3600
# max_task_ttl_seconds = 604800
# require_justification = ["write", "critical"]

[policy]
# The Cedar policies every call is decided by: a directory of .cedar files
# (and an optional tags.toml), reloaded on change; a bad edit is refused and
# the previous set stays in force. `ztgate init` writes the default set there.
# dir = ".ztgate/policies"
# reload_check_seconds = 0     # look for edits before every call

[limits]
# Containment (docs/containment.md). Token buckets per agent, per task and
# per tool (a tool's own `limits` replaces the tool bucket); none by default.
# agent = { rate_per_second = 10, burst = 20 }
# task = { rate_per_second = 5, burst = 10 }
# tool = { rate_per_second = 100, burst = 200 }
# The same call (tool and arguments) more than this many times in a task
# within the window is denied and flagged (0: off).
# loop_max_repeats = 10
# loop_window_seconds = 300
# An agent making more calls than this per second is suspended until a
# principal resumes it (`ztgate resume agent ID`), with an alert (0: off).
# burst_calls_per_second = 50
# burst_window_seconds = 1
# alert_webhook_url = "https://hooks.example/ztgate"
# alert_timeout_seconds = 5

[approvals]
# Calls policy asks about wait for a principal's decision (docs/approvals.md).
# timeout_seconds = 600
# tool_timeout_seconds = { "payments.send" = 120.0 }
# A task's own principal may not approve its critical calls (four eyes).
# require_second_person = false
# New requests announced to a webhook: "json", or "slack" ({"text": ...}).
# webhook_url = "https://hooks.example/ztgate-approvals"
# webhook_format = "json"
# Links point at the web console's page of the request: <link_base>/approvals/<id>.
# link_base = "https://ztgate.example:8470/console"

[console]
# The web console for approvers and operators, at /console (docs/console.md):
# principals with the approver or admin role log in with the password set by
# `ztgate principals password NAME`.
# enabled = true
# session_ttl_seconds = 28800     # a session ends this long after login
# idle_timeout_seconds = 1800     # or after this long without a request
# login_attempts_per_name = 5     # failed logins per name within the window
# login_attempts_per_address = 20 # and per client address
# login_window_seconds = 300

[mcp]
# The MCP front door at /mcp (docs/mcp.md); upstream servers: `ztgate mcp add`.
# enabled = true
# Host headers answered besides this address and loopback (DNS rebinding):
# allowed_hosts = ["gateway.acme.example:*"]

[guards]
# Guards against indirect prompt injection and exfiltration (docs/guards.md):
# they find facts (tainted arguments, secrets leaving ...), policy decides.
# dlp = true                       # secrets, personal data, blobs leaving
# justification_not_copied = true  # a justification copied from a tool result
# pinning = true                   # a changed tool waits for `ztgate tools approve`
# [guards.provenance]              # what each task read, and from where
# ttl_seconds = 86400
# [guards.egress]                  # private, loopback, metadata hosts refused
# resolve = true
# allowed_domains = ["acme.example", "*.acme.example"]
# [guards.judge]                   # a model asked whether a call serves its task
# enabled = false
# url = "http://127.0.0.1:8000/v1/chat/completions"
# model = "a-local-model"

[egress_proxy]
# The only way out of an enclave (docs/egress-proxy.md): CONNECT and plain
# http:// only, to the enclave's allowed domains, never to private,
# loopback, link-local or metadata addresses; every connection audited.
# Enclaves reach it on their own Unix socket; enabled also listens on TCP,
# for clients with an enclave's proxy credentials (else 407).
# enabled = false
# host = "127.0.0.1"
# port = 8472
# connect_timeout_seconds = 10
# idle_timeout_seconds = 300
# max_connections = 256
# max_header_bytes = 16384
# resolve_timeout_seconds = 2

[enclaves]
# stdio MCP servers run in a bubblewrap sandbox (docs/enclaves.md): no
# network but the egress proxy, a read-only system, only their own paths.
# bwrap = "bwrap"                  # apt-get install bubblewrap
# uid = 65534                      # the enclave's user when ztgate runs as root
# gid = 65534
# relay_port = 3128                # on the enclave's own loopback

[demo]
# Serve the demo tools on 127.0.0.1:<port> alongside the gateway.
# tools = false
# port = 8471

# Tools can be declared here as well as with `ztgate tools add`:
# [[tools]]
# name = "get_weather"
# url = "http://127.0.0.1:8471/weather"
# risk = "read"            # read | write | critical
# description = "Today's forecast for a city."
# input_schema = {type = "object", required = ["city"], properties = {city = {type = "string"}}}
# (JSON Schema, Draft 2020-12)
"""


def config_text(*, demo: bool) -> str:
    """The text `ztgate init` writes, with the demo tools when asked."""
    if not demo:
        return DEFAULT_CONFIG_TEXT
    port = 8471
    return (
        DEFAULT_CONFIG_TEXT.replace("[demo]\n", "[demo]\ntools = true\n", 1)
        + "\n# The demo tools (written by `ztgate init --demo`).\n"
        + array_of_tables("tools", demo_tool_declarations(port))
    )


ADMIN_PRINCIPAL = "admin"


def initialise(
    config: Path, *, demo: bool, force: bool, trust_domain: str | None = None
) -> tuple[Settings, list[str]]:
    """Create what is missing: config file, data directory, audit keys, schema.

    Existing keys and data are never overwritten; `force` rewrites only the
    config file.
    """
    done: list[str] = []
    if force or not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        text = config_text(demo=demo)
        if trust_domain is not None:
            parse_trust_domain(trust_domain)
            text = text.replace(
                '# trust_domain = "ztgate.local"', f'trust_domain = "{trust_domain}"', 1
            )
        config.write_text(text, encoding="utf-8")
        done.append(f"wrote {config}")
    settings = load_settings(config)
    data_dir = settings.path(settings.data_dir)
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)
        done.append(f"created {data_dir} (mode 0700)")
    private = settings.path(settings.audit.signing_key)
    if not private.exists():
        generate_key(private, settings.path(settings.audit.public_key))
        done.append(f"created the audit signing key {private} (mode 0600)")
    ca_dir = settings.path(settings.identity.ca_dir)
    if not (ca_dir / STATE_FILE).exists():
        identity = settings.identity
        CertificateAuthority.create(
            ca_dir,
            identity.trust_domain,
            SystemClock(),
            passphrase=identity.passphrase(),
            root_ttl=identity.root_ttl_days * 86400,
            signing_ttl=identity.signing_ttl_days * 86400,
        )
        encrypted = " (keys encrypted)" if identity.passphrase() else ""
        done.append(f"created trust domain spiffe://{identity.trust_domain} in {ca_dir}{encrypted}")
    policies = settings.path(settings.policy.dir)
    if install_defaults(policies):
        done.append(f"wrote the default policies to {policies}")
    warrant_key = settings.path(settings.warrants.signing_key)
    if not warrant_key.exists():
        load_or_create(warrant_key, passphrase=settings.identity.passphrase())
        done.append(f"created the warrant signing key {warrant_key} (mode 0600)")
    database = settings.open_database()
    try:
        database.migrate()
        clock = SystemClock()
        # Part of installing, like creating the CA and the keys: not an
        # audited action (the audit log starts empty).
        principals = PrincipalRegistry(database, clock)
        if principals.find(ADMIN_PRINCIPAL) is None:
            principals.ensure(ADMIN_PRINCIPAL, roles=[ADMIN])
            done.append(
                f"added the principal {ADMIN_PRINCIPAL!r} (role admin; "
                f"`ztgate principals keys create {ADMIN_PRINCIPAL}` makes an API key)"
            )
    finally:
        database.dispose()
    done.append(f"database ready at {settings.database_url}")
    return settings, done
