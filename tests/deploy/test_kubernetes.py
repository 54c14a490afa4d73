"""The Kubernetes manifests: valid against the Kubernetes schemas (strict, offline, PyPI
kubernetes-validate), rendered as `kubectl kustomize` renders them, and holding the
security, availability and least-privilege settings docs/deploy.md promises."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from tests.deploy.conftest import DEPLOY, OVERLAYS, ROOT
from tests.deploy.kustomize import _pod_specs, render

# The oldest Kubernetes with native sidecars and the preStop sleep action on by default,
# and the newest kubernetes-validate ships.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def _key(obj):
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _by_kind(objects, kind):
    return [obj for obj in objects if obj["kind"] == kind]


def _workloads(objects):
    return [obj for obj in objects if _pod_specs(obj)]


def _containers(pod):
    return pod.get("initContainers", []) + pod.get("containers", [])


def _named(objects, kind, name):
    (found,) = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(rendered, overlay):
    assert len(rendered[overlay]) >= 20
    problems = []
    for version in VERSIONS:
        for obj in rendered[overlay]:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{version} {_key(obj)}: {error.message}")
    assert problems == []


def test_the_schema_validation_catches_a_misspelt_field(rendered):
    web = json.loads(json.dumps(_named(rendered["prod"], "Deployment", "warden-web")))
    web["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True  # capital S: not a field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (the renderer is checked where it is)")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_python_renderer_matches_kubectl_kustomize(rendered, overlay):
    output = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    theirs = {_key(obj): obj for obj in yaml.safe_load_all(output) if obj}
    ours = {_key(obj): obj for obj in rendered[overlay]}
    assert sorted(ours) == sorted(theirs)
    for key, obj in ours.items():
        assert obj == theirs[key], key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_and_bounded(rendered, overlay):
    workloads = _workloads(rendered[overlay])
    assert workloads
    for obj in workloads:
        pod = _pod_specs(obj)[0]
        where = _key(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["securityContext"].get("runAsUser", 0) != 0, where
        assert pod.get("automountServiceAccountToken") is False, where
        assert not any(pod.get(host) for host in ("hostNetwork", "hostPID", "hostIPC")), where
        assert not any("hostPath" in volume for volume in pod.get("volumes", [])), where
        for container in _containers(pod):
            at = (where, container["name"])
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, at
            assert context["readOnlyRootFilesystem"] is True, at
            assert context["capabilities"] == {"drop": ["ALL"]}, at
            assert not context.get("privileged") and context.get("runAsUser", 1) != 0, at
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, at
            name, _, tag = container["image"].rpartition(":")
            assert "/" in name and tag and tag != "latest", at


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaces_enforce_the_restricted_pod_security_standard(rendered, overlay):
    namespaces = {obj["metadata"]["name"]: obj for obj in _by_kind(rendered[overlay], "Namespace")}
    used = {obj["metadata"]["namespace"] for obj in rendered[overlay] if obj["kind"] != "Namespace"}
    assert used <= set(namespaces)
    for namespace in namespaces.values():
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _selects(policy, pod_labels):
    selector = policy["spec"]["podSelector"]
    if any(pod_labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if pod_labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_only_the_web_tier_reaches_outside(rendered, overlay):
    objects = rendered[overlay]
    policies = _by_kind(objects, "NetworkPolicy")
    deny = _named(objects, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def egress_peers(labels, namespace):
        return [(peer, rule.get("ports", [])) for policy in policies
                if policy["metadata"]["namespace"] == namespace and _selects(policy, labels)
                for rule in policy["spec"].get("egress", []) for peer in rule.get("to", [])]

    for obj in _workloads(objects):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        namespace = obj["metadata"]["namespace"]
        peers = egress_peers(labels, namespace)
        outside = [ports for peer, ports in peers if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"]
        if labels.get("app.kubernetes.io/component") == "web":
            assert outside == [[{"protocol": "TCP", "port": 443}]]
            assert "169.254.0.0/16" in _named(objects, "NetworkPolicy", "web")["spec"]["egress"][0]["to"][0]["ipBlock"]["except"]
        else:
            assert outside == [], _key(obj)
        if namespace == "warden-agents":
            # The agent and its engine: DNS, and the web tier's port, nothing else.
            assert [p for p, _ in peers if "ipBlock" in p] == []
            web = [(p, ports) for p, ports in peers if p.get("podSelector", {}).get("matchLabels", {})
                   .get("app.kubernetes.io/component") == "web"]
            assert web and all(ports == [{"protocol": "TCP", "port": 8000}] for _, ports in web)
            assert all(p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] in {"warden", "kube-system"}
                       for p, _ in peers)
    if overlay == "dev":
        agents = [p for p in policies if p["metadata"]["namespace"] == "warden-agents"]
        assert agents and all(p["spec"]["policyTypes"] == ["Ingress", "Egress"] for p in agents)
        assert all("ingress" not in p["spec"] for p in agents)  # nothing reaches an agent pod


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_real_health_endpoints(rendered, overlay, settings):
    from django.urls import resolve

    web = _named(rendered[overlay], "Deployment", "warden-web")["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/livez"
    for path in ("/readyz", "/livez", "/metrics"):
        assert resolve(path).url_name == path.strip("/")
    worker = _named(rendered[overlay], "Deployment", "warden-worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    env = {item["name"]: item for item in worker["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"]["value"].startswith("/tmp/")  # on the writable emptyDir


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_and_workers_scale_with_budgets_and_beat_is_exactly_one(rendered, overlay):
    objects = rendered[overlay]
    scaled = {hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in _by_kind(objects, "HorizontalPodAutoscaler")}
    assert set(scaled) == {"warden-web", "warden-worker"}
    assert all(hpa["spec"]["minReplicas"] >= (2 if overlay == "prod" else 1) for hpa in scaled.values())
    budgets = {pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for pdb in _by_kind(objects, "PodDisruptionBudget")}
    assert budgets == {"web", "worker"}
    beat = _named(objects, "Deployment", "warden-beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    if overlay == "prod":
        metrics = scaled["warden-worker"]["spec"]["metrics"]
        assert metrics[0]["external"]["metric"]["name"] == "warden_celery_queue_length"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_tier_connects_with_its_own_least_privilege_database_role(rendered, overlay):
    objects = rendered[overlay]

    def database_secret(container):
        (ref,) = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if e["name"] == "DATABASE_URL"]
        return ref["name"], ref["key"]

    for name in ("warden-web", "warden-worker", "warden-beat"):
        for container in _containers(_named(objects, "Deployment", name)["spec"]["template"]["spec"]):
            assert database_secret(container) == ("warden-database", "app-url"), name
    retention = _named(objects, "Deployment", "warden-retention-worker")["spec"]["template"]["spec"]["containers"][0]
    assert database_secret(retention) == ("warden-database", "retention-url")
    queue = _named(objects, "ConfigMap", "warden-config")["data"]["WARDEN_AUDIT_RETENTION_QUEUE"]
    assert retention["command"][retention["command"].index("-Q") + 1] == queue
    job = _named(objects, "Job", "warden-migrate")["spec"]["template"]["spec"]
    assert [c["command"][:3] for c in _containers(job)] == [["python", "manage.py", "migrate"],
                                                           ["python", "manage.py", "setup_db_roles"]]
    assert {database_secret(c) for c in _containers(job)} == {("warden-database-admin", "admin-url")}
    # Only the Job reads the admin Secret.
    readers = {_key(obj) for obj in _workloads(objects)
               if "warden-database-admin" in json.dumps(_pod_specs(obj)[0])}
    assert readers == {("Job", "warden", "warden-migrate")}
    if overlay == "prod":
        assert _by_kind(objects, "Secret") == []  # from the platform's secret manager, never the repository


def test_the_dev_overlay_starts_in_production_mode_with_what_it_provides(rendered):
    """The web container's environment, resolved from the rendered ConfigMaps and Secrets,
    passes the production checks (controlplane/settings/registry.py) in a fresh process."""
    objects = rendered["dev"]
    maps = {o["metadata"]["name"]: o["data"] for o in _by_kind(objects, "ConfigMap")}
    secrets = {o["metadata"]["name"]: o["stringData"] for o in _by_kind(objects, "Secret")}
    web = _named(objects, "Deployment", "warden-web")["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for source in web["envFrom"]:
        env.update(maps[source["configMapRef"]["name"]])
    for item in web["env"]:
        if "value" in item:
            value = item["value"]
            for name, known in env.items():
                value = value.replace(f"$({name})", known)
            env[item["name"]] = value
        elif "fieldRef" in item["valueFrom"]:
            env[item["name"]] = "10.1.2.3"
        elif "configMapKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = maps[ref["name"]][ref["key"]]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            if ref["key"] in secrets.get(ref["name"], {}) or not ref.get("optional"):
                env[item["name"]] = secrets[ref["name"]][ref["key"]]
    assert env["WARDEN_ALLOWED_HOSTS"] == "warden.dev.localhost,10.1.2.3"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WARDEN_", "DATABASE_URL", "REDIS_URL"))}
    probe = ("import django; django.setup(); from django.conf import settings; "
             "from controlplane.celery import app; route = app.amqp.router.route; "
             "print(settings.PRODUCTION, settings.ALLOWED_HOSTS, settings.CELERY_TASK_ALWAYS_EAGER, "
             "route({}, 'audit.retention')['queue'].name, route({}, 'audit.verify_batch')['queue'].name)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**clean, **env, "WARDEN_VAR_DIR": "/tmp/warden-deploy-check",
                                 "DJANGO_SETTINGS_MODULE": "controlplane.settings"})
    assert result.returncode == 0, result.stderr[-2000:]
    # ... and the retention job goes only to the retention worker's queue.
    assert result.stdout.split() == ["True", "['warden.dev.localhost',", "'10.1.2.3']", "False",
                                     "warden-retention", "celery"]


def test_configmaps_carry_the_repository_files_verbatim():
    maps = {o["metadata"]["name"]: o["data"] for o in render(DEPLOY / "k8s" / "agents") if o["kind"] == "ConfigMap"}
    assert maps["warden-opa-config"]["config.yaml"] == (DEPLOY / "opa" / "config.token-path.yaml").read_text()
    assert maps["warden-opa-config"]["discovery.yaml"] == (DEPLOY / "opa" / "discovery.yaml").read_text()
    assert maps["example-agent"]["agent.py"] == (DEPLOY / "examples" / "agent.py").read_text()


def test_the_example_agents_run_a_real_opa_and_warden_sidecar(rendered):
    objects = rendered["dev"]
    engines = {}
    for name in ("agent-with-opa", "agent-with-warden-sidecar"):
        pod = _named(objects, "Deployment", name)["spec"]["template"]["spec"]
        (engine,) = pod["initContainers"]
        assert engine["restartPolicy"] == "Always"  # a native sidecar: up, with a bundle, before the agent
        mounts = {m["mountPath"]: m["name"] for m in engine["volumeMounts"]}
        assert mounts["/etc/opa"] == "warden-opa-config" or mounts["/etc/opa"] == "opa-config"
        assert mounts["/var/run/secrets/warden"] == "opa-token"
        (token,) = [v for v in pod["volumes"] if v["name"] == "opa-token"]
        assert token["secret"]["items"] == [{"key": "token", "path": "opa-token"}]
        assert "/health?bundles" in json.dumps(engine["startupProbe"])
        engines[name] = engine
    opa = engines["agent-with-opa"]
    assert opa["image"].startswith("openpolicyagent/opa:1.")
    assert "--config-file=/etc/opa/config.yaml" in opa["args"] and "--addr=127.0.0.1:8181" in opa["args"]
    assert engines["agent-with-warden-sidecar"]["command"][:2] == ["warden", "sidecar"]
