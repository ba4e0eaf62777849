"""The egress proxy: the only way out of an enclave (docs/egress-proxy.md).

`proxy` (the proxy), `decision` (where a connection may go), `grants` (who
may use it), `agents` (agents with their own identity), `request` (reading a
request head; what an agent's proof signs), `record` (its audit records),
`service` (the proxy as the settings describe it). Nothing is imported here:
the SDK reads `request` without loading the proxy.
"""
