"""The OpenAPI document of a service, generated from its routes' marshmallow schemas."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from shared.web import Route, openapi_path

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def _operation(entry: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": entry.method_name,
        "summary": entry.summary or entry.method_name.replace("_", " "),
        "responses": {
            str(entry.status): {
                "description": "success",
                "content": {
                    "application/json": {"schema": entry.answer_schema or {"type": "object"}}
                },
            },
            "default": {
                "description": "error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if entry.query_schema is not None:
        operation["parameters"] = [{"in": "query", "schema": entry.query_schema}]
    if entry.body_schema is not None and not entry.raw_body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": entry.body_schema}},
        }
    if not entry.public:
        operation["security"] = [{"bearer": []}]
    return operation


def build_openapi(container: Any) -> dict[str, Any]:
    spec = APISpec(
        title=f"Pumpurs {container.service_name}",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
    )
    spec.components.schema("Error", _ERROR)
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    paths: dict[str, dict[str, Any]] = {}
    for entry in sorted(container.entrypoints, key=lambda e: getattr(e, "url", "")):
        if isinstance(entry, Route):
            paths.setdefault(openapi_path(entry.url), {})[entry.method.lower()] = _operation(entry)
    for path, operations in paths.items():
        parameters = [
            {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
            for name in _path_names(path)
        ]
        spec.path(path=path, operations=operations, parameters=parameters or None)
    return spec.to_dict()


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
