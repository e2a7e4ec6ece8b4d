"""Validate rendered manifests; run by var/tools-venv's Python (tests/deploy/tools.py).

    python validate.py SCHEMA_DIR RENDERED.yaml...

Kubernetes' own kinds are validated by kubernetes-validate (strict: unknown fields are
errors); custom resources by the schemas in SCHEMA_DIR (deploy/k8s/schemas/README.md).
Prints one JSON object, for each file {"validated": [[kind, name, "kubernetes"|"schema"], ...],
"errors": ["kind/name: where: what", ...]}. A custom kind without a schema is an error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils
from referencing import Registry
from referencing.jsonschema import DRAFT202012


def schema_name(resource: dict[str, Any]) -> str:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", resource["apiVersion"])
    return f"{resource['kind'].lower()}-{group_version}.yaml"


def registry(schema_dir: Path) -> Registry:
    common = yaml.safe_load((schema_dir / "_common.yaml").read_text())
    return Registry().with_resource("_common.yaml", DRAFT202012.create_resource(common))


def main(schema_dir: str, files: list[str]) -> dict[str, Any]:
    schemas = Path(schema_dir)
    refs = registry(schemas)
    return {name: check(Path(name), schemas, refs) for name in files}


def check(rendered: Path, schemas: Path, refs: Registry) -> dict[str, Any]:
    validated: list[list[str]] = []
    errors: list[str] = []
    for resource in yaml.safe_load_all(rendered.read_text()):
        if not resource:
            continue
        what = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        try:
            utils.validate(resource, utils.latest_version(), strict=True)
            validated.append([resource["kind"], resource["metadata"]["name"], "kubernetes"])
            continue
        except utils.ValidationError as exc:
            errors.append(f"{what}: {'.'.join(map(str, exc.path))}: {exc.message}")
            continue
        except utils.SchemaNotFoundError:
            pass
        path = schemas / schema_name(resource)
        if not path.exists():
            errors.append(f"{what}: no schema for {resource['apiVersion']} (wanted {path.name})")
            continue
        schema = yaml.safe_load(path.read_text())
        validator = jsonschema.Draft202012Validator(schema, registry=refs)
        found = sorted(validator.iter_errors(resource), key=lambda e: list(e.path))
        for error in found:
            errors.append(f"{what}: {'.'.join(map(str, error.path))}: {error.message}")
        if not found:
            validated.append([resource["kind"], resource["metadata"]["name"], "schema"])
    return {"validated": validated, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2:])))
