"""One environment per framework integration: their dependencies conflict.

    .venv/bin/nox -s integration-langchain integration-openai-agents integration-haystack integration-mcp

Each session installs ``./agents_sdk[<extra>]`` (pinned in agents_sdk/pyproject.toml) and
pytest, runs the integration's tests with the real library, then prints its benchmark
line (bench/integrations.py). Environments are reused between runs.
"""

from __future__ import annotations

import nox

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
FILESYSTEM_SERVER = "@modelcontextprotocol/server-filesystem@2026.8.31"


def _integration(session: nox.Session, extra: str, framework: str, env: dict[str, str] | None = None) -> None:
    session.install(f"./agents_sdk[{extra}]", "pytest")
    session.run("pytest", "-p", "no:django", "-q", f"agents_sdk/integrations/tests/test_{framework}.py", env=env)
    session.run("python", "bench/integrations.py", framework, env=env)


@nox.session(name="integration-langchain", python=PYTHON)
def integration_langchain(session: nox.Session) -> None:
    _integration(session, "langchain", "langchain")


@nox.session(name="integration-openai-agents", python=PYTHON)
def integration_openai_agents(session: nox.Session) -> None:
    _integration(session, "openai-agents", "openai_agents")


@nox.session(name="integration-haystack", python=PYTHON)
def integration_haystack(session: nox.Session) -> None:
    _integration(session, "haystack", "haystack")


@nox.session(name="integration-mcp", python=PYTHON)
def integration_mcp(session: nox.Session) -> None:
    # The upstream is the reference filesystem MCP server from the npm registry, installed
    # next to the environment (node ≥ 20 on PATH).
    prefix = f"{session.virtualenv.location}/npm"
    binary = f"{prefix}/node_modules/.bin/mcp-server-filesystem"
    session.run(
        "npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", prefix, FILESYSTEM_SERVER, external=True
    )
    _integration(session, "mcp", "mcp", env={"WARDEN_MCP_FILESYSTEM_SERVER": binary})
