"""Metric names in PromQL expressions; run by var/tools-venv's Python (tests/deploy/tools.py).

Reads a JSON list of expressions on stdin and prints {"names": {expr: [name, ...]},
"errors": {expr: message}}. The expressions are parsed (promql-parser), so an expression
that is not valid PromQL is reported, not guessed at. Grafana's variables must be
substituted before (tools.py does).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import promql_parser


def names(node: Any) -> set[str]:
    if isinstance(node, promql_parser.VectorSelector):
        found = {node.name} if node.name else set()
        # {__name__="..."} selects by name too.
        for matcher in node.matchers.matchers:
            if matcher.name == "__name__":
                found.add(matcher.value)
        return found
    if isinstance(node, promql_parser.MatrixSelector):
        return names(node.vector_selector)
    children: list[Any] = []
    for attribute in ("expr", "lhs", "rhs", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, str | int | float):
            children.append(child)
    children.extend(getattr(node, "args", None) or [])
    return set().union(*(names(child) for child in children)) if children else set()


def main(expressions: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"names": {}, "errors": {}}
    for expression in expressions:
        try:
            out["names"][expression] = sorted(names(promql_parser.parse(expression)))
        except Exception as exc:
            out["errors"][expression] = str(exc)
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.load(sys.stdin))))
