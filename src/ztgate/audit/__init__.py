"""The tamper-evident audit log: a SHA-256 hash chain with signed checkpoints."""

from ztgate.audit.log import AuditLog
from ztgate.audit.record import AuditEntry, AuditReceipt

__all__ = ["AuditEntry", "AuditLog", "AuditReceipt"]
