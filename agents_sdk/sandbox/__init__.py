"""OS-level isolation for code and shell tools: bubblewrap namespaces, a seccomp filter,
resource limits and an egress proxy, shaped by the agent's registry profile.

    sandbox = Sandbox(Permissions(file_read=["/srv/data"], shell_commands=["python3"]))
    result = sandbox.run(["python3", "-c", "print(open('/srv/data/x').read())"])

    agent = SandboxedAgent(guard)          # decided by the Guard, shaped by the bundle's registry
    agent.python("print(2 + 2)")

See docs/sandbox.md for the model, its limits and how it compares with containers.
"""

from agents_sdk.sandbox.errors import SandboxError, SandboxProfileError, SandboxUnavailable, SandboxViolation
from agents_sdk.sandbox.governed import SandboxedAgent, python_tool, run_governed
from agents_sdk.sandbox.permissions import Limits, Permissions, profile_problem
from agents_sdk.sandbox.runner import Sandbox, SandboxResult

__all__ = [
    "Limits",
    "Permissions",
    "Sandbox",
    "SandboxedAgent",
    "SandboxError",
    "SandboxProfileError",
    "SandboxResult",
    "SandboxUnavailable",
    "SandboxViolation",
    "profile_problem",
    "python_tool",
    "run_governed",
]
