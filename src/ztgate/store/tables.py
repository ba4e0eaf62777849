"""The schema, in SQLAlchemy Core. Portable: no dialect-specific types or SQL.

Alembic migrations under `migrations/versions` create exactly these tables;
`tests/unit/store/test_migrations.py` checks the two never drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per counter of committed management changes (tools, and later
# agents, tasks, revocations). A running gateway reloads its caches when the
# generation it saw last differs.
generations = Table(
    "generations",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

tools = Table(
    "tools",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("upstream_url", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("risk", String(16), nullable=False),
    Column("input_schema", Text, nullable=False),
    Column("output_schema", Text, nullable=True),
    Column("timeout_seconds", Float, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("source", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # The tool's own rate limit and price (ToolLimits), canonical JSON (0005).
    Column("limits", Text, nullable=True),
    # Trusted result fields and egress (ToolFlow), canonical JSON; the
    # approved fingerprint of the description and schemas (tools/pins.py) (0006).
    Column("flow", Text, nullable=True),
    Column("pin_sha256", String(64), nullable=True),
)

# The head of each audit chain: locked (SELECT ... FOR UPDATE, or SQLite's
# single writer) by every append so that concurrent writers extend the chain
# in one order.
audit_heads = Table(
    "audit_heads",
    metadata,
    Column("chain", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("checkpoint_seq", BigInteger, nullable=False),
    Column("checkpoint_at", Float, nullable=False),
)

audit_records = Table(
    "audit_records",
    metadata,
    Column("chain", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("call_id", String(64), nullable=True),
    Column("agent", Text, nullable=True),
    Column("task_id", String(64), nullable=True),
    Column("tool", String(128), nullable=True),
    Column("body", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_records_call_id", "call_id"),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("chain", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("note", Text, nullable=False),
)

# Workload registration entries (SPIRE's model): a SPIFFE ID and the
# selectors a calling process must all match, or a one-time join token kept
# only as its SHA-256. `selectors` is a canonical JSON array of strings.
registration_entries = Table(
    "registration_entries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("spiffe_id", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("selectors", Text, nullable=False),
    Column("token_sha256", String(64), nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("consumed_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_registration_entries_spiffe_id", "spiffe_id"),
)

# Revocations by SPIFFE ID (`spiffe_id`), certificate serial (`serial`, lower-case
# hex without leading zeros) or registration entry id (`entry`). A row is kept
# until every credential it covers has expired (`expires_at`), then purged.
revocations = Table(
    "revocations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("value", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_revocations_expires_at", "expires_at"),
)

# Principals: the humans and systems on whose behalf tasks run (admin API
# keys now, OIDC later). `roles` is a canonical JSON array of role names.
principals = Table(
    "principals",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("roles", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("disabled_at", Float, nullable=True),
    # The console password (argon2id, PHC string), never the password (0008).
    Column("password_hash", Text, nullable=True),
    # The agents (SPIFFE ID patterns) and tools the approver role covers,
    # canonical JSON {"agents": [...], "tools": [...]}; null: any (0009).
    Column("approver_scope", Text, nullable=True),
)

# A principal's API keys, kept only as the SHA-256 of their secret part.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("principal", String(64), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Index("ix_api_keys_principal", "principal"),
)

# Tasks: one job for one agent, its intent and scope fixed at creation.
# `state` is active, completed or revoked; an active task past `expires_at`
# reads as expired. `scope` is canonical JSON.
tasks = Table(
    "tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("principal", String(64), nullable=False),
    Column("agent", Text, nullable=False),
    Column("intent", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("budget_calls", BigInteger, nullable=True),
    Column("budget_spend", Float, nullable=True),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("end_reason", Text, nullable=True),
    Index("ix_tasks_state", "state"),
)

# Warrants issued for tasks: a task's root warrant (no parent) and the
# narrower ones delegated from it. `jkt` is the RFC 7638 thumbprint of the key
# the warrant is bound to (null until the agent claims it).
warrants = Table(
    "warrants",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("task_id", String(32), nullable=False),
    Column("parent_id", String(32), nullable=True),
    Column("agent", Text, nullable=False),
    Column("jkt", String(64), nullable=True),
    Column("scope", Text, nullable=False),
    Column("depth", Integer, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index("ix_warrants_task_id", "task_id"),
    Index("ix_warrants_parent_id", "parent_id"),
)

# Containment holds: calls of an agent, of a task, or all calls (`scope`
# agent | task | all; `target` the SPIFFE ID, the task id or "*") are
# refused while a row exists. `cause` is kill (a principal) or burst (the
# gateway suspended a runaway agent). Resuming deletes the rows.
suspensions = Table(
    "suspensions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("cause", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

# What each task has used of its budget: the calls allowed to run and their
# spend, written behind (every second and at shutdown) by each gateway
# process as increments, read back at start.
task_usage = Table(
    "task_usage",
    metadata,
    Column("task_id", String(32), primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("spend", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Approval requests: an asked call waiting for a principal's decision, bound
# to the call (tool, canonical arguments hash, task, agent) and used once.
# `state` is pending, approved, rejected or used; a pending or approved
# request past `expires_at` reads as expired. `request_sha256` is the hash of
# the request as shown to the approver (canonical JSON), recorded with the
# decision in the audit chain.
approvals = Table(
    "approvals",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("tool", String(128), nullable=False),
    Column("risk", String(16), nullable=False),
    Column("arguments_sha256", String(64), nullable=False),
    Column("agent", Text, nullable=False),
    Column("task_id", String(32), nullable=False),
    Column("principal", String(64), nullable=False),
    Column("request", Text, nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("second_person", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_by", String(64), nullable=True),
    Column("decided_key", String(32), nullable=True),
    Column("decided_at", Float, nullable=True),
    Column("comment", Text, nullable=True),
    Column("used_at", Float, nullable=True),
    Column("used_call_id", String(64), nullable=True),
    Index("ix_approvals_state", "state"),
)

# Web console sessions (0008): the cookie's random token kept only as its
# SHA-256; `id` names the session in pages, signed statements and the audit
# log. `public_jwk` is the browser's non-extractable ECDSA P-256 key made at
# login (its RFC 7638 thumbprint in `key_thumbprint`): decisions are signed
# with it. A session ends at `expires_at`, after an idle timeout, or at logout.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("id", String(32), nullable=False),
    Column("principal", String(64), nullable=False),
    Column("key_thumbprint", String(64), nullable=False),
    Column("public_jwk", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_console_sessions_principal", "principal"),
)

# MCP upstream servers (0010): `spec` is the server's canonical JSON
# (`ztgate.mcp.servers.McpServer`): how to reach it (a stdio command run in an
# enclave, or a Streamable HTTP URL) and which of its tools are read-only.
mcp_servers = Table(
    "mcp_servers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("transport", String(8), nullable=False),
    Column("spec", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

SCHEMA_TABLES = (
    generations,
    tools,
    audit_heads,
    audit_records,
    audit_checkpoints,
    registration_entries,
    revocations,
    principals,
    api_keys,
    tasks,
    warrants,
    suspensions,
    task_usage,
    approvals,
    console_sessions,
    mcp_servers,
)
