"""The OpenAPI document of a service, generated from its routes' marshmallow schemas."""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from shared.web import JSON, Route, openapi_path

# Money travels as a decimal string in euros ("12.50", shared/api.md), never a JSON number:
# answers dump it as a string, and requests name it ..._eur.
MONEY = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,2})?$"}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# The path converters of our routes, as OpenAPI parameter schemas.
_CONVERTERS = {
    "uuid": {"type": "string", "format": "uuid"},
    "int": {"type": "integer"},
}
_PATH_VALUE = re.compile(r"<(?:([a-z]+):)?([a-z_]+)>")

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


def _content(types: tuple[str, ...], schema: Any) -> dict[str, Any]:
    """JSON has its schema; any other media type (CSV, a spreadsheet, metrics) is text or bytes."""
    return {media: {"schema": schema if media == JSON else {"type": "string"}} for media in types}


def _operation(entry: Route) -> dict[str, Any]:
    answer = entry.answer_schema or {"type": "object"}
    operation: dict[str, Any] = {
        "operationId": entry.method_name,
        "summary": entry.summary or entry.method_name.replace("_", " "),
        "responses": {
            str(entry.status): {
                "description": "success",
                "content": _content(entry.answer_types, answer),
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
            "content": {JSON: {"schema": entry.body_schema}},
        }
    elif entry.raw_body:
        operation["requestBody"] = {
            "required": True,
            "content": _content(entry.body_types, {"type": "string"}),
        }
        if entry.body_description:
            operation["requestBody"]["description"] = entry.body_description
    if not entry.public:
        operation["security"] = [{"bearer": []}]
    return operation


def _decimal(converter: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> Any:
    """Money as a decimal string, other decimals (hours) as numbers; apispec would write
    a Decimal's bounds as strings, which no OpenAPI reader accepts."""
    if not isinstance(field, fields.Decimal):
        return {}
    bounds = {name: ret.pop(name) for name in _BOUNDS if name in ret}
    if field.as_string or (field.name or "").endswith("_eur"):
        return _money(bounds)
    return {name: float(value) for name, value in bounds.items()}


def _money(bounds: dict[str, Any]) -> dict[str, Any]:
    """A string has no numeric bounds: the pattern keeps below the maximum's digits and
    above zero where negatives are refused; the service checks the rest (400)."""
    if not bounds:
        return dict(MONEY)
    sign = "-?" if bounds.get("minimum", 0) < 0 else ""
    digits = len(str(int(bounds["maximum"]))) - 1 if "maximum" in bounds else None
    whole = f"[0-9]{{1,{digits}}}" if digits else "[0-9]+"
    return {"type": "string", "pattern": f"^{sign}{whole}(\\.[0-9]{{1,2}})?$"}


def build_openapi(container: Any) -> dict[str, Any]:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=f"Pumpurs {container.service_name}",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[plugin],
    )
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_decimal)
    spec.components.schema("Error", _ERROR)
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    paths: dict[str, dict[str, Any]] = {}
    urls: dict[str, str] = {}
    for entry in sorted(container.entrypoints, key=lambda e: getattr(e, "url", "")):
        if isinstance(entry, Route):
            path = openapi_path(entry.url)
            paths.setdefault(path, {})[entry.method.lower()] = _operation(entry)
            urls.setdefault(path, entry.url)
    for path, operations in paths.items():
        parameters = _path_parameters(urls[path])
        spec.path(path=path, operations=operations, parameters=parameters or None)
    return spec.to_dict()


def _path_parameters(url: str) -> list[dict[str, Any]]:
    return [
        {
            "in": "path",
            "name": name,
            "required": True,
            "schema": _CONVERTERS.get(converter, {"type": "string"}),
        }
        for converter, name in _PATH_VALUE.findall(url)
    ]
