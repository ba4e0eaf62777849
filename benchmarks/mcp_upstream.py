"""The MCP server the MCP benchmark calls: one `echo` tool (FastMCP, the SDK's high-level server).

    python benchmarks/mcp_upstream.py            # stdio
    python benchmarks/mcp_upstream.py --http PORT  # Streamable HTTP at /mcp

Run with any interpreter that has the `mcp` SDK (1.x or 2.x) so that every
path of the benchmark (direct, through ztgate, through a peer bridge)
reaches the very same server.
"""

from __future__ import annotations

import sys
from typing import Any

from mcp.server.fastmcp import FastMCP

server = FastMCP("bench")
server.settings.log_level = "WARNING"  # no line per request on stderr


@server.tool()
def echo(to: str, subject: str, body: str, priority: int = 1) -> dict[str, Any]:
    """Returns its arguments."""
    return {"to": to, "subject": subject, "body": body, "priority": priority}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.settings.port = int(sys.argv[2])
        server.settings.json_response = True
        server.run("streamable-http")
    else:
        server.run("stdio")
