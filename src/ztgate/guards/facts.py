"""The names of the facts guards put in `ctx.facts`, for policy to read.

Guards find facts; policy decides. Each guard writes only its own keys; the
`policy` check maps them into the Cedar request's context (absent means "not
found", never an error).
"""

from __future__ import annotations

# Provenance: JSON Pointers of the call's argument values that are not of
# trusted origin (seen in untrusted tool results, or found nowhere trusted).
TAINTED_ARGUMENTS = "guards.tainted_arguments"  # list[str]
# Where each tainted value was seen: pointer -> tool names whose results held it.
TAINT_SOURCES = "guards.taint_sources"  # dict[str, list[str]]
# Outbound DLP: kinds of secrets / PII found in the arguments (e.g. "aws_access_key", "iban").
SECRETS_LEAVING = "guards.secrets_leaving"  # list[str]
PII_LEAVING = "guards.pii_leaving"  # list[str]
# Encoded or high-entropy data in the arguments (e.g. "base64_blob", "high_entropy_string").
ENCODED_LEAVING = "guards.encoded_leaving"  # list[str]
# Result scanning: this task has read content flagged as injected instructions.
INJECTION_SEEN = "guards.injection_seen"  # bool
# Egress: destination hosts named in the arguments (lower-case, IDNA).
DESTINATION_HOSTS = "guards.destination_hosts"  # list[str]
