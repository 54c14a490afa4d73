"""A small Kustomize renderer for deploy/k8s: the features those kustomizations use
(resources, patches as strategic-merge files, images), and an error for any other, so it
never silently renders something `kubectl kustomize` would render differently.

Why not kustomize itself: it is a Go binary with no PyPI or Debian package that CI can pin;
tests/deploy/test_kubernetes.py compares this renderer's output with `kubectl kustomize`
wherever kubectl is installed (it is on the development machines: kustomize v5.5.0).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}
# Strategic merge: the list fields of the built-in kinds deploy/ patches, with their merge
# keys (k8s.io/api's patchMergeKey); every other list is replaced whole, as atomic lists are.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
    "volumeMounts": "mountPath", "ports": "containerPort", "imagePullSecrets": "name",
}


class KustomizeError(Exception):
    pass


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def _identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    group = obj.get("apiVersion", "").rpartition("/")[0]
    metadata = obj.get("metadata", {})
    return group, obj.get("kind", ""), metadata.get("namespace", ""), metadata.get("name", "")


def merge(original: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge of `patch` into `original` (neither is modified)."""
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    key = MERGE_KEYS.get(field)
    if key and isinstance(original, list) and isinstance(patch, list):
        merged = copy.deepcopy(original)
        for item in patch:
            index = next((i for i, old in enumerate(merged) if old.get(key) == item.get(key)), None)
            if index is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[index] = merge(merged[index], item, "")
        return merged
    return copy.deepcopy(patch)


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj.get("kind") == "Pod":
        return [spec]
    if obj.get("kind") == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    template = spec.get("template", {})
    return [template.get("spec", {})] if isinstance(template, dict) and "spec" in template else []


def _split_image(image: str) -> tuple[str, str]:
    name, _, tag = image.partition("@")
    if tag:
        return name, "@" + tag
    slash = image.rfind("/")
    colon = image.rfind(":")
    return (image[:colon], image[colon:]) if colon > slash else (image, "")


def _set_images(objects: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    for rule in images:
        unknown = set(rule) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise KustomizeError(f"images: unsupported fields {sorted(unknown)}")
        for obj in objects:
            for pod in _pod_specs(obj):
                for container in pod.get("initContainers", []) + pod.get("containers", []):
                    name, suffix = _split_image(container["image"])
                    if name != rule["name"]:
                        continue
                    if "digest" in rule:
                        suffix = "@" + rule["digest"]
                    elif "newTag" in rule:
                        suffix = ":" + str(rule["newTag"])
                    container["image"] = rule.get("newName", name) + suffix


def render(directory: str | Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <directory>` prints (in resource order)."""
    directory = Path(directory)
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise KustomizeError(f"{directory}: fields this renderer does not implement: {sorted(unsupported)}")
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        objects.extend(render(path) if path.is_dir() else _documents(path))
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{directory}: only `patches: - path: FILE` (strategic merge) is implemented")
        for change in _documents(directory / patch["path"]):
            matches = [i for i, obj in enumerate(objects) if _identity(obj) == _identity(change)]
            if len(matches) != 1:
                raise KustomizeError(f"{directory / patch['path']}: {_identity(change)} matches {len(matches)} objects")
            objects[matches[0]] = merge(objects[matches[0]], change)
    _set_images(objects, kustomization.get("images", []))
    return objects
