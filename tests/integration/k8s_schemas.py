"""Strict validation of rendered manifests.

- Core kinds: `kubernetes-validate` (the Kubernetes OpenAPI schemas of current releases), strict
  (unknown fields fail).
- KEDA kinds: the CRD's `openAPIV3Schema` from KEDA v2.20.2, converted to JSON Schema with
  `additionalProperties: false` wherever the CRD lists properties and does not set
  `x-kubernetes-preserve-unknown-fields`, so an unknown field anywhere (the embedded PodTemplate
  too) fails, as does a trigger metadata value that is not a string.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def crd_to_jsonschema(node: Any) -> Any:
    """openAPIV3Schema (structural) -> strict JSON Schema (Draft 7)."""
    if isinstance(node, list):
        return [crd_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: crd_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in node
    ):
        out["additionalProperties"] = False
    # `format: int32/int64/date-time` are informative here; jsonschema ignores unknown formats.
    return out


def load_crd_schema(path: Path, kind_version: str = "v1alpha1") -> dict:
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == kind_version)
    schema = crd_to_jsonschema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    # metadata is ObjectMeta, validated by the API server; the CRD leaves it open.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def crd_errors(obj: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]


def kubernetes_errors(obj: dict) -> list[str]:
    """Errors from every Kubernetes version in KUBERNETES_VERSIONS (strict)."""
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path) or "<root>"
            errors.append(f"{version}: {obj['kind']}/{obj['metadata']['name']} {where}: {exc.message}")
    return errors


def job_from_scaledjob(scaledjob: dict) -> dict:
    """The batch/v1 Job that KEDA makes from a ScaledJob's jobTargetRef."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": scaledjob["metadata"]["name"] + "-x", "namespace": scaledjob["metadata"]["namespace"]},
        "spec": scaledjob["spec"]["jobTargetRef"],
    }
