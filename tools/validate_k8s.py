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
  band are exempt: ``EXTERNAL_SECRETS``), gRPC probes use a declared container
  port, and namespaced objects live in ``musicaas``; and the metrics wiring:
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
EXTERNAL_SECRETS = {"musicaas-api-keys"}

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
            errors.extend(_pod_refs(ident, pod_spec(o) or {}, names))
    return errors + check_metrics(objs, namespace)


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


def _pod_refs(ident: str, spec: dict, names: dict[str, set[str]]) -> list[str]:
    errors = []
    cms, secrets = names.get("ConfigMap", set()), names.get("Secret", set())
    sa = spec.get("serviceAccountName")
    if sa and sa not in names.get("ServiceAccount", set()):
        errors.append(f"{ident}: serviceAccount {sa} not rendered")
    wanted_cm: set[str] = set()
    wanted_secret: set[str] = set()
    for vol in spec.get("volumes") or []:
        if "configMap" in vol and not vol["configMap"].get("optional"):
            wanted_cm.add(vol["configMap"]["name"])
        if "secret" in vol and not vol["secret"].get("optional"):
            wanted_secret.add(vol["secret"]["secretName"])
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
            if "secretKeyRef" in src and not src["secretKeyRef"].get("optional"):
                wanted_secret.add(src["secretKeyRef"]["name"])
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
