"""MCP: the front door agents talk to (and, later, the upstream servers ztgate reaches)."""
