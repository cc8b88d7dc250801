"""Render and validate the musicaas Kubernetes manifests under ``deploy/k8s``.

Usage::

    python tools/validate_k8s.py                      # every combination, Kubernetes 1.30
    python tools/validate_k8s.py --k8s-version 1.31.0
    python tools/validate_k8s.py --dump overlays/prod # print one rendering as YAML

Combinations ("targets"): ``base``, every ``overlays/*`` and, for every
``components/*``, ``base+<component>`` (a throw-away kustomization holding the
base as its resource and that one component). Each is rendered with
``kubectl kustomize`` (kubectl's built-in kustomize, v5 or later; required), then

* every object is validated against the strict JSON schemas that
  ``kubernetes_validate`` ships for the pinned Kubernetes version (unknown
  fields are errors), and
* the references inside the rendering are checked: Service / PDB selectors
  match a pod template, HPA targets exist, ConfigMaps, Secrets and
  ServiceAccounts used by pods exist (Secrets documented as created out of
  band are exempt: ``EXTERNAL_SECRETS``; so are those a rendered cert-manager
  Certificate makes), the keys that pods take from rendered ConfigMaps and
  Secrets exist, gRPC probes use a declared container port, and namespaced
  objects live in ``musicaas``; the files the services are pointed at
  (``MUSICAAS_*_FILE``) lie in a mounted volume that provides them, secrets
  are mounted as directories (no ``subPath``: updates must propagate), a
  container that serves TLS has no (plaintext-only) kubelet gRPC probe, and
  a service using a TLS CA for NATS has a ``tls://`` URL to a server whose
  configuration has a ``tls`` block (``check_files``); NATS authentication
  (``check_nats_auth``): every service Deployment mounts its own nkey seed,
  and only its own, from ``musicaas-nats-users`` where
  ``MUSICAAS_NATS_NKEY_SEED_FILE`` points, and the NATS StatefulSet's
  configuration includes only relative paths that resolve to mounted files,
  with a config-reloader sidecar (shared process namespace, the server's
  pid file) that watches every included Secret file; and the metrics wiring:
  every musicaas service Deployment (``SERVICES``) declares a container port
  named ``metrics`` equal to its ``MUSICAAS_METRICS_PORT`` and to its
  ``prometheus.io/port`` annotation (with ``prometheus.io/scrape: "true"`` and
  ``prometheus.io/path: /metrics``), every scrape annotation names a declared
  port, every ServiceMonitor selects a rendered Service that has each of its
  endpoints' named ports, and every PodMonitor a pod template that has them.

Custom resources whose schemas kubernetes-validate does not ship (the
Prometheus Operator's ``SCHEMALESS_KINDS``) skip the schema step, which says
so, but not the reference checks.

One line per target is printed with its object count (and the objects whose
schema was skipped, with why); the exit status is 1 when anything failed, 2 when
kubectl (with kustomize v5) is not installed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"
NAMESPACE = "musicaas"
#: Oldest kustomize (as embedded in kubectl) whose output these checks are written for.
MIN_KUSTOMIZE_MAJOR = 5
# Secrets referenced by the manifests but created outside kustomize (documented
# in deploy/k8s/README.md); every other reference must resolve in the rendering.
EXTERNAL_SECRETS = {
    "musicaas-api-keys",       # gateway API keys
    "musicaas-nats-users",     # NATS nkey seeds, <user>.seed (natsauth k8s-secrets)
    "musicaas-nats-accounts",  # NATS accounts block, accounts.conf (natsauth k8s-secrets)
    "musicaas-qdrant",         # Qdrant API key, api-key
    "musicaas-tls",            # components/tls: tls.crt, tls.key, ca.crt (cert-manager or out of band)
}
#: Keys of the Secret a cert-manager Certificate makes (ca.crt: with a CA issuer).
CERTIFICATE_SECRET_KEYS = {"tls.crt", "tls.key", "ca.crt"}
#: The Secret with the services' NATS nkey seeds: key ``<service>.seed``.
NATS_USERS_SECRET = "musicaas-nats-users"
#: The image of the NATS config-reloader sidecar (matched as a substring).
NATS_RELOADER_IMAGE = "nats-server-config-reloader"

CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
#: The musicaas gRPC services: each Deployment serves Prometheus metrics (see check_metrics).
SERVICES = ("gateway", "analyzer", "recommender", "generator")
#: Custom resources without a schema in kubernetes-validate (it ships the built-in
#: Kubernetes API only), by apiVersion and kind, with the reason printed when skipped.
SCHEMALESS_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "Prometheus Operator CRD, no schema in kubernetes-validate",
    ("monitoring.coreos.com/v1", "PodMonitor"): "Prometheus Operator CRD, no schema in kubernetes-validate",
    ("cert-manager.io/v1", "Certificate"): "cert-manager CRD, no schema in kubernetes-validate",
    ("cert-manager.io/v1", "Issuer"): "cert-manager CRD, no schema in kubernetes-validate",
    ("cert-manager.io/v1", "ClusterIssuer"): "cert-manager CRD, no schema in kubernetes-validate",
}
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class RenderError(Exception):
    """A kustomization could not be rendered."""


class KubectlMissing(RenderError):
    """``kubectl`` (with kustomize v5 or later) is not installed."""


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """One thing to render: a kustomization directory, or the base plus one component."""

    name: str
    path: Path
    component: Path | None = None


def find_targets(k8s_dir: Path = K8S_DIR) -> list[Target]:
    targets = [Target("base", k8s_dir / "base")]
    for sub in ("overlays",):
        for d in sorted((k8s_dir / sub).iterdir()):
            if _has_kustomization(d):
                targets.append(Target(f"{sub}/{d.name}", d))
    for d in sorted((k8s_dir / "components").iterdir()):
        if _has_kustomization(d):
            targets.append(Target(f"base+{d.name}", k8s_dir / "base", component=d))
    return targets


def _has_kustomization(d: Path) -> bool:
    return any((d / name).is_file() for name in KUSTOMIZATION_FILES)


# --------------------------------------------------------------------------- rendering


def kubectl_available() -> bool:
    return shutil.which("kubectl") is not None


@functools.lru_cache(maxsize=None)
def kustomize_version() -> str:
    """The kustomize version embedded in ``kubectl`` (``v5.5.0``).

    Raises
    ------
    KubectlMissing
        When kubectl is not on PATH, or its kustomize is older than v5.
    """
    if not kubectl_available():
        raise KubectlMissing(
            "kubectl not found on PATH: install kubectl (1.27 or later, which embeds kustomize v5); "
            "the manifests are rendered with `kubectl kustomize`"
        )
    proc = subprocess.run(
        ["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True, check=False
    )
    try:
        version = json.loads(proc.stdout)["kustomizeVersion"]
    except (ValueError, KeyError):
        raise KubectlMissing(f"`kubectl version --client` reports no kustomize version: {proc.stderr.strip()}") from None
    major = re.match(r"v?(\d+)", version)
    if not major or int(major.group(1)) < MIN_KUSTOMIZE_MAJOR:
        raise KubectlMissing(f"kubectl embeds kustomize {version}; v{MIN_KUSTOMIZE_MAJOR} or later is required")
    return version


def render(target: Target) -> list[dict]:
    """Render ``target`` with ``kubectl kustomize``; the objects in document order."""
    if target.component is None:
        return _kustomize(target.path)
    # A throw-away kustomization next to nothing: paths to base and component
    # are relative because kustomize only accepts relative directory references.
    with tempfile.TemporaryDirectory(prefix="musicaas-kustomize-") as tmp:
        tmp_path = Path(tmp)
        doc = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(target.path, tmp_path)],
            "components": [os.path.relpath(target.component, tmp_path)],
        }
        (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(doc))
        return _kustomize(tmp_path)


def _kustomize(path: Path) -> list[dict]:
    kustomize_version()
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {path}: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


# --------------------------------------------------------------------------- checks


def pod_spec(obj: dict) -> dict | None:
    """The pod spec of a workload object, or None."""
    if obj.get("kind") in WORKLOAD_KINDS:
        return obj.get("spec", {}).get("template", {}).get("spec")
    if obj.get("kind") == "Pod":
        return obj.get("spec")
    return None


def validate_schema(objs: list[dict], version: str = K8S_VERSION) -> list[str]:
    """Strict schema validation of every object with ``kubernetes_validate`` (unknown
    fields are errors); returns one message per invalid object (its first error)."""
    import kubernetes_validate
    from kubernetes_validate.utils import VersionNotSupportedError

    errors = []
    for o in objs:
        ident = f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        if (o.get("apiVersion"), o.get("kind")) in SCHEMALESS_KINDS:
            continue  # reported by schema_skipped()
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = ".".join(str(p) for p in err.path)
            errors.append(f"{ident}: {where}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError as err:
            errors.append(f"{ident}: {err.message}")
        except VersionNotSupportedError as err:
            return [err.message]
    return errors


def schema_skipped(objs: list[dict]) -> list[str]:
    """One note per object that :func:`validate_schema` leaves out (``SCHEMALESS_KINDS``), with why."""
    return [
        f"{o['kind']}/{o['metadata']['name']}: schema not validated ({SCHEMALESS_KINDS[(o['apiVersion'], o['kind'])]}); "
        "references checked"
        for o in objs
        if (o.get("apiVersion"), o.get("kind")) in SCHEMALESS_KINDS
    ]


def _selector_matches(selector: dict, labels: dict) -> bool:
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        have = expr["key"] in labels
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
        if expr["operator"] == "Exists" and not have:
            return False
        if expr["operator"] == "DoesNotExist" and have:
            return False
    return True


def check_references(objs: list[dict], namespace: str = NAMESPACE) -> list[str]:
    """Cross-object consistency of one rendering; returns the error messages."""
    errors = []
    names: dict[str, set[str]] = {}
    for o in objs:
        names.setdefault(o["kind"], set()).add(o["metadata"]["name"])
        ns = o["metadata"].get("namespace")
        if o["kind"] not in CLUSTER_SCOPED_KINDS and ns != namespace:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: namespace {ns!r}, want {namespace!r}")
    templates = [
        (o, (o["spec"]["template"].get("metadata") or {}).get("labels") or {})
        for o in objs
        if o["kind"] in WORKLOAD_KINDS
    ]
    for o in objs:
        ident = f"{o['kind']}/{o['metadata']['name']}"
        kind = o["kind"]
        if kind == "Service" and o["spec"].get("selector"):
            sel = {"matchLabels": o["spec"]["selector"]}
            if not any(_selector_matches(sel, labels) for _, labels in templates):
                errors.append(f"{ident}: selector matches no pod template")
        if kind == "PodDisruptionBudget":
            if not any(_selector_matches(o["spec"]["selector"], labels) for _, labels in templates):
                errors.append(f"{ident}: selector matches no pod template")
        if kind == "HorizontalPodAutoscaler":
            ref = o["spec"]["scaleTargetRef"]
            if ref["name"] not in names.get(ref["kind"], set()):
                errors.append(f"{ident}: scale target {ref['kind']}/{ref['name']} not rendered")
        if kind in WORKLOAD_KINDS:
            sel = o["spec"]["selector"]
            own = (o["spec"]["template"].get("metadata") or {}).get("labels") or {}
            if not _selector_matches(sel, own):
                errors.append(f"{ident}: selector does not match its own pod template")
            if kind == "StatefulSet":
                svc = o["spec"].get("serviceName")
                if svc and svc not in names.get("Service", set()):
                    errors.append(f"{ident}: serviceName {svc} not rendered")
            errors.extend(_pod_refs(ident, pod_spec(o) or {}, names, _keys(objs)))
    return errors + check_metrics(objs, namespace) + check_files(objs) + check_nats_auth(objs)


def _container_ports(spec: dict) -> dict[str, int]:
    """``{name: containerPort}`` of every named port of a pod spec's containers."""
    return {p["name"]: p["containerPort"] for c in spec.get("containers") or [] for p in c.get("ports") or []
            if p.get("name")}


def check_metrics(objs: list[dict], namespace: str = NAMESPACE) -> list[str]:
    """The metrics wiring of one rendering: service Deployments, scrape annotations,
    ServiceMonitors and PodMonitors (see the module docstring); returns the error messages."""
    errors = []
    pods = [(o, (o["spec"]["template"].get("metadata") or {}), pod_spec(o) or {})
            for o in objs if o["kind"] in WORKLOAD_KINDS]
    for o, meta, spec in pods:
        ident = f"{o['kind']}/{o['metadata']['name']}"
        annotations = meta.get("annotations") or {}
        declared = {p["containerPort"] for c in spec.get("containers") or [] for p in c.get("ports") or []}
        if annotations.get("prometheus.io/scrape") == "true":
            port = annotations.get("prometheus.io/port", "")
            if not port.isdigit() or int(port) not in declared:
                errors.append(f"{ident}: annotation prometheus.io/port {port!r} is not a containerPort")
        for c in spec.get("containers") or []:
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            named = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
            if "MUSICAAS_METRICS_PORT" in env and str(named.get("metrics")) != env["MUSICAAS_METRICS_PORT"]:
                errors.append(f"{ident}: {c['name']} MUSICAAS_METRICS_PORT={env['MUSICAAS_METRICS_PORT']} but its "
                              f"port named metrics is {named.get('metrics')}")
        if o["kind"] != "Deployment" or o["metadata"]["name"] not in SERVICES:
            continue
        metrics = _container_ports(spec).get("metrics")
        if metrics is None:
            errors.append(f"{ident}: no container port named metrics")
            continue
        if not any(e["name"] == "MUSICAAS_METRICS_PORT" for c in spec.get("containers") or []
                   for e in c.get("env") or []):
            errors.append(f"{ident}: MUSICAAS_METRICS_PORT is not set (want {metrics}, its metrics port)")
        want = {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics), "prometheus.io/path": "/metrics"}
        for key, value in want.items():
            if annotations.get(key) != value:
                errors.append(f"{ident}: pod annotation {key}={annotations.get(key)!r}, want {value!r}")
    services = [o for o in objs if o["kind"] == "Service"]
    for o in objs:
        ident = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] not in ("ServiceMonitor", "PodMonitor"):
            continue
        spec = o.get("spec") or {}
        names = (spec.get("namespaceSelector") or {}).get("matchNames") or [o["metadata"].get("namespace", namespace)]
        selector = spec.get("selector")
        if selector is None:
            errors.append(f"{ident}: no selector")
            continue

        def selects(labels: dict) -> bool:
            return selector == {} or _selector_matches(selector, labels)

        if o["kind"] == "ServiceMonitor":
            chosen = [s for s in services if s["metadata"].get("namespace") in names
                      and selects(s["metadata"].get("labels") or {})]
            if not chosen:
                errors.append(f"{ident}: selector matches no rendered Service")
            for ep in spec.get("endpoints") or [{}]:
                if not ep.get("port"):
                    errors.append(f"{ident}: an endpoint names no port")
                    continue
                for svc in chosen:
                    if ep["port"] not in {p.get("name") for p in svc["spec"].get("ports") or []}:
                        errors.append(f"{ident}: Service/{svc['metadata']['name']} has no port named {ep['port']}")
        else:
            chosen = [(w, spec_) for w, meta, spec_ in pods if w["metadata"].get("namespace") in names
                      and selects(meta.get("labels") or {})]
            if not chosen:
                errors.append(f"{ident}: selector matches no rendered pod template")
            for ep in spec.get("podMetricsEndpoints") or [{}]:
                if not ep.get("port"):
                    errors.append(f"{ident}: a podMetricsEndpoint names no port")
                    continue
                for w, spec_ in chosen:
                    if ep["port"] not in _container_ports(spec_):
                        errors.append(f"{ident}: {w['kind']}/{w['metadata']['name']} has no container port named "
                                      f"{ep['port']}")
    return errors


def _keys(objs: list[dict]) -> dict[tuple[str, str], set[str]]:
    """``{(kind, name): keys}`` of every rendered ConfigMap and Secret, and of the Secrets
    that rendered cert-manager Certificates make (kind ``Secret``)."""
    out: dict[tuple[str, str], set[str]] = {}
    for o in objs:
        if o["kind"] == "ConfigMap":
            out[("ConfigMap", o["metadata"]["name"])] = {*(o.get("data") or {}), *(o.get("binaryData") or {})}
        elif o["kind"] == "Secret":
            out[("Secret", o["metadata"]["name"])] = {*(o.get("data") or {}), *(o.get("stringData") or {})}
        elif o["kind"] == "Certificate" and (o.get("spec") or {}).get("secretName"):
            out.setdefault(("Secret", o["spec"]["secretName"]), set(CERTIFICATE_SECRET_KEYS))
    return out


def _pod_refs(ident: str, spec: dict, names: dict[str, set[str]],
              keys: dict[tuple[str, str], set[str]] | None = None) -> list[str]:
    errors = []
    keys = keys or {}
    cms = names.get("ConfigMap", set())
    secrets = names.get("Secret", set()) | {name for kind, name in keys if kind == "Secret"}

    def key_ref(kind: str, name: str, key: str, where: str) -> None:
        have = keys.get((kind, name))
        if have is not None and key not in have:
            errors.append(f"{ident}: {where}: {kind} {name} has no key {key}")
    sa = spec.get("serviceAccountName")
    if sa and sa not in names.get("ServiceAccount", set()):
        errors.append(f"{ident}: serviceAccount {sa} not rendered")
    wanted_cm: set[str] = set()
    wanted_secret: set[str] = set()
    for vol in spec.get("volumes") or []:
        if "configMap" in vol and not vol["configMap"].get("optional"):
            wanted_cm.add(vol["configMap"]["name"])
            for item in vol["configMap"].get("items") or []:
                key_ref("ConfigMap", vol["configMap"]["name"], item["key"], f"volume {vol['name']}")
        if "secret" in vol and not vol["secret"].get("optional"):
            wanted_secret.add(vol["secret"]["secretName"])
            for item in vol["secret"].get("items") or []:
                key_ref("Secret", vol["secret"]["secretName"], item["key"], f"volume {vol['name']}")
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for ef in c.get("envFrom") or []:
            if "configMapRef" in ef and not ef["configMapRef"].get("optional"):
                wanted_cm.add(ef["configMapRef"]["name"])
            if "secretRef" in ef and not ef["secretRef"].get("optional"):
                wanted_secret.add(ef["secretRef"]["name"])
        for env in c.get("env") or []:
            src = env.get("valueFrom") or {}
            if "configMapKeyRef" in src and not src["configMapKeyRef"].get("optional"):
                wanted_cm.add(src["configMapKeyRef"]["name"])
                key_ref("ConfigMap", src["configMapKeyRef"]["name"], src["configMapKeyRef"]["key"],
                        f"{c['name']} env {env['name']}")
            if "secretKeyRef" in src and not src["secretKeyRef"].get("optional"):
                wanted_secret.add(src["secretKeyRef"]["name"])
                key_ref("Secret", src["secretKeyRef"]["name"], src["secretKeyRef"]["key"],
                        f"{c['name']} env {env['name']}")
        declared = {p["containerPort"] for p in c.get("ports") or []}
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(probe_name) or {}
            port = (probe.get("grpc") or {}).get("port")
            if port is not None and port not in declared:
                errors.append(f"{ident}: {c['name']} {probe_name} gRPC port {port} is not a containerPort")
    errors += [f"{ident}: ConfigMap {n} not rendered" for n in sorted(wanted_cm - cms)]
    errors += [
        f"{ident}: Secret {n} not rendered"
        for n in sorted(wanted_secret - secrets - EXTERNAL_SECRETS)
    ]
    return errors


# --------------------------------------------------------------------------- files, TLS, NATS auth


def _configmaps(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}


def _container_env(c: dict, configmaps: dict[str, dict]) -> dict[str, str | None]:
    """A container's environment as far as the rendering tells: ``envFrom`` ConfigMaps, then
    ``env`` (a ``valueFrom`` entry maps to None: set, value unknown here)."""
    env: dict[str, str | None] = {}
    for ef in c.get("envFrom") or []:
        ref = ef.get("configMapRef")
        if ref and ref.get("name") in configmaps:
            prefix = ef.get("prefix", "")
            env.update({prefix + k: v for k, v in (configmaps[ref["name"]].get("data") or {}).items()})
    for e in c.get("env") or []:
        env[e["name"]] = e.get("value") if "valueFrom" not in e else None
    return env


def _mounted_file(path: str, c: dict, volumes: dict[str, dict],
                  keys: dict[tuple[str, str], set[str]]) -> tuple[tuple[str, str, str] | None, str]:
    """Which volume of container ``c`` provides the file ``path``: ``((kind, name, key),
    "")`` for a ConfigMap or Secret volume, ``(None, "")`` for another kind of volume, or
    ``(None, why not)`` when nothing provides it (no mount, no such item or key)."""
    mounts = [m for m in c.get("volumeMounts") or []
              if path.startswith(m["mountPath"].rstrip("/") + "/") and not m.get("subPath")]
    if not mounts:
        return None, f"{path} is not in a volume mounted into {c['name']}"
    m = max(mounts, key=lambda m: len(m["mountPath"]))
    rel = path[len(m["mountPath"].rstrip("/")) + 1:]
    vol = volumes.get(m["name"]) or {}
    kind = "Secret" if "secret" in vol else "ConfigMap" if "configMap" in vol else None
    if kind is None:
        return None, ""
    src = vol["secret"] if kind == "Secret" else vol["configMap"]
    name = src.get("secretName") or src.get("name")
    if src.get("items"):
        key = next((i["key"] for i in src["items"] if i["path"] == rel), None)
        if key is None:
            return None, f"{path}: volume {m['name']} ({kind} {name}) has no item with path {rel}"
    else:
        key = rel
    have = keys.get((kind, name))
    if have is not None and key not in have:
        return None, f"{path}: {kind} {name} has no key {key}"
    return (kind, name, key), ""


_INCLUDE_RE = re.compile(r"""^\s*include\s+(?:"([^"]*)"|'([^']*)'|(\S+))""")
_FILE_KEY_RE = re.compile(r"""^\s*(cert_file|key_file|ca_file)\s*[:=]?\s*"?([^"\s]+)"?""")
_PID_RE = re.compile(r"""^\s*pid_file\s*[:=]?\s*"?([^"\s]+)"?""")


def _strip_comment(line: str) -> str:
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif not quoted and (ch == "#" or line.startswith("//", i)):
            return line[:i]
    return line


@dataclass
class NatsConfig:
    """The configuration of one nats-server container, as far as the rendering holds it."""

    path: str
    lines: list[str]  # the configuration text, includes expanded where readable, comments cut
    includes: list[tuple[str, tuple[str, str, str] | None]]  # resolved path, providing (kind, name, key)
    errors: list[str]

    @property
    def pid_file(self) -> str | None:
        return next((m.group(1) for line in self.lines if (m := _PID_RE.match(line))), None)

    @property
    def files(self) -> list[str]:
        """Paths of cert_file / key_file / ca_file anywhere in the configuration."""
        return [m.group(2) for line in self.lines if (m := _FILE_KEY_RE.match(line))]

    @property
    def has_client_tls(self) -> bool:
        """Whether a ``tls`` block sits at the top level (client connections)."""
        depth = 0
        for line in self.lines:
            if depth == 0 and re.match(r"\s*tls\s*[:=]?\s*\{", line):
                return True
            depth += sum(line.count(ch) for ch in "{[") - sum(line.count(ch) for ch in "}]")
        return False


def _nats_server_config(c: dict, volumes: dict[str, dict], keys: dict[tuple[str, str], set[str]],
                        configmaps: dict[str, dict]) -> NatsConfig | None:
    """The configuration of ``c`` when it runs nats-server with ``--config`` / ``-c``."""
    image = c.get("image", "").rsplit("@", 1)[0]
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    if repo.rsplit("/", 1)[-1] != "nats":
        return None
    args = [*(c.get("command") or []), *(c.get("args") or [])]
    path = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--config", "-c")), None)
    if path is None:
        return None
    conf = NatsConfig(path, [], [], [])

    def expand(file: str, depth: int) -> None:
        ref, err = _mounted_file(file, c, volumes, keys)
        if err:
            conf.errors.append(err)
            return
        if ref is None or ref[0] != "ConfigMap" or ref[1] not in configmaps:
            return  # a Secret (or other volume): its content is not in the rendering
        text = (configmaps[ref[1]].get("data") or {}).get(ref[2], "")
        for raw in text.splitlines():
            line = _strip_comment(raw)
            m = _INCLUDE_RE.match(line)
            if not m:
                conf.lines.append(line)
                continue
            inc = next(g for g in m.groups() if g is not None)
            if inc.startswith("/"):
                conf.errors.append(f"{file}: include {inc!r} is absolute (nats-server only accepts paths "
                                   "relative to the including file's folder)")
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(file), inc))
            target_ref, err = _mounted_file(target, c, volumes, keys)
            if err:
                conf.errors.append(f"{file}: include {inc!r}: {err}")
                continue
            conf.includes.append((target, target_ref))
            if depth < 8:
                expand(target, depth + 1)

    expand(path, 0)
    return conf


def _flag_values(args: list[str], *names: str) -> list[str]:
    """Values of a Go-style flag (``-name v``, ``--name v``, ``-name=v``) in ``args``."""
    out = []
    for i, a in enumerate(args):
        flag, eq, value = a.lstrip("-").partition("=")
        if a.startswith("-") and flag in names:
            if eq:
                out.append(value)
            elif i + 1 < len(args):
                out.append(args[i + 1])
    return out


def _is(name: str | None, wanted: str) -> bool:
    """Whether ``name`` is ``wanted``, or ``wanted`` with a kustomize generator's hash suffix."""
    return bool(name) and re.fullmatch(rf"{re.escape(wanted)}(-[a-z0-9]{{10}})?", name) is not None


def _pods(objs: list[dict]):
    for o in objs:
        if o["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(o) or {}
            yield o, f"{o['kind']}/{o['metadata']['name']}", spec, {v["name"]: v for v in spec.get("volumes") or []}


def check_files(objs: list[dict]) -> list[str]:
    """Files handed to containers, and TLS (see the module docstring); the error messages."""
    errors = []
    keys, configmaps = _keys(objs), _configmaps(objs)
    servers = [conf for _, _, spec, volumes in _pods(objs) for c in spec.get("containers") or []
               if (conf := _nats_server_config(c, volumes, keys, configmaps)) is not None]
    for o, ident, spec, volumes in _pods(objs):
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            for m in c.get("volumeMounts") or []:
                if "secret" in volumes.get(m["name"], {}) and m.get("subPath"):
                    errors.append(f"{ident}: {c['name']} mounts Secret {volumes[m['name']]['secret']['secretName']} "
                                  "with subPath: updates of the Secret never reach the file; mount the folder")
            env = _container_env(c, configmaps)
            for name, value in sorted(env.items()):
                if name.startswith("MUSICAAS_") and name.endswith("_FILE") and value:
                    _, err = _mounted_file(value, c, volumes, keys)
                    if err:
                        errors.append(f"{ident}: {c['name']} {name}: {err}")
            if env.get("MUSICAAS_TLS_CERT_FILE") and env.get("MUSICAAS_TLS_KEY_FILE"):
                for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if "grpc" in (c.get(probe_name) or {}):
                        errors.append(f"{ident}: {c['name']} serves TLS but its {probe_name} is a kubelet gRPC "
                                      "probe, which only speaks plaintext")
            if (env.get("MUSICAAS_TLS_CLIENT_AUTH") or "").lower() in ("true", "1", "yes") \
                    and not env.get("MUSICAAS_TLS_CA_FILE"):
                errors.append(f"{ident}: {c['name']} MUSICAAS_TLS_CLIENT_AUTH needs MUSICAAS_TLS_CA_FILE")
            url = env.get("MUSICAAS_NATS_URL")
            if not url:
                continue
            schemes = {u.strip().partition("://")[0] for u in url.split(",")}
            if env.get("MUSICAAS_TLS_CA_FILE") and schemes != {"tls"}:
                errors.append(f"{ident}: {c['name']} has MUSICAAS_TLS_CA_FILE but MUSICAAS_NATS_URL={url} is not tls://")
            if "tls" in schemes:
                if not env.get("MUSICAAS_TLS_CA_FILE"):
                    errors.append(f"{ident}: {c['name']} MUSICAAS_NATS_URL={url} without MUSICAAS_TLS_CA_FILE")
                if servers and not all(s.has_client_tls for s in servers):
                    errors.append(f"{ident}: {c['name']} MUSICAAS_NATS_URL={url} but the NATS configuration has "
                                  "no top-level tls block")
    return errors


def check_nats_auth(objs: list[dict]) -> list[str]:
    """NATS authentication wiring (see the module docstring); the error messages."""
    errors = []
    keys, configmaps = _keys(objs), _configmaps(objs)
    for o, ident, spec, volumes in _pods(objs):
        containers = spec.get("containers") or []
        for v in volumes.values():
            if _is((v.get("secret") or {}).get("secretName"), NATS_USERS_SECRET) and len(v["secret"].get("items") or []) != 1:
                errors.append(f"{ident}: volume {v['name']} mounts every seed of {NATS_USERS_SECRET}; give the pod only "
                              "its own (items: one key)")
        name = o["metadata"]["name"]
        if o["kind"] == "Deployment" and name in SERVICES:
            for c in containers:
                if c["name"] != name:
                    continue
                seed = _container_env(c, configmaps).get("MUSICAAS_NATS_NKEY_SEED_FILE")
                if not seed:
                    errors.append(f"{ident}: {name} MUSICAAS_NATS_NKEY_SEED_FILE is not set (NATS authentication)")
                    continue
                ref, err = _mounted_file(seed, c, volumes, keys)
                if not err and not (ref and ref[0] == "Secret" and _is(ref[1], NATS_USERS_SECRET)
                                    and ref[2] == f"{name}.seed"):
                    errors.append(f"{ident}: {name} MUSICAAS_NATS_NKEY_SEED_FILE={seed} is not its own seed "
                                  f"({NATS_USERS_SECRET} key {name}.seed)")
        for c in containers:
            conf = _nats_server_config(c, volumes, keys, configmaps)
            if conf is None:
                continue
            errors += [f"{ident}: {c['name']}: {e}" for e in conf.errors]
            watch = [conf.path, *(p for p, ref in conf.includes if ref and ref[0] == "Secret")]
            for f in conf.files:
                ref, err = _mounted_file(f, c, volumes, keys)
                if err:
                    errors.append(f"{ident}: {c['name']}: configuration file {err}")
                elif ref and ref[0] == "Secret":
                    watch.append(f)
            reloaders = [r for r in containers if NATS_RELOADER_IMAGE in r.get("image", "")]
            if not reloaders:
                if len(watch) > 1:
                    errors.append(f"{ident}: {c['name']} reads Secret files ({', '.join(watch[1:])}) but no "
                                  f"{NATS_RELOADER_IMAGE} sidecar reloads the server when they change")
                continue
            if not spec.get("shareProcessNamespace"):
                errors.append(f"{ident}: the config reloader needs shareProcessNamespace: true to signal nats-server")
            pid = conf.pid_file
            for r in reloaders:
                args = [*(r.get("command") or []), *(r.get("args") or [])]
                pids = _flag_values(args, "pid", "P")
                if pid is None:
                    errors.append(f"{ident}: {c['name']}'s configuration sets no pid_file: {r['name']} cannot find it")
                elif pids != [pid]:
                    errors.append(f"{ident}: {r['name']} -pid {pids} is not the server's pid_file {pid}")
                else:
                    def pid_volume(x: dict) -> str | None:
                        ms = [m for m in x.get("volumeMounts") or [] if pid.startswith(m["mountPath"].rstrip("/") + "/")]
                        return max(ms, key=lambda m: len(m["mountPath"]))["name"] if ms else None

                    if pid_volume(c) is None or pid_volume(c) != pid_volume(r):
                        errors.append(f"{ident}: {c['name']} and {r['name']} do not share the volume of {pid}")
                watched = _flag_values(args, "config", "c")
                for f in watch:
                    if f not in watched:
                        errors.append(f"{ident}: {r['name']} does not watch {f} (-config): changes to it are not "
                                      "reloaded")
                for f in watched:
                    _, err = _mounted_file(f, r, volumes, keys)
                    if err:
                        errors.append(f"{ident}: {r['name']} watches {err}")
    return errors


# --------------------------------------------------------------------------- main


@dataclass
class Result:
    target: Target
    objects: list[dict]
    errors: list[str]
    notes: tuple[str, ...] = ()


def check_target(target: Target, version: str = K8S_VERSION) -> Result:
    """Render one target and validate it; :class:`KubectlMissing` propagates."""
    try:
        objs = render(target)
    except KubectlMissing:
        raise
    except RenderError as exc:
        return Result(target, [], [f"render: {exc}"])
    errors = validate_schema(objs, version) + check_references(objs)
    return Result(target, objs, errors, tuple(schema_skipped(objs)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-version", default=K8S_VERSION, help="Kubernetes version to validate against")
    parser.add_argument("--dump", metavar="TARGET", help="print the rendering of one target and exit")
    args = parser.parse_args(argv)

    targets = find_targets()
    try:
        kustomize = kustomize_version()
        if args.dump:
            chosen = [t for t in targets if t.name == args.dump]
            if not chosen:
                parser.error(f"unknown target {args.dump!r}; one of {[t.name for t in targets]}")
            print(yaml.safe_dump_all(render(chosen[0]), sort_keys=False), end="")
            return 0
        results = [check_target(target, args.k8s_version) for target in targets]
    except KubectlMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    failed = 0
    for res in results:
        status = "FAIL" if res.errors else "ok  "
        print(
            f"{status} {res.target.name:<28} {len(res.objects):>3} objects"
            f"  (kubectl kustomize {kustomize}, validated against Kubernetes {args.k8s_version})"
        )
        for note in res.notes:
            print(f"       note: {note}")
        for err in res.errors:
            print(f"       {err}")
        failed += bool(res.errors)
    if failed:
        print(f"{failed} of {len(targets)} renderings failed")
        return 1
    print(f"all {len(targets)} renderings valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
