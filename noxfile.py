"""One environment per framework integration: their dependencies conflict.

    .venv/bin/nox -s integration-langchain integration-openai-agents integration-haystack integration-mcp

Each session installs ``./agents_sdk[<extra>]`` (pinned in agents_sdk/pyproject.toml) and
pytest, runs the integration's tests with the real library, then prints its benchmark
line (bench/integrations.py). Environments are reused between runs.
"""

from __future__ import annotations

import glob

import nox

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
FILESYSTEM_SERVER = "@modelcontextprotocol/server-filesystem@2026.8.31"


def _integration(session: nox.Session, extra: str, framework: str, env: dict[str, str] | None = None) -> None:
    session.install(f"./agents_sdk[{extra}]", "pytest", "hypothesis==6.170.15")  # hypothesis: the MCP proxy fuzz
    tests = [f"agents_sdk/integrations/tests/test_{framework}.py"]
    # A framework's sandboxed code tool (agents_sdk.sandbox), where it has one.
    tests += glob.glob(f"agents_sdk/integrations/tests/test_{framework}_sandbox.py")
    session.run("pytest", "-p", "no:django", "-q", *tests, env=env)
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


# Real OPA (1.20, the Go engine in `opa-golib-python-bindings`) as the oracle for Rego
# semantics: every Rego test and a seeded differential corpus must agree with regorus.
# The package declares Python >= 3.14 but works on 3.11, hence --ignore-requires-python.
OPA_BINDINGS = "opa-golib-python-bindings==0.4.4"


@nox.session(name="opa-oracle", python=PYTHON)
def opa_oracle(session: nox.Session) -> None:
    session.install("./agents_sdk", "pytest", "hypothesis==6.170.15")
    session.install("--ignore-requires-python", OPA_BINDINGS)
    session.run("python", "-m", "agents_sdk.engine.testrunner", "rego", "--engine", "opa")
    # The authoring templates' generated modules and tests (controlplane/authoring/samples.py).
    session.run("python", "-m", "agents_sdk.engine.testrunner", "controlplane/authoring/generated", "--engine", "opa")
    session.run(
        # python -m: the repository root on sys.path, for pyproject's `-p tests.xdist_env`.
        "python", "-m", "pytest", "-p", "no:django", "-p", "no:cacheprovider", "-q", "-s",
        "agents_sdk/tests/test_engine_opa_oracle.py", "agents_sdk/tests/test_opa_oracle_documents.py",
        "agents_sdk/tests/test_engine_card_numbers.py",
        # Bundles the suites built with WARDEN_RECORD_BUNDLES set (make test sets it).
        "agents_sdk/tests/test_opa_oracle_bundles.py",
        env={"WARDEN_OPA_ORACLE": "1"},
    )


# The governed-call bench beside Microsoft's Agent Governance Toolkit, in its own environment
# (its dependencies are not ours): both sides interleaved in one process, one run.
AGT = "agent-governance-toolkit[full]==4.1.0"


@nox.session(name="bench-governed-call", python=PYTHON)
def bench_governed_call(session: nox.Session) -> None:
    session.install("./agents_sdk", AGT)
    session.run("python", "bench/governed_call.py", *session.posargs)
