#!/usr/bin/env python3
"""Validates custom resources (ServiceMonitor, PodMonitor, PrometheusRule, ...) strictly against
the openAPIV3Schema of their CustomResourceDefinitions, for tests/deploy/check-kubernetes.sh.

    validate_crd.py --crds deploy/crds/v0.93.0 [--kube-version 1.32.0] MANIFEST...

Every document of every MANIFEST (multi-document YAML) must be of a kind one of the CRDs in
--crds defines, in a served version. The CRD schema is made into a JSON Schema that is stricter
than the API server, which drops unknown fields without a word:

- every object schema with `properties` (or with neither `properties` nor `additionalProperties`,
  which the server prunes to {}) and no `x-kubernetes-preserve-unknown-fields` gets
  `additionalProperties: false`, so a misspelled field fails instead of vanishing;
- `x-kubernetes-int-or-string` accepts an integer or a string, `nullable` accepts null,
  `format: int32` is bounded, OpenAPI 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum`
  become JSON Schema's numeric ones;
- `x-kubernetes-list-type: set` items must be unique, `map` items unique by their
  `x-kubernetes-list-map-keys`;
- patterns are Go's (RE2): a flag group like `(?i)` after the start is scoped for Python;
- `metadata` is checked against Kubernetes's ObjectMeta (from kubernetes-validate's strict
  schemas of that Kubernetes version), so `metadata.lables` fails too.

Not evaluated: `x-kubernetes-validations` (CEL rules); they are counted in the output.
Exit status: 0 when every document is valid, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import re
import sys
from typing import Any, Iterator

try:
    import jsonschema
    import referencing
    import yaml
except ImportError as e:
    sys.exit(f"a Python module is missing ({e.name}): pip install jsonschema pyyaml")

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"


def python_pattern(pattern: str) -> str:
    """A Go (RE2) `pattern` as a Python one: a flag group such as `(?i)` after the start applies
    to the rest of the expression in Go, and must be scoped in Python (`^(?i)(a|b)$` becomes
    `^(?i:(a|b)$)`); `\\z` is `\\Z`."""
    pattern = pattern.replace(r"\z", r"\Z")
    found = re.search(r"\(\?([imsU]+)\)", pattern)
    if found and found.start() > 0 and pattern[: found.start()].count("(") == pattern[: found.start()].count(")"):
        pattern = f"{pattern[: found.start()]}(?{found.group(1)}:{pattern[found.end():]})"
    re.compile(pattern)
    return pattern


def strict(schema: Any, counts: dict[str, int]) -> Any:
    """The CRD schema `schema` as a strict JSON Schema (a new object)."""
    if isinstance(schema, list):
        return [strict(item, counts) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "x-kubernetes-validations":
            counts["CEL rules not evaluated"] = counts.get("CEL rules not evaluated", 0) + len(value)
            continue
        if key in ("properties", "patternProperties", "definitions", "$defs"):
            out[key] = {name: strict(sub, counts) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = strict(value, counts)
        elif key == "pattern":
            out[key] = python_pattern(value)
        else:
            out[key] = copy.deepcopy(value)

    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    is_object = schema.get("type") == "object" or "properties" in schema
    if is_object and not preserve and "additionalProperties" not in schema:
        out["additionalProperties"] = False
        counts["objects closed"] = counts.get("objects closed", 0) + 1
    if schema.get("x-kubernetes-int-or-string") is True and "type" not in schema and "anyOf" not in schema:
        out["type"] = ["integer", "string"]
    if schema.get("format") == "int32":
        out.setdefault("minimum", -(2**31))
        out.setdefault("maximum", 2**31 - 1)
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), bool):
            if schema[bound] and plain in schema:
                out[bound] = out.pop(plain)
            else:
                del out[bound]
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if schema.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = kind + ["null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
    return out


def list_map_keys(validator: Any, keys: list[str], instance: Any, schema: dict) -> Iterator[Any]:
    """`x-kubernetes-list-type: map`: no two items with the same values of `keys`."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen: dict[tuple, int] = {}
    for index, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(
                f"items {seen[key]} and {index} have the same {', '.join(keys)}: {', '.join(key)}"
            )
        seen[key] = index


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"x-kubernetes-list-map-keys": list_map_keys}
)


def object_meta(kube_version: str) -> tuple[dict, referencing.Resource] | None:
    """ObjectMeta's strict schema and the definitions it refers to, from kubernetes-validate."""
    try:
        from kubernetes_validate import utils
    except ImportError:
        return None
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(kube_version)]
    if not version:
        sys.exit(f"kubernetes-validate has no schemas for Kubernetes {kube_version}")
    definitions = utils.schema_contents(
        f"kubernetes-json-schema/v{version[-1]}-local-strict/_definitions.json", kube_version
    )
    if OBJECT_META not in definitions.get("$defs", {}):
        sys.exit(f"kubernetes-validate's definitions for {kube_version} have no {OBJECT_META}")
    ref = {"$ref": f"{DEFINITIONS_URI}#/$defs/{OBJECT_META}"}
    return ref, referencing.Resource.from_contents(definitions)


def load_crds(directory: str) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the CRD version's openAPIV3Schema, for every served version."""
    schemas: dict[tuple[str, str], dict] = {}
    paths = sorted(glob.glob(os.path.join(directory, "*.yaml")) + glob.glob(os.path.join(directory, "*.yml")))
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    if version.get("served", True):
                        api_version = f"{spec['group']}/{version['name']}"
                        schemas[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    if not schemas:
        sys.exit(f"no CustomResourceDefinitions in {directory}")
    return schemas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crds", required=True, help="a directory of CRD YAML files")
    parser.add_argument("--kube-version", default="1.32.0", help="for ObjectMeta (default 1.32.0)")
    parser.add_argument("manifests", nargs="+")
    args = parser.parse_args()

    crds = load_crds(args.crds)
    meta = object_meta(args.kube_version)
    if meta is None:
        sys.exit("the Python module kubernetes_validate is missing: pip install kubernetes-validate")
    meta_ref, definitions = meta
    registry = referencing.Registry().with_resource(DEFINITIONS_URI, definitions)

    validators: dict[tuple[str, str], Any] = {}
    counts: dict[str, int] = {}
    failures = documents = 0
    for path in args.manifests:
        with open(path, encoding="utf-8") as f:
            items = [d for d in yaml.safe_load_all(f) if d]
        for document in items:
            documents += 1
            key = (document.get("apiVersion"), document.get("kind"))
            name = f"{path}: {key[1]}/{(document.get('metadata') or {}).get('name')}"
            if key not in crds:
                print(f"ERROR {name}: no CRD in {args.crds} defines {key[1]} in {key[0]}")
                failures += 1
                continue
            if key not in validators:
                schema = strict(crds[key], counts)
                schema["properties"]["metadata"] = meta_ref
                schema["properties"]["apiVersion"] = {"const": key[0]}
                schema["properties"]["kind"] = {"const": key[1]}
                schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
                Validator.check_schema(schema)
                validators[key] = Validator(schema, registry=registry)
            errors = sorted(validators[key].iter_errors(document), key=lambda e: list(e.absolute_path))
            for error in errors:
                where = ".".join(str(p) for p in error.absolute_path) or "(document)"
                print(f"ERROR {name}: {where}: {error.message}")
            if errors:
                failures += 1
            else:
                print(f"ok    {name}")
    notes = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    print(f"{documents - failures} of {documents} documents valid against {args.crds} ({notes})")
    return 1 if failures or not documents else 0


if __name__ == "__main__":
    sys.exit(main())
