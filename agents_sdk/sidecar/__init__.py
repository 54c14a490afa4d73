"""``warden sidecar``: a local decision server that speaks OPA's REST API.

    warden sidecar --config config.yaml --addr 127.0.0.1:8181

It reads OPA's own config.yaml (services, keys, bundles, decision_logs, status, labels,
persistence_directory), keeps the configured bundle active with the same bundle client
as the embedded backend, and answers what agents ask an OPA:

    POST /v1/data/{path}   {"input": …} → {"result": …, "decision_id": …}  (result left out when undefined)
    GET  /v1/data/{path}   the same without input (or ?input=<JSON>)
    GET  /health           200 once a bundle is active, 500 before (also ?bundles, ?plugins)
    GET  /metrics          decision-log counters (dropped, uploaded, pending), Prometheus text

Each decision is shipped to ``<decision_logs service>/logs`` in OPA's decision-log format
(gzip JSON array, batched, retried with backoff, bounded queue), and the sidecar's state
to ``<status service>/status`` as OPA does. Where a real OPA runs, it replaces the
sidecar with no change for the agents.

HTTP is parsed by httptools (llhttp) under an asyncio protocol of the sidecar's own (on
uvloop's event loop where uvloop is installed), with
limits on head and body size and on the time a request may take to arrive
(``agents_sdk.sidecar.serving``); decisions are evaluated on the event loop's thread, which
owns the engine, as each request completes, so a request costs one parse, one evaluation
and one write. Decision logs are encoded per event at decision time and uploaded, by the
`warden sidecar` command, from a child process fed through a pipe
(``agents_sdk.sidecar.logproc``), or by a thread of an embedded sidecar
(``agents_sdk.sidecar.uploads``): no upload waits on a decision, and none holds one up.
"""

from agents_sdk.sidecar.config import DEFAULT_ADDR, ConfigError, SidecarConfig, load_config, parse_config
from agents_sdk.sidecar.server import Sidecar, run
from agents_sdk.sidecar.uploads import DecisionLogShipper, StatusReporter

__all__ = [
    "DEFAULT_ADDR",
    "ConfigError",
    "DecisionLogShipper",
    "Sidecar",
    "SidecarConfig",
    "StatusReporter",
    "load_config",
    "parse_config",
    "run",
]
