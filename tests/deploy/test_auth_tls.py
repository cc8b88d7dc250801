"""Secrets, NATS authentication, TLS and network policies in the rendered manifests.

* every service mounts its own NATS nkey seed, and only its own, where
  ``MUSICAAS_NATS_NKEY_SEED_FILE`` points; NATS includes the accounts Secret (mounted as a
  folder) and a config-reloader sidecar in a shared process namespace reloads it;
* Qdrant and the recommender get the API key from one Secret;
* components/tls sets the ``MUSICAAS_TLS_*`` variables on every service, with exec probes
  over TLS, and NATS serves TLS (clients and, clustered, routes);
* the network policies admit exactly the callers of each port; partners reach NATS only
  through the opt-in components/nats-partners;
* the validator's new checks catch what they are for.

Rendering uses tools/validate_k8s.py (``kubectl kustomize``, kustomize v5).
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("validate_k8s", ROOT / "tools" / "validate_k8s.py")
vk = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("validate_k8s", vk)
_spec.loader.exec_module(vk)

K8S = ROOT / "deploy" / "k8s"
SERVICES = {"gateway": 50051, "analyzer": 50052, "recommender": 50053, "generator": 50054}
PLATFORM_USERS = ("gateway", "analyzer", "recommender", "generator", "admin")
TARGETS = {t.name: t for t in vk.find_targets()}
#: prod with the opt-in partner access (the way an operator would compose it).
PROD_PARTNERS = vk.Target("prod+nats-partners", K8S / "overlays" / "prod", component=K8S / "components" / "nats-partners")
TLS_TARGETS = ("base+tls", "overlays/prod")
SEED_DIR = "/var/run/secrets/musicaas/nats"
TLS_DIR = "/var/run/secrets/musicaas/tls"
PROBE = "/etc/musicaas/probe/grpc_health_probe.py"


@cache
def rendered(name: str) -> tuple[dict, ...]:
    target = PROD_PARTNERS if name == PROD_PARTNERS.name else TARGETS[name]
    return tuple(vk.render(target))


def objects(name: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered(name) if o["kind"] == kind}


def generated(name: str, kind: str, base_name: str) -> dict | None:
    hits = [o for o in rendered(name) if o["kind"] == kind and vk._is(o["metadata"]["name"], base_name)]
    assert len(hits) <= 1
    return hits[0] if hits else None


def container(target: str, kind: str, workload: str, name: str | None = None) -> dict:
    pod = objects(target, kind)[workload]["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == (name or workload))


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env") or []}


def volumes_of(target: str, kind: str, workload: str) -> dict[str, dict]:
    return {v["name"]: v for v in objects(target, kind)[workload]["spec"]["template"]["spec"].get("volumes") or []}


def all_targets() -> list[str]:
    try:
        return sorted(TARGETS)
    except vk.KubectlMissing:  # pragma: no cover
        return []


# --------------------------------------------------------------------------- NATS seeds


@pytest.mark.parametrize("target", all_targets())
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_mounts_only_its_own_seed(target, service):
    c = container(target, "Deployment", service)
    assert env_of(c)["MUSICAAS_NATS_NKEY_SEED_FILE"]["value"] == f"{SEED_DIR}/user.seed"
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == SEED_DIR]
    assert mount["readOnly"] is True and "subPath" not in mount
    secret = volumes_of(target, "Deployment", service)[mount["name"]]["secret"]
    assert vk._is(secret["secretName"], "musicaas-nats-users")
    assert secret["items"] == [{"key": f"{service}.seed", "path": "user.seed"}]
    assert secret["defaultMode"] == 0o440


@pytest.mark.parametrize("target", all_targets())
def test_no_other_workload_sees_the_seeds(target):
    for o in rendered(target):
        spec = vk.pod_spec(o)
        if spec is None or (o["kind"] == "Deployment" and o["metadata"]["name"] in SERVICES):
            continue
        for v in spec.get("volumes") or []:
            assert not vk._is((v.get("secret") or {}).get("secretName"), "musicaas-nats-users"), o["metadata"]["name"]


def test_secrets_are_generated_in_dev_and_out_of_band_in_prod():
    for name in ("musicaas-api-keys", "musicaas-nats-users", "musicaas-nats-accounts", "musicaas-qdrant"):
        assert generated("overlays/dev", "Secret", name) is not None, name
        assert generated("overlays/prod", "Secret", name) is None, name
        assert generated("base", "Secret", name) is None, name
        assert name in vk.EXTERNAL_SECRETS
    assert "musicaas-tls" in vk.EXTERNAL_SECRETS
    assert generated("overlays/prod", "Secret", "musicaas-tls") is None
    users = generated("overlays/dev", "Secret", "musicaas-nats-users")
    assert set(users["data"]) == {f"{u}.seed" for u in PLATFORM_USERS}
    # the accounts Secret keeps its name, so that re-applying it updates it in place (reload, no roll)
    assert generated("overlays/dev", "Secret", "musicaas-nats-accounts")["metadata"]["name"] == "musicaas-nats-accounts"


def test_dev_secrets_come_from_the_committed_insecure_auth_folder():
    from musicaas.runtime import natsauth

    folder = K8S / "overlays" / "dev" / "nats-auth-insecure"
    assert "INSECURE" in (folder / "README.md").read_text()
    users = generated("overlays/dev", "Secret", "musicaas-nats-users")["data"]
    accounts = base64.b64decode(generated("overlays/dev", "Secret", "musicaas-nats-accounts")["data"]["accounts.conf"])
    for user in PLATFORM_USERS:
        seed = base64.b64decode(users[f"{user}.seed"])
        assert seed == (folder / "platform" / f"{user}.seed").read_bytes()
        assert natsauth.seed_public_key(seed).encode() in accounts
    # accounts.conf is up to date with the folder
    assert accounts.decode() == natsauth.render_accounts_config(folder)


# --------------------------------------------------------------------------- NATS config + reloader


def nats_conf(target: str) -> dict[str, str]:
    return generated(target, "ConfigMap", "nats-config")["data"]


@pytest.mark.parametrize("target", all_targets())
def test_nats_includes_the_accounts_secret_and_a_reloader_reloads_it(target):
    conf = nats_conf(target)
    assert 'include "../nats-auth/accounts.conf"' in conf["nats.conf"]
    assert not re.search(r'^\s*include\s+"/', conf["nats.conf"], re.M), "absolute includes are refused"
    pod = objects(target, "StatefulSet")["nats"]["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    vols = {v["name"]: v for v in pod["volumes"]}
    nats = next(c for c in pod["containers"] if c["name"] == "nats")
    (reloader,) = [c for c in pod["containers"] if c["name"] == "reloader"]
    assert reloader["image"].startswith("natsio/nats-server-config-reloader:")
    for c in (nats, reloader):
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        accounts = mounts["/etc/nats-auth"]
        assert "subPath" not in accounts and accounts["readOnly"] is True
        secret = vols[accounts["name"]]["secret"]
        assert vk._is(secret["secretName"], "musicaas-nats-accounts") and "items" not in secret
        assert mounts["/var/run/nats"]["name"] == "pid"
    pid = re.search(r"^pid_file:\s*(\S+)", conf["nats.conf"], re.M).group(1)
    args = reloader["args"]
    assert args[args.index("-pid") + 1] == pid
    watched = [args[i + 1] for i, a in enumerate(args) if a == "-config"]
    assert {"/etc/nats/nats.conf", "/etc/nats-auth/accounts.conf"} <= set(watched)
    sc = reloader["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsUser"] == 10001  # same user as nats-server: it may signal it


def _nats_server() -> str | None:
    candidate = Path(sys.executable).parent / "nats-server"
    return str(candidate) if candidate.exists() else shutil.which("nats-server")


@pytest.mark.parametrize("target", ["overlays/dev", "base+tls", "overlays/prod"])
def test_nats_server_accepts_the_rendered_configuration(target, tmp_path):
    """`nats-server -t` on the rendered files, laid out as the pod mounts them (the dev
    accounts Secret; a throw-away auth folder and certificate where the Secrets are out of band)."""
    server = _nats_server()
    if server is None:
        pytest.skip("nats-server not installed")
    from musicaas.runtime import natsauth
    from musicaas_cli.pki import make_local_pki

    root = tmp_path / "root"
    (root / "etc" / "nats").mkdir(parents=True)
    (root / "etc" / "nats-auth").mkdir()
    for key, text in nats_conf(target).items():
        text = text.replace("/etc/nats-tls/", f"{root}/etc/nats-tls/").replace("store_dir: /data", f"store_dir: {tmp_path}/js")
        (root / "etc" / "nats" / key).write_text(text)
    accounts = generated(target, "Secret", "musicaas-nats-accounts")
    if accounts is not None:
        (root / "etc" / "nats-auth" / "accounts.conf").write_bytes(base64.b64decode(accounts["data"]["accounts.conf"]))
    else:
        natsauth.ensure_platform_users(tmp_path / "auth")
        natsauth.issue_partner_credentials(tmp_path / "auth", "acme", tmp_path / "acme.seed")
        (root / "etc" / "nats-auth" / "accounts.conf").write_text(natsauth.render_accounts_config(tmp_path / "auth"))
    if "/etc/nats-tls/" in "".join(nats_conf(target).values()):
        files = make_local_pki(tmp_path / "pki", ["nats"], hosts=("nats.musicaas.svc",))
        (root / "etc" / "nats-tls").mkdir()
        shutil.copy(files["nats"][0], root / "etc" / "nats-tls" / "tls.crt")
        shutil.copy(files["nats"][1], root / "etc" / "nats-tls" / "tls.key")
        shutil.copy(files["ca"][0], root / "etc" / "nats-tls" / "ca.crt")
    res = subprocess.run([server, "-t", "-c", str(root / "etc" / "nats" / "nats.conf")], capture_output=True,
                         text=True, env={**os.environ, "SERVER_NAME": "nats-0"}, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------- Qdrant


@pytest.mark.parametrize("target", all_targets())
def test_qdrant_and_the_recommender_share_one_api_key_secret(target):
    qdrant = env_of(container(target, "StatefulSet", "qdrant"))["QDRANT__SERVICE__API_KEY"]["valueFrom"]["secretKeyRef"]
    rec = env_of(container(target, "Deployment", "recommender"))
    ref = rec["MUSICAAS_QDRANT_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref == qdrant and vk._is(ref["name"], "musicaas-qdrant") and ref["key"] == "api-key"
    # the URL names the Qdrant Service's REST port
    url = rec["MUSICAAS_QDRANT_URL"]["value"]
    assert url == "http://qdrant.musicaas.svc:6333"
    ports = {p["name"]: p["port"] for p in objects(target, "Service")["qdrant"]["spec"]["ports"]}
    assert ports["http"] == 6333
    # probes stay on the paths Qdrant exempts from the key
    q = container(target, "StatefulSet", "qdrant")
    assert {q[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")} <= {"/readyz", "/livez", "/healthz"}
    if target == "overlays/dev":
        assert base64.b64decode(generated(target, "Secret", "musicaas-qdrant")["data"]["api-key"])


# --------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("target", TLS_TARGETS)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_tls_component_wires_every_service(target, service):
    c = container(target, "Deployment", service)
    env = {k: v.get("value") for k, v in env_of(c).items()}
    assert env["MUSICAAS_TLS_CERT_FILE"] == f"{TLS_DIR}/tls.crt"
    assert env["MUSICAAS_TLS_KEY_FILE"] == f"{TLS_DIR}/tls.key"
    assert env["MUSICAAS_TLS_CA_FILE"] == f"{TLS_DIR}/ca.crt"
    # partners use API keys with the gateway; the internal hops are mutual TLS
    assert env["MUSICAAS_TLS_CLIENT_AUTH"] == ("false" if service == "gateway" else "true")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    vols = volumes_of(target, "Deployment", service)
    assert vols[mounts[TLS_DIR]["name"]]["secret"]["secretName"] == "musicaas-tls"
    assert "subPath" not in mounts[TLS_DIR]
    probe_cm = vols[mounts["/etc/musicaas/probe"]["name"]]["configMap"]["name"]
    script = objects(target, "ConfigMap")[probe_cm]["data"]["grpc_health_probe.py"]
    assert script == (K8S / "components" / "tls" / "grpc_health_probe.py").read_text()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in c[probe], "kubelet's grpc probe does not speak TLS"
        cmd = c[probe]["exec"]["command"]
        assert cmd[:2] == ["python", PROBE]
        assert cmd[cmd.index("--port") + 1] == str(SERVICES[service])
        assert cmd[-1] == f"{service}.musicaas.svc"
        assert ("--any-status" in cmd) == (probe != "readinessProbe")
        assert c[probe]["timeoutSeconds"] >= 5
    config = generated(target, "ConfigMap", "musicaas-config")["data"]
    assert config["MUSICAAS_NATS_URL"] == "tls://nats.musicaas.svc:4222"


@pytest.mark.parametrize("target", ["base", "overlays/dev"])
def test_no_tls_without_the_component(target):
    for service in SERVICES:
        c = container(target, "Deployment", service)
        assert not any(n.startswith("MUSICAAS_TLS_") for n in env_of(c))
        assert c["readinessProbe"]["grpc"]["port"] == SERVICES[service]
    assert generated(target, "ConfigMap", "musicaas-config")["data"]["MUSICAAS_NATS_URL"].startswith("nats://")
    assert not re.search(r"^\s*tls\s*\{", nats_conf(target)["tls.conf"], re.M)


@pytest.mark.parametrize("target", TLS_TARGETS)
def test_nats_serves_tls_and_the_reloader_watches_the_certificate(target):
    conf = nats_conf(target)
    assert 'include "tls.conf"' in conf["nats.conf"]
    assert re.search(r"^tls \{", conf["tls.conf"], re.M) and "/etc/nats-tls/tls.crt" in conf["tls.conf"]
    assert "verify: true" not in conf["tls.conf"]  # partners authenticate with nkeys, not certificates
    pod = objects(target, "StatefulSet")["nats"]["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    for c in pod["containers"]:
        (m,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/nats-tls"]
        assert vols[m["name"]]["secret"]["secretName"] == "musicaas-tls"
    reloader = next(c for c in pod["containers"] if c["name"] == "reloader")
    watched = {reloader["args"][i + 1] for i, a in enumerate(reloader["args"]) if a == "-config"}
    assert {"/etc/nats-tls/tls.crt", "/etc/nats-tls/tls.key", "/etc/nats-tls/ca.crt"} <= watched
    if target == "overlays/prod":  # routes: mutual TLS
        assert 'include "cluster-tls.conf"' in conf["nats.conf"]
        assert "verify: true" in conf["cluster-tls.conf"]


def _dns_match(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def test_cert_manager_certificate_covers_every_name_that_is_dialled():
    certs = objects("base+tls-cert-manager", "Certificate")
    cert = certs["musicaas-tls"]["spec"]
    assert cert["secretName"] == "musicaas-tls"
    assert {"server auth", "client auth"} <= set(cert["usages"])
    assert cert["issuerRef"]["name"] in objects("base+tls-cert-manager", "Issuer")
    ca_issuer = objects("base+tls-cert-manager", "Issuer")[cert["issuerRef"]["name"]]["spec"]["ca"]
    assert certs["musicaas-ca"]["spec"]["secretName"] == ca_issuer["secretName"]
    assert certs["musicaas-ca"]["spec"]["isCA"] is True
    gateway = env_of(container("overlays/prod", "Deployment", "gateway"))
    dialled = {f"{s}.musicaas.svc" for s in SERVICES}  # probes, and the gateway's peers
    dialled |= {gateway[v]["value"].rsplit(":", 1)[0] for v in ("MUSICAAS_RECOMMENDER_ADDR", "MUSICAAS_GENERATOR_ADDR")}
    config = generated("overlays/prod", "ConfigMap", "musicaas-config")["data"]
    dialled.add(config["MUSICAAS_NATS_URL"].split("://")[1].rsplit(":", 1)[0])
    dialled |= set(re.findall(r"nats://([^:\s]+):6222", nats_conf("overlays/prod")["nats.conf"]))  # routes
    for name in dialled:
        assert any(_dns_match(p, name) for p in cert["dnsNames"]), name
    # the validator accepts the Secret it makes as rendered, and skips the CRDs' schema saying so
    notes = vk.schema_skipped(list(rendered("base+tls-cert-manager")))
    assert any("Certificate/musicaas-tls" in n and "cert-manager" in n for n in notes)


# --------------------------------------------------------------------------- network policies

WORKLOADS = ("gateway", "analyzer", "recommender", "generator", "nats", "qdrant", "triton")
OUTSIDE = "outside"  # a pod in another (unlabelled) namespace


def _peer_admits(peer: dict, src: dict) -> bool:
    """Whether a NetworkPolicy peer admits ``src``: ``{"ns": labels, "pod": labels}`` for a
    pod (ns None: this namespace), or ``{"ip": address}`` for an address outside the cluster."""
    if "ipBlock" in peer:
        if "ip" not in src:
            return False
        ip = ipaddress.ip_address(src["ip"])
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if "ip" in src:
        return False
    if "namespaceSelector" in peer:
        if src["ns"] is None:
            ns_labels = {"kubernetes.io/metadata.name": "musicaas"}
        else:
            ns_labels = src["ns"]
        ns = peer["namespaceSelector"]
        if ns != {} and not vk._selector_matches(ns, ns_labels):
            return False
    elif src["ns"] is not None:
        return False  # a podSelector alone: this namespace only
    pod = peer.get("podSelector")
    return pod is None or pod == {} or vk._selector_matches(pod, src["pod"])


def _policies_for(pols, labels: dict, kind: str) -> list[dict]:
    return [p for p in pols if kind in p["spec"]["policyTypes"]
            and (p["spec"]["podSelector"] == {} or vk._selector_matches(p["spec"]["podSelector"], labels))]


def _rules_admit(pols, labels: dict, kind: str, port: int, other: dict) -> bool:
    chosen = _policies_for(pols, labels, kind)
    if not chosen:
        return True
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for p in chosen:
        for rule in p["spec"].get(key) or []:
            if rule.get("ports") and not any(r.get("port") == port and r.get("protocol", "TCP") == "TCP"
                                             for r in rule["ports"]):
                continue
            peers = rule.get(peers_key)
            if not peers or any(_peer_admits(x, other) for x in peers):
                return True
    return False


def admits(pols, src: str | dict, dst: str, port: int) -> bool:
    """Whether ``src`` (a workload of the namespace, or a peer dict as in _peer_admits)
    reaches ``dst`` (a workload of the namespace) on TCP ``port``."""
    dst_l = {"app.kubernetes.io/name": dst}
    if isinstance(src, str):
        src_l = {"app.kubernetes.io/name": src}
        if not _rules_admit(pols, src_l, "Egress", port, {"ns": None, "pod": dst_l}):
            return False
        src = {"ns": None, "pod": src_l}
    return _rules_admit(pols, dst_l, "Ingress", port, src)


#: Every internal port and exactly who may call it (in the namespace, and from outside).
CALLERS = {
    ("analyzer", 50052): set(),
    ("recommender", 50053): {"gateway"},
    ("generator", 50054): {"gateway"},
    ("nats", 4222): {"gateway", "analyzer", "recommender", "generator"},
    ("nats", 6222): {"nats"},
    ("nats", 8222): set(),
    ("qdrant", 6333): {"recommender"},
    ("qdrant", 6334): set(),
    ("qdrant", 6335): {"qdrant"},
    ("triton", 8001): {"generator", "analyzer", "recommender"},  # the symbolic model; the musicnn tagger; the text encoder
    ("triton", 8000): set(),
    **{(s, 9101 + i): set() for i, s in enumerate(SERVICES)},  # metrics: Prometheus only (other namespace)
    ("triton", 8002): set(),
    ("gateway", 50051): {OUTSIDE},  # the public entry point (no workload of the namespace calls it)
}


@pytest.mark.parametrize("target", ["overlays/prod", "base+network-policies"])
@pytest.mark.parametrize("dst,port", sorted(CALLERS))
def test_network_policies_admit_exactly_the_callers(target, dst, port):
    pols = list(objects(target, "NetworkPolicy").values())
    got = {src for src in WORKLOADS if admits(pols, src, dst, port)}
    if admits(pols, {"ns": {"kubernetes.io/metadata.name": "elsewhere"}, "pod": {"app": "x"}}, dst, port):
        got.add(OUTSIDE)
    if admits(pols, {"ip": "203.0.113.7"}, dst, port):
        got.add(OUTSIDE)
    assert got == CALLERS[(dst, port)]


def test_partner_access_to_nats_is_opt_in():
    partner_ns = {"ns": {"kubernetes.io/metadata.name": "acme", "musicaas.io/nats-partner": "true"}, "pod": {}}
    public = {"ip": "203.0.113.7"}
    prod = list(objects("overlays/prod", "NetworkPolicy").values())
    assert not admits(prod, partner_ns, "nats", 4222) and not admits(prod, public, "nats", 4222)
    assert "nats-partners" not in objects("overlays/prod", "Service")
    with_partners = list(objects(PROD_PARTNERS.name, "NetworkPolicy").values())
    assert admits(with_partners, partner_ns, "nats", 4222)
    assert admits(with_partners, public, "nats", 4222)
    for port in (6222, 8222):  # routes and monitoring stay closed
        assert not admits(with_partners, partner_ns, "nats", port)
        assert not admits(with_partners, public, "nats", port)
    # not any namespace, not the cluster's own (private) addresses, and nothing else than NATS
    assert not admits(with_partners, {"ns": {"kubernetes.io/metadata.name": "other"}, "pod": {}}, "nats", 4222)
    for private in ("10.1.2.3", "172.20.0.5", "192.168.1.1", "100.64.3.4"):
        assert not admits(with_partners, {"ip": private}, "nats", 4222), private
    for dst, port in (("qdrant", 6333), ("analyzer", 50052), ("recommender", 50053)):
        assert not admits(with_partners, partner_ns, dst, port) and not admits(with_partners, public, dst, port)
    svc = objects(PROD_PARTNERS.name, "Service")["nats-partners"]["spec"]
    assert svc["type"] == "LoadBalancer" and svc["externalTrafficPolicy"] == "Local"
    assert svc["selector"] == {"app.kubernetes.io/name": "nats"}
    assert [(p["port"], p["targetPort"]) for p in svc["ports"]] == [(4222, "client")]
    # with TLS: partners connect to a TLS port (prod includes components/tls)
    assert re.search(r"^tls \{", nats_conf(PROD_PARTNERS.name)["tls.conf"], re.M)
    errors = vk.validate_schema([dict(o) for o in rendered(PROD_PARTNERS.name)]) + vk.check_references(
        [dict(o) for o in rendered(PROD_PARTNERS.name)])
    assert errors == []


# --------------------------------------------------------------------------- the validator's checks


def _find(objs: list[dict], kind: str, name: str) -> int:
    return next(i for i, o in enumerate(objs) if o["kind"] == kind and vk._is(o["metadata"]["name"], name))


def _broken(target: str, kind: str, name: str, edit) -> list[str]:
    objs = [copy.deepcopy(o) for o in rendered(target)]
    assert vk.check_references(objs) == []
    i = _find(objs, kind, name)
    edit(objs[i], objs)
    return vk.check_references(objs)


def _pod(o: dict) -> dict:
    return o["spec"]["template"]["spec"]


def test_validator_catches_a_pod_with_every_seed_or_anothers():
    def all_seeds(o, _):
        vol = next(v for v in _pod(o)["volumes"] if v["name"] == "nats-user")
        del vol["secret"]["items"]

    errors = _broken("overlays/dev", "Deployment", "gateway", all_seeds)
    assert any("mounts every seed of musicaas-nats-users" in e for e in errors), errors

    def other_seed(o, _):
        vol = next(v for v in _pod(o)["volumes"] if v["name"] == "nats-user")
        vol["secret"]["items"] = [{"key": "admin.seed", "path": "user.seed"}]

    errors = _broken("overlays/dev", "Deployment", "gateway", other_seed)
    assert any("is not its own seed (musicaas-nats-users key gateway.seed)" in e for e in errors), errors

    def no_such_key(o, _):
        vol = next(v for v in _pod(o)["volumes"] if v["name"] == "nats-user")
        vol["secret"]["items"] = [{"key": "gatway.seed", "path": "user.seed"}]

    errors = _broken("overlays/dev", "Deployment", "gateway", no_such_key)
    assert any("has no key gatway.seed" in e for e in errors), errors

    def unmounted(o, _):
        c = _pod(o)["containers"][0]
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "nats-user"]

    errors = _broken("base", "Deployment", "analyzer", unmounted)
    assert any("MUSICAAS_NATS_NKEY_SEED_FILE" in e and "not in a volume mounted" in e for e in errors), errors


def test_validator_catches_broken_nats_reload_wiring():
    def no_share(o, _):
        _pod(o)["shareProcessNamespace"] = False

    assert any("shareProcessNamespace" in e for e in _broken("base", "StatefulSet", "nats", no_share))

    def no_reloader(o, _):
        _pod(o)["containers"] = [c for c in _pod(o)["containers"] if c["name"] != "reloader"]

    errors = _broken("base", "StatefulSet", "nats", no_reloader)
    assert any("no nats-server-config-reloader sidecar" in e for e in errors), errors

    def unwatched(o, _):
        r = next(c for c in _pod(o)["containers"] if c["name"] == "reloader")
        r["args"] = ["-pid", "/var/run/nats/nats.pid", "-config", "/etc/nats/nats.conf"]

    errors = _broken("base", "StatefulSet", "nats", unwatched)
    assert any("does not watch /etc/nats-auth/accounts.conf" in e for e in errors), errors

    def wrong_pid(o, _):
        r = next(c for c in _pod(o)["containers"] if c["name"] == "reloader")
        r["args"][1] = "/tmp/nats.pid"

    assert any("is not the server's pid_file" in e for e in _broken("base", "StatefulSet", "nats", wrong_pid))

    def sub_path(o, _):
        c = next(c for c in _pod(o)["containers"] if c["name"] == "nats")
        m = next(m for m in c["volumeMounts"] if m["name"] == "accounts")
        m["mountPath"], m["subPath"] = "/etc/nats-auth/accounts.conf", "accounts.conf"

    errors = _broken("base", "StatefulSet", "nats", sub_path)
    assert any("with subPath" in e for e in errors), errors
    assert any("include '../nats-auth/accounts.conf'" in e for e in errors), errors


def test_validator_catches_an_absolute_include():
    def absolute(o, _):
        o["data"]["nats.conf"] = o["data"]["nats.conf"].replace('"../nats-auth/accounts.conf"',
                                                                '"/etc/nats-auth/accounts.conf"')

    errors = _broken("base", "ConfigMap", "nats-config", absolute)
    assert any("is absolute" in e for e in errors), errors


def test_validator_catches_tls_mistakes():
    def grpc_probe(o, _):
        _pod(o)["containers"][0]["readinessProbe"] = {"grpc": {"port": 50053}, "periodSeconds": 10}

    errors = _broken("base+tls", "Deployment", "recommender", grpc_probe)
    assert any("serves TLS but its readinessProbe is a kubelet gRPC probe" in e for e in errors), errors

    def plain_url(o, _):
        o["data"]["MUSICAAS_NATS_URL"] = "nats://nats.musicaas.svc:4222"

    errors = _broken("base+tls", "ConfigMap", "musicaas-config", plain_url)
    assert any("has MUSICAAS_TLS_CA_FILE but MUSICAAS_NATS_URL" in e for e in errors), errors

    def no_server_tls(o, _):
        o["data"]["tls.conf"] = "# off\n"

    errors = _broken("base+tls", "ConfigMap", "nats-config", no_server_tls)
    assert any("no top-level tls block" in e for e in errors), errors

    def unmounted_cert(o, _):
        c = _pod(o)["containers"][0]
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "tls"]

    errors = _broken("base+tls", "Deployment", "gateway", unmounted_cert)
    assert any("MUSICAAS_TLS_CERT_FILE" in e and "not in a volume" in e for e in errors), errors


def test_validator_checks_keys_of_rendered_secrets():
    def wrong_key(o, _):
        env = next(e for e in _pod(o)["containers"][0]["env"] if e["name"] == "MUSICAAS_QDRANT_API_KEY")
        env["valueFrom"]["secretKeyRef"]["key"] = "apikey"

    errors = _broken("overlays/dev", "Deployment", "recommender", wrong_key)
    assert any("has no key apikey" in e for e in errors), errors
