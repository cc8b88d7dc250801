"""Render and validate the musicaas Kubernetes manifests under ``deploy/k8s``.

Usage::

    python tools/validate_k8s.py                      # every combination, Kubernetes 1.30
    python tools/validate_k8s.py --k8s-version 1.31.0
    python tools/validate_k8s.py --renderer python    # force the built-in renderer
    python tools/validate_k8s.py --dump overlays/prod # print one rendering as YAML

Combinations ("targets"): ``base``, every ``overlays/*`` and, for every
``components/*``, ``base+<component>`` (a throw-away kustomization holding the
base as its resource and that one component). Each is rendered with
``kubectl kustomize`` when kubectl is on PATH, otherwise with the minimal
renderer below, then

* every object is validated against the strict JSON schemas that
  ``kubernetes_validate`` ships for the pinned Kubernetes version (unknown
  fields are errors), and
* the references inside the rendering are checked: Service / PDB selectors
  match a pod template, HPA targets exist, ConfigMaps, Secrets and
  ServiceAccounts used by pods exist (Secrets documented as created out of
  band are exempt: ``EXTERNAL_SECRETS``), and namespaced objects live in
  ``musicaas``.

One line per target is printed with its object count; the exit status is 1
when anything failed.

Built-in renderer (fallback when kubectl is not installed)
-----------------------------------------------------------
It implements only the kustomize subset these manifests use and refuses
anything else (``UnsupportedKustomization``) rather than rendering it wrongly:

* ``resources`` (YAML files and directories holding a kustomization),
  ``components`` (``kind: Component``),
* ``configMapGenerator`` / ``secretGenerator`` with ``literals``, ``files``
  and ``envs``, ``behavior`` create / merge / replace,
* ``patches`` whose patch is a JSON 6902 operation list (add, replace, remove)
  with a ``target`` (group, version, kind, name as an anchored regex,
  labelSelector of ``k=v`` pairs),
* ``namespace``, ``labels`` (``pairs``; selectors and templates untouched),
  ``replicas`` and ``images`` (newName, newTag, digest).

Difference from kustomize: generated ConfigMaps and Secrets keep their plain
names (kustomize appends a content hash and rewrites the references), which
changes nothing that is validated here.
"""

from __future__ import annotations

import argparse
import base64
import copy
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
from typing import Any, Iterable

import yaml
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"
NAMESPACE = "musicaas"
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
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


class RenderError(Exception):
    """A kustomization could not be rendered."""


class UnsupportedKustomization(RenderError):
    """The built-in renderer met a kustomize feature it does not implement."""


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
            if _kustomization_file(d):
                targets.append(Target(f"{sub}/{d.name}", d))
    for d in sorted((k8s_dir / "components").iterdir()):
        if _kustomization_file(d):
            targets.append(Target(f"base+{d.name}", k8s_dir / "base", component=d))
    return targets


def _kustomization_file(d: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        if (d / name).is_file():
            return d / name
    return None


# --------------------------------------------------------------------------- rendering


def kubectl_available() -> bool:
    return shutil.which("kubectl") is not None


def render(target: Target, renderer: str = "auto") -> list[dict]:
    """Render ``target`` with ``kubectl`` or ``python``; ``auto`` picks kubectl if present."""
    if renderer == "auto":
        renderer = "kubectl" if kubectl_available() else "python"
    if renderer not in ("kubectl", "python"):
        raise ValueError(f"unknown renderer {renderer!r}")
    if target.component is None:
        return _render_dir(target.path, renderer)
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
        return _render_dir(tmp_path, renderer)


def _render_dir(path: Path, renderer: str) -> list[dict]:
    if renderer == "kubectl":
        proc = subprocess.run(
            ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RenderError(f"kubectl kustomize {path}: {proc.stderr.strip()}")
        return [d for d in yaml.safe_load_all(proc.stdout) if d]
    return PyKustomize().build(path)


class PyKustomize:
    """The minimal kustomize described in the module docstring."""

    KNOWN_FIELDS = {
        "apiVersion",
        "kind",
        "metadata",
        "resources",
        "components",
        "namespace",
        "labels",
        "configMapGenerator",
        "secretGenerator",
        "generatorOptions",
        "patches",
        "replicas",
        "images",
    }

    def build(self, path: Path) -> list[dict]:
        return self._build(path.resolve(), expect_kind="Kustomization", objs=[])

    # A Component is applied to the objects accumulated so far by its parent;
    # a Kustomization starts from nothing.
    def _build(self, path: Path, expect_kind: str, objs: list[dict]) -> list[dict]:
        kfile = _kustomization_file(path)
        if kfile is None:
            raise RenderError(f"{path}: no kustomization file")
        k = yaml.safe_load(kfile.read_text()) or {}
        kind = k.get("kind", "Kustomization")
        if kind != expect_kind:
            raise RenderError(f"{kfile}: expected kind {expect_kind}, found {kind}")
        unknown = set(k) - self.KNOWN_FIELDS
        if unknown:
            raise UnsupportedKustomization(f"{kfile}: unsupported fields {sorted(unknown)}")
        gen_opts = k.get("generatorOptions") or {}
        if set(gen_opts) - {"disableNameSuffixHash", "labels", "annotations"}:
            raise UnsupportedKustomization(f"{kfile}: unsupported generatorOptions {gen_opts}")

        for res in k.get("resources") or []:
            rp = (path / res).resolve()
            if rp.is_dir():
                objs.extend(self._build(rp, "Kustomization", []))
            elif rp.is_file():
                objs.extend(d for d in yaml.safe_load_all(rp.read_text()) if d)
            else:
                raise UnsupportedKustomization(f"{kfile}: resource {res!r} is not a local path")
        for comp in k.get("components") or []:
            objs = self._build((path / comp).resolve(), "Component", objs)

        for gen, kind_ in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
            for spec in k.get(gen) or []:
                self._generate(path, kfile, kind_, spec, gen_opts, objs)
        for patch in k.get("patches") or []:
            self._patch(path, kfile, patch, objs)
        if "namespace" in k:
            for o in objs:
                if o.get("kind") not in CLUSTER_SCOPED_KINDS:
                    o.setdefault("metadata", {})["namespace"] = k["namespace"]
        for entry in k.get("labels") or []:
            if entry.get("includeSelectors") or entry.get("includeTemplates"):
                raise UnsupportedKustomization(f"{kfile}: labels with selectors/templates")
            for o in objs:
                o.setdefault("metadata", {}).setdefault("labels", {}).update(entry.get("pairs") or {})
        for rep in k.get("replicas") or []:
            hits = [
                o
                for o in objs
                if o.get("kind") in WORKLOAD_KINDS and o["metadata"]["name"] == rep["name"]
            ]
            if not hits:
                raise RenderError(f"{kfile}: replicas: no workload named {rep['name']}")
            for o in hits:
                o["spec"]["replicas"] = rep["count"]
        for img in k.get("images") or []:
            for o in objs:
                for c in _pod_containers(o):
                    self._retag(c, img)
        return objs

    @staticmethod
    def _generate(path: Path, kfile: Path, kind: str, spec: dict, opts: dict, objs: list[dict]) -> None:
        data: dict[str, str] = {}
        for lit in spec.get("literals") or []:
            key, _, value = lit.partition("=")
            data[key] = value
        for f in spec.get("files") or []:
            key, sep, rel = f.partition("=")
            if not sep:
                key, rel = Path(f).name, f
            data[key] = (path / rel).read_text()
        for env in spec.get("envs") or []:
            for line in (path / env).read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    data[key] = value
        if set(spec) - {"name", "namespace", "behavior", "literals", "files", "envs", "type", "options"}:
            raise UnsupportedKustomization(f"{kfile}: generator fields {sorted(spec)}")
        behavior = spec.get("behavior", "create")
        name = spec["name"]
        existing = [o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name]
        if behavior == "create":
            if existing:
                raise RenderError(f"{kfile}: {kind} {name} already exists (behavior: create)")
            meta: dict[str, Any] = {"name": name}
            labels = {**(opts.get("labels") or {}), **((spec.get("options") or {}).get("labels") or {})}
            if labels:
                meta["labels"] = labels
            obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": meta}
            if kind == "Secret":
                obj["type"] = spec.get("type", "Opaque")
                obj["data"] = {key: base64.b64encode(v.encode()).decode() for key, v in data.items()}
            else:
                obj["data"] = data
            objs.append(obj)
            return
        if len(existing) != 1:
            raise RenderError(f"{kfile}: {kind} {name} to {behavior} not found")
        target = existing[0]
        if kind == "Secret":
            data = {key: base64.b64encode(v.encode()).decode() for key, v in data.items()}
        if behavior == "merge":
            target.setdefault("data", {}).update(data)
        elif behavior == "replace":
            target["data"] = data
        else:
            raise UnsupportedKustomization(f"{kfile}: generator behavior {behavior!r}")

    def _patch(self, path: Path, kfile: Path, patch: dict, objs: list[dict]) -> None:
        if "path" in patch:
            text = (path / patch["path"]).read_text()
        else:
            text = patch.get("patch", "")
        ops = yaml.safe_load(text)
        if not isinstance(ops, list) or "target" not in patch:
            raise UnsupportedKustomization(
                f"{kfile}: only JSON 6902 patches with a target are supported"
            )
        target = patch["target"]
        if set(target) - {"group", "version", "kind", "name", "labelSelector"}:
            raise UnsupportedKustomization(f"{kfile}: patch target {target}")
        hits = [o for o in objs if _matches(o, target)]
        if not hits:
            raise RenderError(f"{kfile}: patch target {target} matched nothing")
        for o in hits:
            for op in ops:
                _json_patch(o, op, kfile)

    @staticmethod
    def _retag(container: dict, img: dict) -> None:
        image = container.get("image", "")
        m = re.match(r"^(?P<name>[^@]+?)(?::(?P<tag>[^:/@]+))?(?:@(?P<digest>.+))?$", image)
        if not m or m.group("name") != img["name"]:
            return
        name = img.get("newName", m.group("name"))
        if "digest" in img:
            container["image"] = f"{name}@{img['digest']}"
        elif "newTag" in img:
            container["image"] = f"{name}:{img['newTag']}"
        else:
            rest = f":{m.group('tag')}" if m.group("tag") else ""
            rest += f"@{m.group('digest')}" if m.group("digest") else ""
            container["image"] = name + rest


def _matches(obj: dict, target: dict) -> bool:
    api = obj.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    if "kind" in target and obj.get("kind") != target["kind"]:
        return False
    if "group" in target and group != target["group"]:
        return False
    if "version" in target and version != target["version"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], obj["metadata"]["name"]):
        return False
    if "labelSelector" in target:
        labels = obj["metadata"].get("labels") or {}
        for pair in target["labelSelector"].split(","):
            key, _, value = pair.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _json_patch(obj: dict, op: dict, where: Path) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
    parent: Any = obj
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    last = parts[-1]
    kind = op["op"]
    try:
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[idx] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[idx]
            else:
                raise UnsupportedKustomization(f"{where}: JSON patch op {kind!r}")
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and last not in parent:
                    raise KeyError(last)
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            else:
                raise UnsupportedKustomization(f"{where}: JSON patch op {kind!r}")
    except (KeyError, IndexError) as exc:
        raise RenderError(f"{where}: JSON patch {op} failed on {obj['metadata']['name']}: {exc}")


# --------------------------------------------------------------------------- checks


def pod_spec(obj: dict) -> dict | None:
    """The pod spec of a workload object, or None."""
    if obj.get("kind") in WORKLOAD_KINDS:
        return obj.get("spec", {}).get("template", {}).get("spec")
    if obj.get("kind") == "Pod":
        return obj.get("spec")
    return None


def _pod_containers(obj: dict) -> Iterable[dict]:
    spec = pod_spec(obj) or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def validate_schema(objs: list[dict], version: str = K8S_VERSION) -> list[str]:
    """Strict OpenAPI-schema validation of every object; returns the error messages.

    Same schemas and semantics as ``kubernetes_validate.validate(obj, version,
    strict=True)``, with the compiled validators cached (the library re-reads
    its large definitions file for every object).
    """
    errors = []
    for o in objs:
        ident = f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        try:
            validator = _validator(o["apiVersion"], o["kind"], version)
        except LookupError as exc:
            errors.append(f"{ident}: {exc}")
            continue
        for err in sorted(validator.iter_errors(o), key=lambda e: list(map(str, e.path))):
            where = ".".join(str(p) for p in err.path)
            errors.append(f"{ident}: {where}: {err.message}")
    return errors


@functools.lru_cache(maxsize=None)
def _validator(api_version: str, kind: str, version: str):
    import jsonschema
    import referencing
    from kubernetes_validate import utils as kv

    wanted = kv.major_minor(version.lstrip("v"))
    known = [v for v in kv.all_versions() if Version(kv.major_minor(v)) <= Version(wanted)]
    if not known or Version(wanted) > Version(kv.major_minor(kv.latest_version())):
        raise LookupError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    schema_dir = f"kubernetes-json-schema/v{known[-1]}-local-strict"
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv.schema_contents(f"{schema_dir}/{kind.lower()}-{api}.json", version)
    except FileNotFoundError:
        raise LookupError(f"no schema for {kind} {api_version} in Kubernetes {version}") from None
    definitions = _definitions(schema_dir, version)
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = definitions @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=None)
def _definitions(schema_dir: str, version: str):
    import referencing
    from kubernetes_validate import utils as kv

    return referencing.Resource.from_contents(kv.schema_contents(f"{schema_dir}/_definitions.json", version))


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
    renderer: str
    objects: list[dict]
    errors: list[str]


def check_target(target: Target, renderer: str = "auto", version: str = K8S_VERSION) -> Result:
    used = renderer if renderer != "auto" else ("kubectl" if kubectl_available() else "python")
    try:
        objs = render(target, used)
    except RenderError as exc:
        return Result(target, used, [], [f"render: {exc}"])
    errors = validate_schema(objs, version) + check_references(objs)
    return Result(target, used, objs, errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-version", default=K8S_VERSION, help="Kubernetes version to validate against")
    parser.add_argument("--renderer", choices=("auto", "kubectl", "python"), default="auto")
    parser.add_argument("--dump", metavar="TARGET", help="print the rendering of one target and exit")
    args = parser.parse_args(argv)

    targets = find_targets()
    if args.dump:
        chosen = [t for t in targets if t.name == args.dump]
        if not chosen:
            parser.error(f"unknown target {args.dump!r}; one of {[t.name for t in targets]}")
        print(yaml.safe_dump_all(render(chosen[0], args.renderer), sort_keys=False), end="")
        return 0

    failed = 0
    for target in targets:
        res = check_target(target, args.renderer, args.k8s_version)
        status = "FAIL" if res.errors else "ok  "
        print(
            f"{status} {target.name:<28} {len(res.objects):>3} objects"
            f"  (rendered with {res.renderer}, validated against Kubernetes {args.k8s_version})"
        )
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
