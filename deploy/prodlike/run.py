"""`make prodlike`: Warden's reference topology as local processes, a smoke scenario through
it, the timings, and a clean stop (also on failure or Ctrl-C).

The topology (the same as deploy/k8s and deploy/compose.yaml):
  PostgreSQL  a scratch database on the machine's server, migrated, then `setup_db_roles`:
              every process below connects as the app role, none as the owner or superuser
  Redis       its own redis-server on a free port
  web         two uvicorn processes (production mode) behind proxy.py, a round-robin proxy
              that terminates "TLS" the way a load balancer does (X-Forwarded-Proto)
  workers     two Celery workers (each serves /metrics on its own port)
  beat        one
  sidecar     one `warden sidecar` with deploy/opa/config.token-path.yaml, token in a file

The smoke scenario: register an agent, the sidecar pulls the signed bundle, the example
agent (deploy/examples/agent.py) decides through the sidecar and ships its signed records,
the agent is suspended and the sidecar denies it, the records are verified and stored by
the workers, a compliance report is built, and /metrics is scraped.

Environment: PRODLIKE_DATABASE_URL (default DATABASE_URL, else
postgres://postgres@127.0.0.1:5432/postgres): a role that may create databases and roles.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
AGENT = "prodlike-bot"
ENVIRONMENT = "prod"
PLACEHOLDER = re.compile(
    r"( +)-----BEGIN PUBLIC KEY-----\n\s*REPLACE-WITH-WARDEN-BUNDLE-SIGNING-PUBLIC-KEY\n\s*-----END PUBLIC KEY-----\n"
)
BOOTSTRAP = """
import json
from controlplane.accounts import services as accounts
from controlplane.bundles import services as bundles
admin = accounts.create_user(username="prodlike-admin", roles=["admin"], by=None)
_, api_token = accounts.create_token(user=admin, name="prodlike", by=admin)
environment = bundles.create_environment(name="prod", by=admin)
bundles.publish_policies(environment, by=admin, message="make prodlike")
_, opa_token = bundles.create_environment_token(environment, name="prodlike-sidecar", by=admin)
print(json.dumps({"api_token": api_token, "opa_token": opa_token}))
"""


class SmokeFailure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, check, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError, ValueError) as error:
            last = error
        time.sleep(interval)
    raise SmokeFailure(f"{what}: not within {timeout:.0f} s" + (f" (last error: {last})" if last else ""))


class Topology:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="warden-prodlike-"))
        self.processes: list[tuple[str, subprocess.Popen, Path]] = []
        self.timings: list[tuple[str, float]] = []
        admin = os.environ.get("PRODLIKE_DATABASE_URL") or os.environ.get("DATABASE_URL") \
            or "postgres://postgres@127.0.0.1:5432/postgres"
        self.admin_url = admin
        self.database = f"warden_prodlike_{os.getpid()}"
        self.roles = {kind: f"{self.database}_{kind}" for kind in ("owner", "app", "retention")}
        self.passwords = {kind: secrets.token_urlsafe(18) for kind in self.roles}
        self.database_created = False

    # -- helpers ---------------------------------------------------------------------------

    def url_for(self, user: str | None, password: str | None = None) -> str:
        parts = urllib.parse.urlsplit(self.admin_url)
        netloc = parts.hostname or "127.0.0.1"
        if parts.port:
            netloc += f":{parts.port}"
        if user is None:
            netloc = parts.netloc
        else:
            netloc = f"{user}:{urllib.parse.quote(password or '')}@{netloc}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, "/" + self.database, "", ""))

    @contextlib.contextmanager
    def step(self, name: str):
        started = time.perf_counter()
        print(f"  … {name}", flush=True)
        yield
        took = time.perf_counter() - started
        self.timings.append((name, took))
        print(f"  ✓ {name}  ({took:.2f} s)", flush=True)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append((name, process, log))
        return process

    def check_alive(self) -> None:
        for name, process, log in self.processes:
            if process.poll() is not None:
                raise SmokeFailure(f"{name} exited with {process.returncode}; last lines of {log}:\n"
                                   + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))

    def admin_sql(self, statement: str, *, database: str | None = None) -> None:
        url = self.admin_url if database is None else self.url_for(None).rsplit("/", 1)[0] + "/" + database
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(statement)

    # -- the topology ------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "PROMETHEUS_"))}
        env.update({
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "DATABASE_URL": self.url_for(self.roles["app"], self.passwords["app"]),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "WARDEN_PRODUCTION": "1",
            "WARDEN_SECRET_KEY": secrets.token_urlsafe(48),
            "WARDEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "WARDEN_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "WARDEN_BEHIND_TLS_PROXY": "1",
            "WARDEN_VAR_DIR": str(self.tmp / "var"),
            "WARDEN_AUDIT_WITNESS_PATH": str(self.tmp / "witness" / "audit-witness.jsonl"),
            "WARDEN_AUDIT_RETENTION_QUEUE": "warden-retention",
            "WARDEN_METRICS_TOKEN": self.metrics_token,
            "WARDEN_DB_CONN_MAX_AGE": "60",
        })
        return env

    def prepare_database(self) -> None:
        with self.step("PostgreSQL: scratch database, migrations as the superuser"):
            self.admin_sql(f'CREATE DATABASE "{self.database}"')
            self.database_created = True
            env = {**self.env, "DATABASE_URL": self.url_for(None)}
            self.manage(env, "migrate", "--noinput", "--verbosity", "0")
        with self.step("PostgreSQL: setup_db_roles (owner, app, retention)"):
            env = {**self.env, "DATABASE_URL": self.url_for(None),
                   **{f"WARDEN_DB_{kind.upper()}_PASSWORD": pw for kind, pw in self.passwords.items()}}
            self.manage(env, "setup_db_roles", "--owner", self.roles["owner"], "--app", self.roles["app"],
                        "--retention", self.roles["retention"])
            with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as connection:
                try:
                    connection.execute("DELETE FROM audit_auditevent")
                except psycopg.errors.InsufficientPrivilege:
                    print(f"    the app role {self.roles['app']} may not DELETE audit events: as documented")
                else:
                    raise SmokeFailure("the app role could delete audit events")

    def manage(self, env: dict[str, str], *args: str) -> str:
        result = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600)
        if result.returncode != 0:
            raise SmokeFailure(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def start_services(self) -> None:
        with self.step("Redis"):
            self.start("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no"], self.env)
            wait_for("redis", lambda: socket.create_connection(("127.0.0.1", self.redis_port), 1).close() or True)
        with self.step("bootstrap: admin, API token, environment prod, signed bundle, OPA token (as the app role)"):
            self.tokens = json.loads(self.manage(self.env, "shell", "-c", BOOTSTRAP).strip().splitlines()[-1])
        with self.step("2 web (uvicorn) + proxy, 2 workers, beat: started and ready"):
            for index, port in enumerate(self.web_ports, 1):
                self.start(f"web-{index}", [PY, "-m", "uvicorn", "controlplane.asgi:application", "--host", "127.0.0.1",
                                            "--port", str(port), "--lifespan", "off", "--proxy-headers",
                                            "--forwarded-allow-ips", "127.0.0.1", "--no-access-log",
                                            "--timeout-graceful-shutdown", "5"], self.env)
            backends = ",".join(f"http://127.0.0.1:{port}" for port in self.web_ports)
            self.start("proxy", [PY, "-m", "uvicorn", "--app-dir", str(ROOT / "deploy" / "prodlike"), "proxy:app",
                                 "--host", "127.0.0.1", "--port", str(self.proxy_port), "--no-access-log",
                                 "--timeout-graceful-shutdown", "5"],
                       {**self.env, "PRODLIKE_BACKENDS": backends})
            for index, port in enumerate(self.worker_ports, 1):
                metrics_dir = self.tmp / f"worker-{index}-metrics"
                metrics_dir.mkdir()
                self.start(f"worker-{index}", [PY, "-m", "celery", "-A", "controlplane", "worker", "-Q", "celery",
                                               "--concurrency", "1", "--hostname", f"worker-{index}@prodlike",
                                               "--loglevel", "WARNING"],
                           {**self.env, "WARDEN_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
            self.start("beat", [PY, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "WARNING",
                                "--schedule", str(self.tmp / "celerybeat-schedule")], self.env)
            for port in self.web_ports:
                wait_for(f"web on {port}", lambda p=port: self.alive_and(
                    httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200), 120)
            for port in self.worker_ports:
                wait_for(f"worker metrics on {port}", lambda p=port: self.alive_and(
                    httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=2).status_code == 200), 120)
            wait_for("proxy", lambda: self.alive_and(self.get("/readyz").status_code == 200), 30)

    def alive_and(self, value):
        self.check_alive()
        return value

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Token {self.tokens['api_token']}"}
        response = httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        if response.status_code >= 400:
            raise SmokeFailure(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response

    def start_sidecar(self) -> None:
        with self.step("warden sidecar: deploy/opa/config.token-path.yaml, signed bundle pulled and active"):
            body = self.api("GET", "/api/v1/signing-keys/").json()
            keys = body["results"] if isinstance(body, dict) else body
            (key,) = [k for k in keys if k["is_active"]]
            token_file = self.tmp / "opa-token"
            token_file.write_text(self.tokens["opa_token"] + "\n")
            text = (ROOT / "deploy" / "opa" / "config.token-path.yaml").read_text()
            text = PLACEHOLDER.sub(lambda m: "".join(m.group(1) + line + "\n"
                                                     for line in key["public_key_pem"].strip().splitlines()), text)
            text = text.replace("/var/run/secrets/warden/opa-token", str(token_file))
            text = text.replace("/var/lib/opa", str(self.tmp / "opa"))
            config = self.tmp / "opa-config.yaml"
            config.write_text(text)
            self.start("sidecar", [PY, "-m", "agents_sdk", "sidecar", "--config", str(config),
                                   "--addr", f"127.0.0.1:{self.sidecar_port}"],
                       {**self.env, "WARDEN_URL": self.url, "WARDEN_ENVIRONMENT": ENVIRONMENT,
                        "WARDEN_BUNDLE_KEY_ID": key["kid"]})
            wait_for("sidecar bundle", lambda: self.alive_and(httpx.get(
                f"http://127.0.0.1:{self.sidecar_port}/health?bundles", timeout=2).status_code == 200), 60)

    # -- the smoke scenario ------------------------------------------------------------------

    def decide(self, tool: str, args: dict) -> dict:
        response = httpx.post(f"http://127.0.0.1:{self.sidecar_port}/v1/data/warden/decision", timeout=5, json={
            "input": {"agent": {"id": AGENT, "name": AGENT, "owner": "ops@example.com", "scopes": ["read:tickets"]},
                      "action": {"type": "tool_call", "tool": tool, "args": args},
                      "context": {"session_id": "prodlike", "environment": ENVIRONMENT,
                                  "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}})
        response.raise_for_status()
        return response.json()["result"]

    def run_agent(self, label: str) -> list[dict]:
        result = subprocess.run([PY, str(ROOT / "deploy" / "examples" / "agent.py")], cwd=ROOT, timeout=120,
                                capture_output=True, text=True, env={
                                    **{k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")},
                                    "AGENT_KEY_FILE": str(self.key_file), "AGENT_ROUNDS": "1",
                                    "AGENT_SPOOL_DIR": str(self.tmp / "agent-spool"), "WARDEN_URL": self.url,
                                    "WARDEN_ENVIRONMENT": ENVIRONMENT,
                                    "POLICY_ENGINE_URL": f"http://127.0.0.1:{self.sidecar_port}"})
        if result.returncode != 0:
            raise SmokeFailure(f"example agent failed:\n{result.stderr[-3000:]}")
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        for line in lines:
            print(f"    agent ({label}): {json.dumps(line)}")
        return lines

    def smoke(self) -> None:
        import agents_sdk as warden

        with self.step("tool catalog: ticket_read, http_request (API)"):
            for name, scopes, category in (("ticket_read", ["read:tickets"], "other"),
                                           ("http_request", ["net:http"], "network")):
                self.api("POST", "/api/v1/tools/", json={"name": name, "scopes": scopes, "category": category})
        with self.step("register an agent (SDK → proxy → web: public key only)"):
            identity = warden.AgentIdentity.create(AGENT, "ops@example.com", ["read:tickets"])
            self.key_file = identity.save(self.tmp / "agent.key")
            identity.register(self.url, self.tokens["api_token"], environments=[ENVIRONMENT])
        with self.step("the sidecar's bundle names the agent (registry change → rebuild → long poll)"):
            try:
                wait_for("agent allowed", lambda: self.alive_and(self.decide("ticket_read", {"id": 1})["allow"]), 60, 0.05)
            except SmokeFailure as failure:
                raise SmokeFailure(f"{failure}; the last decision: {self.decide('ticket_read', {'id': 1})}") from None
        with self.step("decide: the example agent through the sidecar, records signed and shipped"):
            before = self.run_agent("active")
            effects = {line["tool"]: line["effect"] for line in before if "tool" in line}
            if effects != {"ticket_read": "allow", "http_request": "deny"}:
                raise SmokeFailure(f"unexpected decisions before the suspension: {effects}")
            shipped = [line["shipped"] for line in before if "shipped" in line][0]
        with self.step("suspend (API) → the sidecar denies"):
            self.api("POST", f"/api/v1/agents/{AGENT}/suspend/", json={"reason": "make prodlike"})
            clicked = time.perf_counter()
            denied = wait_for("deny after suspension", lambda: self.alive_and(
                (d := self.decide("ticket_read", {"id": 1}))["effect"] == "deny" and d), 30, 0.01)
            print(f"    denied {time.perf_counter() - clicked:.3f} s after the suspend answered: "
                  f"{[r['rule'] for r in denied['reasons']]}")
            after = self.run_agent("suspended")
            if [line["effect"] for line in after if "tool" in line] != ["deny", "deny"]:
                raise SmokeFailure(f"the suspended agent was not denied everything: {after}")
            shipped += [line["shipped"] for line in after if "shipped" in line][0]
        with self.step(f"ship records: {shipped} signed records verified and stored by the workers"):
            def stored():
                body = self.api("GET", f"/api/v1/audit/events/?agent={AGENT}").json()
                quarantined = self.api("GET", f"/api/v1/audit/quarantine/?agent={AGENT}").json()["count"]
                if quarantined:
                    raise SmokeFailure(f"{quarantined} records quarantined")
                return body["count"] >= shipped and body["count"]
            count = wait_for("audit events stored", lambda: self.alive_and(stored()), 60, 0.1)
            print(f"    {count} audit events for {AGENT}, 0 quarantined")
        with self.step("build a report: EU AI Act gap report (worker) and its signed PDF"):
            report = self.api("POST", "/api/v1/compliance/reports/",
                              json={"framework": "eu_ai_act", "environment": ENVIRONMENT}).json()
            done = wait_for("report done", lambda: self.alive_and(
                (r := self.api("GET", f"/api/v1/compliance/reports/{report['id']}/").json())["status"]
                in ("done", "failed") and r), 180, 0.2)
            if done["status"] != "done":
                raise SmokeFailure(f"the report failed: {done}")
            pdf = self.api("GET", f"/api/v1/compliance/reports/{report['id']}/pdf/")
            print(f"    report {report['id']}: {done['status']}, PDF {len(pdf.content):,} bytes")
        with self.step("scrape /metrics: each web process (as Prometheus scrapes each pod) and a worker"):
            bearer = {"Authorization": f"Bearer {self.metrics_token}"}
            webs = [httpx.get(f"http://127.0.0.1:{port}/metrics", headers=bearer, timeout=10).text
                    for port in self.web_ports]
            worker = httpx.get(f"http://127.0.0.1:{self.worker_ports[0]}/metrics", timeout=5).text
            if self.get("/metrics").status_code != 401:
                raise SmokeFailure("/metrics answered without the token")
        for index, text in enumerate(webs, 1):
            self.print_metrics(f"web-{index} (:{self.web_ports[index - 1]})", text)
        self.print_metrics(f"worker-1 (:{self.worker_ports[0]})", worker)
        stats = self.get("/__proxy__/stats").json()
        print(f"  requests per web process (proxy): {stats}")
        if len(stats) != 2:
            raise SmokeFailure("the proxy did not reach both web processes")

    @staticmethod
    def print_metrics(label: str, text: str) -> None:
        series = [line for line in text.splitlines() if line.startswith("warden_")]
        names = sorted({re.split(r"[{ ]", line)[0] for line in series})
        print(f"  {label} /metrics: {len(series)} warden_* samples, {len(names)} series names")
        print(f"    series: {', '.join(names)}")
        for line in series:
            if "_created" in line or "_bucket" in line:
                continue
            if re.match(r"warden_(http_requests_total|opa_long_polls_held|bundle_build_seconds_(count|sum)|"
                        r"audit_|celery_tasks_total|celery_queue_length|state_up|opa_instances)", line):
                print(f"    {line}")

    # -- run and stop --------------------------------------------------------------------------

    def run(self) -> None:
        self.redis_port, self.proxy_port, self.sidecar_port = free_port(), free_port(), free_port()
        self.web_ports = [free_port(), free_port()]
        self.worker_ports = [free_port(), free_port()]
        self.url = f"http://127.0.0.1:{self.proxy_port}"
        self.metrics_token = secrets.token_urlsafe(16)
        self.env = self.environment()
        print(f"make prodlike: topology under {self.tmp} (logs: *.log), database {self.database}")
        started = time.perf_counter()
        self.prepare_database()
        self.start_services()
        self.start_sidecar()
        print("smoke scenario:")
        scenario = time.perf_counter()
        self.smoke()
        self.timings.append(("smoke scenario, all steps", time.perf_counter() - scenario))
        self.timings.append(("start to finish (before the stop)", time.perf_counter() - started))

    def stop(self) -> None:
        started = time.perf_counter()
        for _name, process, _ in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process, _ in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                print(f"  {name} ignored SIGTERM for 20 s: killed")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self.database_created:
            self.admin_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        for role in self.roles.values():
            with contextlib.suppress(psycopg.Error):
                self.admin_sql(f'DROP ROLE IF EXISTS "{role}"')
        self.timings.append(("stop: processes, database, roles", time.perf_counter() - started))


def _interrupted(*_) -> None:
    raise KeyboardInterrupt


def main() -> int:
    topology = Topology()
    # Ctrl-C and `kill` go through the same clean stop.
    signal.signal(signal.SIGTERM, _interrupted)
    status = 0
    try:
        topology.run()
    except (SmokeFailure, KeyboardInterrupt) as failure:
        print(f"make prodlike: FAILED: {failure or 'interrupted'}", file=sys.stderr)
        status = 1
    finally:
        kept = topology.tmp
        try:
            topology.stop()
        finally:
            print("\ntimings (this machine: 2 cores shared, figures are noisy):")
            for name, seconds in topology.timings:
                print(f"  {seconds:8.2f} s  {name}")
            if status == 0:
                shutil.rmtree(kept, ignore_errors=True)
                print("make prodlike: OK — every process stopped, scratch database and roles dropped")
            else:
                print(f"make prodlike: logs kept in {kept}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
