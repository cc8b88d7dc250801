"""The Kubernetes manifests under deploy/k8s: they render, validate, and follow the rules.

Rendering uses tools/validate_k8s.py, which requires ``kubectl kustomize`` (kustomize v5):
without kubectl every test here fails with that message.
"""

from __future__ import annotations

import base64
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("validate_k8s", ROOT / "tools" / "validate_k8s.py")
vk = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("validate_k8s", vk)
_spec.loader.exec_module(vk)

SERVICE_PORTS = {"gateway": 50051, "analyzer": 50052, "recommender": 50053, "generator": 50054}
METRICS_PORTS = {"gateway": 9101, "analyzer": 9102, "recommender": 9103, "generator": 9104}
TARGETS = {t.name: t for t in vk.find_targets()}
#: Sidecar containers: no probes of their own (the NATS config reloader).
SIDECARS = {"reloader"}


@cache
def rendered(name: str) -> tuple[dict, ...]:
    return tuple(vk.render(TARGETS[name]))


def objects(name: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered(name) if o["kind"] == kind}


def generated(name: str, kind: str, base_name: str) -> dict:
    """A generated ConfigMap/Secret, whether or not kustomize hashed its name."""
    hits = [
        o
        for o in rendered(name)
        if o["kind"] == kind and re.fullmatch(rf"{base_name}(-[a-z0-9]{{10}})?", o["metadata"]["name"])
    ]
    assert len(hits) == 1, f"{kind} {base_name} in {name}: {[h['metadata']['name'] for h in hits]}"
    return hits[0]


def workloads(name: str) -> list[dict]:
    return [o for o in rendered(name) if o["kind"] in ("Deployment", "StatefulSet")]


def all_workloads() -> list[tuple[str, dict]]:
    return [(t, w) for t in TARGETS for w in workloads(t)]


def workload_params() -> list:
    """One parameter per rendered workload. Rendering happens at collection time, so without
    kubectl this is a single parameter whose test fails with the reason, instead of an error
    that would stop the collection of every other test."""
    try:
        return [pytest.param(t, w, id=f"{t}:{w['kind']}/{w['metadata']['name']}") for t, w in all_workloads()]
    except vk.KubectlMissing:
        return [pytest.param(None, None, id="kubectl-missing")]


# --------------------------------------------------------------------------- rendering


def test_targets_cover_base_overlays_and_components():
    assert {"base", "overlays/dev", "overlays/prod"} <= set(TARGETS)
    assert {"base+triton-gpu", "base+network-policies", "base+hpa-pdb", "base+monitoring", "base+tls",
            "base+tls-cert-manager", "base+nats-partners"} <= set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_rendering_is_valid(name):
    objs = [dict(o) for o in rendered(name)]
    assert objs, f"{name} rendered nothing"
    errors = vk.validate_schema(objs) + vk.check_references(objs)
    assert errors == [], "\n".join(errors)


def test_validator_rejects_unknown_fields():
    dep = dict(objects("base", "Deployment")["analyzer"])
    dep["spec"] = {**dep["spec"], "replicaz": 2}
    errors = vk.validate_schema([dep])
    assert errors and "replicaz" in errors[0]


# --------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("service,port", sorted(SERVICE_PORTS.items()))
def test_service_deployment(service, port):
    for target in TARGETS:
        dep = objects(target, "Deployment")[service]
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert c["command"] == ["python", "-m", f"musicaas_{service}"]
        assert c["image"].startswith(f"ghcr.io/musicaas/{service}:")
        assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in c["ports"]
        for probe in ("readinessProbe", "livenessProbe"):
            if "grpc" in c[probe]:
                assert c[probe]["grpc"]["port"] == port, f"{target} {service} {probe}"
            else:  # components/tls: an exec probe over TLS (kubelet's grpc probe is plaintext only)
                cmd = c[probe]["exec"]["command"]
                assert cmd[cmd.index("--port") + 1] == str(port), f"{target} {service} {probe}"
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["MUSICAAS_GRPC_PORT"] == str(port)
        refs = [ef["configMapRef"]["name"] for ef in c["envFrom"]]
        assert any(r.startswith("musicaas-config") for r in refs)
        svc = objects(target, "Service")[service]
        assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(port, "grpc")]
        # Prometheus metrics: a named port, the setting that opens it, the scrape annotations
        metrics = METRICS_PORTS[service]
        assert {"name": "metrics", "containerPort": metrics, "protocol": "TCP"} in c["ports"]
        assert env["MUSICAAS_METRICS_PORT"] == str(metrics)
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics),
                               "prometheus.io/path": "/metrics"}


def test_gateway_settings():
    (c,) = objects("base", "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert "MUSICAAS_ANALYZER_ADDR" not in env  # the gateway reaches the analyzer only through NATS
    assert env["MUSICAAS_RECOMMENDER_ADDR"]["value"] == "recommender.musicaas.svc:50053"
    assert env["MUSICAAS_GENERATOR_ADDR"]["value"] == "generator.musicaas.svc:50054"
    assert int(env["MUSICAAS_MAX_UPLOAD_BYTES"]["value"]) > 0
    assert env["MUSICAAS_API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == "api-keys"
    assert objects("base", "Service")["gateway"]["spec"]["type"] == "ClusterIP"


def test_shared_settings():
    base = generated("base", "ConfigMap", "musicaas-config")["data"]
    assert base["MUSICAAS_NATS_URL"] == "nats://nats.musicaas.svc:4222"
    assert base["MUSICAAS_GRPC_HOST"] == "0.0.0.0"
    assert base["MUSICAAS_LOG_FORMAT"] == "json"
    assert base["MUSICAAS_STREAM_REPLICAS"] == "1"
    assert generated("overlays/dev", "ConfigMap", "musicaas-config")["data"]["MUSICAAS_STREAM_REPLICAS"] == "1"
    assert generated("overlays/prod", "ConfigMap", "musicaas-config")["data"]["MUSICAAS_STREAM_REPLICAS"] == "3"


def _env(target, name):
    (c,) = objects(target, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in c.get("env") or []}


def test_backend_addresses():
    assert _env("base", "recommender")["MUSICAAS_QDRANT_URL"] == "http://qdrant.musicaas.svc:6333"
    assert _env("base", "generator")["MUSICAAS_TRITON_URL"] == "triton.musicaas.svc:8001"
    assert _env("base", "analyzer")["MUSICAAS_TRITON_URL"] == "triton.musicaas.svc:8001"


@pytest.mark.parametrize("target,workload", workload_params())
def test_workload_hardening(target, workload):
    if workload is None:
        vk.kustomize_version()  # raises KubectlMissing, naming what to install
    name = workload["metadata"]["name"]
    pod = workload["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 10001
    assert "fsGroup" in psc
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["serviceAccountName"] == name
    assert name in objects(target, "ServiceAccount")
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc.get("runAsNonRoot", psc["runAsNonRoot"]) is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "add" not in sc["capabilities"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name} {kind}"
        if c["name"] not in SIDECARS:
            assert c["readinessProbe"] and c["livenessProbe"], f"{name} {c['name']}"


def test_writable_tmp_for_services():
    for name in SERVICE_PORTS:
        pod = objects("base", "Deployment")[name]["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in vols[mounts["/tmp"]]


# --------------------------------------------------------------------------- triton


def test_triton_requests_a_gpu():
    dep = objects("base+triton-gpu", "Deployment")["triton"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert str(c["resources"]["requests"]["nvidia.com/gpu"]) == "1"
    assert str(c["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert c["command"][:3] == ["python", "-m", "musicaas_model.serve"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    svc_ports = {p["name"]: p["port"] for p in objects("base+triton-gpu", "Service")["triton"]["spec"]["ports"]}
    assert svc_ports == ports
    model = generated("base+triton-gpu", "ConfigMap", "triton-model-config")["data"]
    assert int(model["MUSICAAS_MODEL_MAX_QUEUE_DELAY_US"]) > 0
    assert int(model["MUSICAAS_MODEL_MAX_BATCH_SIZE"]) > 1
    assert "triton" not in objects("base", "Deployment")
    assert "triton" not in objects("overlays/dev", "Deployment")


# --------------------------------------------------------------------------- overlays


def test_prod_overlay():
    sts = objects("overlays/prod", "StatefulSet")
    assert sts["nats"]["spec"]["replicas"] == 3
    assert sts["qdrant"]["spec"]["replicas"] == 3
    conf = generated("overlays/prod", "ConfigMap", "nats-config")["data"]["nats.conf"]
    for i in range(3):
        assert f"nats://nats-{i}.nats-headless:6222" in conf
    assert "triton" in objects("overlays/prod", "Deployment")
    assert "default-deny-all" in objects("overlays/prod", "NetworkPolicy")
    assert set(objects("overlays/prod", "HorizontalPodAutoscaler")) == {"gateway", "analyzer", "generator"}
    # The API keys are provisioned out of band in prod, never generated.
    assert not any(n.startswith("musicaas-api-keys") for n in objects("overlays/prod", "Secret"))


def test_dev_overlay():
    sts = objects("overlays/dev", "StatefulSet")
    assert sts["nats"]["spec"]["replicas"] == 1
    assert sts["qdrant"]["spec"]["replicas"] == 1
    assert "cluster {" not in generated("overlays/dev", "ConfigMap", "nats-config")["data"]["nats.conf"]
    secret = generated("overlays/dev", "Secret", "musicaas-api-keys")
    assert base64.b64decode(secret["data"]["api-keys"]).decode()
    assert not objects("overlays/dev", "NetworkPolicy")


def test_nats_and_qdrant():
    sts = objects("base", "StatefulSet")
    nats = sts["nats"]
    assert nats["spec"]["serviceName"] == "nats-headless"
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    ports = {p["name"]: p["containerPort"] for p in nats["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"client": 4222, "cluster": 6222, "monitor": 8222}
    assert "jetstream" in generated("base", "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert objects("base", "Service")["nats-headless"]["spec"]["clusterIP"] == "None"
    qdrant = sts["qdrant"]
    ports = {p["name"]: p["containerPort"] for p in qdrant["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"http": 6333, "grpc": 6334, "p2p": 6335}
    assert qdrant["spec"]["volumeClaimTemplates"]


# --------------------------------------------------------------------------- HPA / PDB


def test_hpa_and_pdb():
    hpas = objects("base+hpa-pdb", "HorizontalPodAutoscaler")
    deps = objects("base+hpa-pdb", "Deployment")
    for name in ("gateway", "analyzer", "generator"):
        spec = hpas[name]["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert spec["metrics"][0]["resource"]["name"] == "cpu"
        assert spec["minReplicas"] >= 2
        assert "replicas" not in deps[name]["spec"], "the HPA owns the replica count"
    pdbs = objects("base+hpa-pdb", "PodDisruptionBudget")
    assert set(SERVICE_PORTS) | {"nats", "qdrant"} <= set(pdbs)


# --------------------------------------------------------------------------- network policies


def _peer_selects(peer: dict, labels: dict) -> bool:
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return False  # only same-namespace pod peers matter for these flows
    return vk._selector_matches(peer["podSelector"], labels) or peer["podSelector"] == {}


def _port_ok(rule: dict, port: int, proto: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p.get("port") == port and p.get("protocol", "TCP") == proto for p in ports)


def _selects(policy: dict, labels: dict) -> bool:
    sel = policy["spec"]["podSelector"]
    return sel == {} or vk._selector_matches(sel, labels)


def allowed(policies, src: str | None, dst: str, port: int, proto: str = "TCP") -> bool:
    """NetworkPolicy semantics for same-namespace pods labelled app.kubernetes.io/name.

    ``src=None`` means a client outside the namespace (ingress check only).
    """
    dst_l = {"app.kubernetes.io/name": dst}
    src_l = {"app.kubernetes.io/name": src} if src else None

    def direction(kind: str, subject: dict, other: dict | None) -> bool:
        rules_key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        pols = [p for p in policies if _selects(p, subject) and kind in p["spec"]["policyTypes"]]
        if not pols:
            return True
        for p in pols:
            for rule in p["spec"].get(rules_key) or []:
                peers = rule.get(peers_key)
                if not _port_ok(rule, port, proto):
                    continue
                if not peers or (other is not None and any(_peer_selects(x, other) for x in peers)):
                    return True
        return False

    ok_in = direction("Ingress", dst_l, src_l)
    ok_out = True if src_l is None else direction("Egress", src_l, dst_l)
    return ok_in and ok_out


FLOWS = [
    (None, "gateway", 50051),
    ("gateway", "recommender", 50053),
    ("gateway", "generator", 50054),
    ("gateway", "nats", 4222),
    ("analyzer", "nats", 4222),
    ("recommender", "nats", 4222),
    ("recommender", "qdrant", 6333),
    ("generator", "nats", 4222),
    ("generator", "triton", 8001),
    # the analyzer calls the musicnn tagger (learned embedding and tags)
    ("analyzer", "triton", 8001),
    # the recommender calls the text encoder (free-text search, track descriptions)
    ("recommender", "triton", 8001),
    ("nats", "nats", 6222),
    ("qdrant", "qdrant", 6335),
]
DENIED = [
    (None, "analyzer", 50052),
    # the gateway hands work to the analyzer through NATS: nobody calls its gRPC port
    ("gateway", "analyzer", 50052),
    # the recommender speaks REST to Qdrant (6333), not gRPC
    ("recommender", "qdrant", 6334),
    (None, "nats", 4222),
    (None, "qdrant", 6333),
    (None, "triton", 8001),
    ("analyzer", "qdrant", 6333),
    ("analyzer", "generator", 50054),
    ("generator", "qdrant", 6333),
    ("gateway", "qdrant", 6333),
    ("gateway", "triton", 8001),
    ("nats", "gateway", 50051),
    ("qdrant", "nats", 4222),
    ("gateway", "analyzer", 6333),
]


@pytest.mark.parametrize("src,dst,port", FLOWS)
def test_network_policy_allows(src, dst, port):
    pols = list(objects("overlays/prod", "NetworkPolicy").values())
    assert allowed(pols, src, dst, port)


@pytest.mark.parametrize("src,dst,port", DENIED)
def test_network_policy_denies(src, dst, port):
    pols = list(objects("overlays/prod", "NetworkPolicy").values())
    assert not allowed(pols, src, dst, port)


def test_everyone_reaches_dns():
    pol = objects("base+network-policies", "NetworkPolicy")["allow-dns-egress"]
    assert pol["spec"]["podSelector"] == {}
    (rule,) = pol["spec"]["egress"]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert rule["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


def test_network_policy_admits_prometheus_to_the_metrics_ports_only():
    pols = list(objects("overlays/prod", "NetworkPolicy").values())
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    prometheus = {"app.kubernetes.io/name": "prometheus"}
    for dst, port in [*METRICS_PORTS.items(), ("triton", 8002)]:
        assert ingress_from_namespace(pols, monitoring, prometheus, dst, port, "metrics"), dst
        # not from another namespace, nor from another pod of the monitoring namespace
        assert not ingress_from_namespace(pols, {"kubernetes.io/metadata.name": "default"}, prometheus, dst, port,
                                          "metrics"), dst
        assert not ingress_from_namespace(pols, monitoring, {"app.kubernetes.io/name": "grafana"}, dst, port,
                                          "metrics"), dst
    # Prometheus gets the metrics ports, not the gRPC ones
    assert not ingress_from_namespace(pols, monitoring, prometheus, "analyzer", 50052, "grpc")
    # inside the namespace, nobody scrapes anybody
    assert not allowed(pols, "analyzer", "gateway", 9101)
    assert not allowed(pols, "gateway", "analyzer", 9102)


def test_network_policy_lets_the_services_export_traces_to_the_monitoring_namespace():
    pols = list(objects("overlays/prod", "NetworkPolicy").values())
    (policy,) = [p for p in pols if p["metadata"]["name"] == "allow-otlp-egress"]
    for service in SERVICE_PORTS:
        assert _selects(policy, {"app.kubernetes.io/name": service})
    (rule,) = policy["spec"]["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 4317}]
    assert rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def ingress_from_namespace(policies, ns_labels: dict, pod_labels: dict, dst: str, port: int, port_name: str) -> bool:
    """NetworkPolicy ingress semantics for a client pod in another namespace; a rule's port
    may name the destination's container port (``port_name``) or give its number."""
    dst_l = {"app.kubernetes.io/name": dst}
    pols = [p for p in policies if _selects(p, dst_l) and "Ingress" in p["spec"]["policyTypes"]]
    if not pols:
        return True
    for p in pols:
        for rule in p["spec"].get("ingress") or []:
            if rule.get("ports") and not any(r.get("port") in (port, port_name) for r in rule["ports"]):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "namespaceSelector" not in peer:
                    continue  # a pod selector alone means this namespace
                ns = peer["namespaceSelector"]
                pod = peer.get("podSelector", {})
                if (ns == {} or vk._selector_matches(ns, ns_labels)) and (pod == {} or vk._selector_matches(pod, pod_labels)):
                    return True
    return False


# --------------------------------------------------------------------------- monitoring


@pytest.mark.parametrize("target", ["base+monitoring", "overlays/prod"])
def test_pod_monitor_scrapes_every_service_and_triton(target):
    (pm,) = objects(target, "PodMonitor").values()
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["metadata"]["namespace"] == "musicaas"
    spec = pm["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["musicaas"]}
    assert spec["jobLabel"] == "app.kubernetes.io/name"
    assert [(e["port"], e["path"]) for e in spec["podMetricsEndpoints"]] == [("metrics", "/metrics")]
    selected = {w["metadata"]["name"] for w in workloads(target)
                if vk._selector_matches(spec["selector"], w["spec"]["template"]["metadata"]["labels"])}
    assert selected == set(SERVICE_PORTS) | ({"triton"} if target == "overlays/prod" else set())
    # the schema step skips it, saying why; the reference checks do not
    notes = vk.schema_skipped(list(rendered(target)))
    assert notes and "PodMonitor/musicaas" in notes[0] and "CRD" in notes[0]
    assert not objects("base", "PodMonitor") and not objects("overlays/dev", "PodMonitor")


def test_triton_is_annotated_for_scraping():
    dep = objects("base+triton-gpu", "Deployment")["triton"]
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8002"


def _with(obj: dict, path: list, value) -> dict:
    """A deep copy of ``obj`` with ``value`` at ``path`` (keys and list indexes); None deletes."""
    import copy

    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def test_validator_checks_the_metrics_wiring_of_service_deployments():
    objs = [dict(o) for o in rendered("base+monitoring")]
    assert vk.check_references(objs) == []
    i = next(n for n, o in enumerate(objs) if o["kind"] == "Deployment" and o["metadata"]["name"] == "analyzer")
    dep = objs[i]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env_i = next(n for n, e in enumerate(c["env"]) if e["name"] == "MUSICAAS_METRICS_PORT")
    port_i = next(n for n, p in enumerate(c["ports"]) if p["name"] == "metrics")
    containers = ["spec", "template", "spec", "containers", 0]
    broken = {
        "MUSICAAS_METRICS_PORT=9999 but its port named metrics is 9102":
            _with(dep, [*containers, "env", env_i, "value"], "9999"),
        "no container port named metrics": _with(dep, [*containers, "ports", port_i, "name"], "prom"),
        "MUSICAAS_METRICS_PORT is not set": _with(dep, [*containers, "env", env_i, "name"], "MUSICAAS_OTHER"),
        "pod annotation prometheus.io/scrape=None":
            _with(dep, ["spec", "template", "metadata", "annotations", "prometheus.io/scrape"], None),
        "annotation prometheus.io/port '9103' is not a containerPort":
            _with(dep, ["spec", "template", "metadata", "annotations", "prometheus.io/port"], "9103"),
    }
    for message, bad in broken.items():
        errors = vk.check_references([*objs[:i], bad, *objs[i + 1:]])
        assert any(message in e for e in errors), (message, errors)


def test_validator_checks_what_service_and_pod_monitors_select():
    objs = [dict(o) for o in rendered("base+monitoring")]
    svc_monitor = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "analyzer", "namespace": "musicaas"},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "analyzer"}},
                 "endpoints": [{"port": "metrics"}]},
    }
    # the analyzer's Service has only its gRPC port: a ServiceMonitor on `metrics` finds nothing to scrape
    errors = vk.check_references([*objs, svc_monitor])
    assert errors == ["ServiceMonitor/analyzer: Service/analyzer has no port named metrics"]
    assert vk.check_references([*objs, _with(svc_monitor, ["spec", "endpoints", 0, "port"], "grpc")]) == []
    assert vk.check_references([*objs, _with(svc_monitor, ["spec", "selector", "matchLabels"], {"app": "x"})]) == [
        "ServiceMonitor/analyzer: selector matches no rendered Service"]
    assert "ServiceMonitor/analyzer: schema not validated" in vk.schema_skipped([svc_monitor])[0]
    assert vk.validate_schema([svc_monitor]) == []  # skipped, not failed
    i = next(n for n, o in enumerate(objs) if o["kind"] == "PodMonitor")
    pm = objs[i]
    bad_port = _with(pm, ["spec", "podMetricsEndpoints", 0, "port"], "http")
    errors = vk.check_references([*objs[:i], bad_port, *objs[i + 1:]])
    assert "PodMonitor/musicaas: Deployment/gateway has no container port named http" in errors
    nothing = _with(pm, ["spec", "selector"], {"matchLabels": {"app.kubernetes.io/name": "nobody"}})
    assert vk.check_references([*objs[:i], nothing, *objs[i + 1:]]) == [
        "PodMonitor/musicaas: selector matches no rendered pod template"]


def test_the_analyzers_tagger_is_on_only_where_the_model_server_is():
    # without Triton every upload would wait for the tagger; the triton-gpu component turns it on
    for target, on in (("base", "false"), ("overlays/dev", "false"), ("base+triton-gpu", "true"),
                       ("overlays/prod", "true")):
        config = generated(target, "ConfigMap", "musicaas-config")
        assert config["data"]["MUSICAAS_TAGGER_ENABLED"] == on, target
