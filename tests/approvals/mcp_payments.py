"""The upstream MCP server of the approval end-to-end run: one tool, payment_create, that
appends each payment it makes to <workdir>/payments.log (stdio transport)."""

import json
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

WORKDIR = Path(sys.argv[1])
server = MCPServer("payments")


@server.tool()
def payment_create(amount: int, currency: str, iban: str) -> str:
    """Pay a supplier."""
    with (WORKDIR / "payments.log").open("a") as log:
        log.write(json.dumps({"amount": amount, "at": time.time(), "via": "mcp"}) + "\n")
    return f"paid {amount} {currency}"


if __name__ == "__main__":
    server.run("stdio")
