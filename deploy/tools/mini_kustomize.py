"""A small renderer for the subset of kustomize that deploy/k8s uses (fallback only).

scripts/validate-deploy.sh renders with `kubectl kustomize` (kustomize v5 built in) or a
`kustomize` binary when one is on PATH; this module is used only when neither exists. Whenever
both are available, tests/deploy checks that this renderer gives the same objects as kustomize.

Supported (and nothing else; anything unknown raises an error instead of being ignored):
  resources (files and directories with a kustomization.yaml), namespace,
  labels (pairs, includeSelectors: false -> metadata.labels only), images (newName, newTag),
  patches with `path` (strategic merge: maps merge, lists of named items merge by `name`,
  other lists are replaced, null deletes) or inline JSON 6902 `patch` with a `target`
  (kind, name; ops add, replace, remove).

    python deploy/tools/mini_kustomize.py deploy/k8s/overlays/production
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

KNOWN_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "APIService",
    "PriorityClass",
}


class KustomizeError(Exception):
    pass


def _load_docs(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def _find_kustomization(folder: Path) -> Path:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (folder / name).is_file():
            return folder / name
    raise KustomizeError(f"{folder}: no kustomization.yaml")


def strategic_merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        named = all(isinstance(x, dict) and "name" in x for x in base + patch)
        if named and base:
            out = [copy.deepcopy(x) for x in base]
            index = {x["name"]: i for i, x in enumerate(out)}
            for item in patch:
                if item["name"] in index:
                    out[index[item["name"]]] = strategic_merge(out[index[item["name"]]], item)
                else:
                    out.append(copy.deepcopy(item))
            return out
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json6902(doc: dict, ops: list[dict]) -> dict:
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[idx] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[idx]
            else:
                raise KustomizeError(f"unsupported op {kind}")
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and last not in parent:
                    raise KustomizeError(f"replace of missing path {op['path']}")
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            else:
                raise KustomizeError(f"unsupported op {kind}")
    return doc


def _pod_specs(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    tpl = spec.get("template", {}).get("spec")
    return [tpl] if tpl else []


def _apply_images(doc: dict, images: list[dict]) -> None:
    for pod in _pod_specs(doc):
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            ref = c.get("image", "")
            name, tag = ref, ""
            if ":" in ref.rsplit("/", 1)[-1]:
                name, tag = ref.rsplit(":", 1)
            for img in images:
                if img["name"] == name:
                    c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}".rstrip(":")


def _matches(doc: dict, target: dict) -> bool:
    unknown = set(target) - {"kind", "name"}
    if unknown:
        raise KustomizeError(f"unsupported patch target fields {sorted(unknown)}")
    if "kind" in target and doc.get("kind") != target["kind"]:
        return False
    return not ("name" in target and doc.get("metadata", {}).get("name") != target["name"])


def build(folder: str | Path) -> list[dict]:
    folder = Path(folder)
    kfile = _find_kustomization(folder)
    with kfile.open(encoding="utf-8") as fh:
        k = yaml.safe_load(fh) or {}
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)}")
    docs: list[dict] = []
    for res in k.get("resources", []):
        path = folder / res
        docs.extend(build(path) if path.is_dir() else _load_docs(path))
    for entry in k.get("patches", []):
        if "path" in entry:
            patch_docs = _load_docs(folder / entry["path"])
            for patch in patch_docs:
                hits = [
                    i
                    for i, d in enumerate(docs)
                    if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]
                ]
                if not hits:
                    raise KustomizeError(
                        f"patch {entry['path']}: no {patch['kind']}/{patch['metadata']['name']}"
                    )
                for i in hits:
                    docs[i] = strategic_merge(docs[i], patch)
        elif "patch" in entry and "target" in entry:
            ops = yaml.safe_load(entry["patch"])
            hits = [i for i, d in enumerate(docs) if _matches(d, entry["target"])]
            if not hits:
                raise KustomizeError(f"patch target {entry['target']} matches nothing")
            for i in hits:
                docs[i] = json6902(docs[i], ops)
        else:
            raise KustomizeError(f"unsupported patch entry {entry}")
    for lab in k.get("labels", []):
        if lab.get("includeSelectors") or lab.get("includeTemplates"):
            raise KustomizeError("labels with includeSelectors/includeTemplates are not supported")
        for d in docs:
            d.setdefault("metadata", {}).setdefault("labels", {}).update(lab["pairs"])
    if k.get("images"):
        for d in docs:
            _apply_images(d, k["images"])
    if k.get("namespace"):
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    return docs


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump_all(build(argv[0]), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
