"""The container image (Dockerfile) runs the services the way `make run` does, unprivileged,
on a read-only root file system. No Docker engine is needed: the Dockerfile and the rendered
manifests are read as text."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.cli import SERVICES
from shared.testing import REPO
from tests.deploy.tools import OVERLAYS, of_kind

pytestmark = pytest.mark.store_free  # opens no store: run with the first store only

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of each Dockerfile instruction NAME (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [
        line.split(None, 1)[1].strip()
        for line in text.splitlines()
        if line.strip().upper().startswith(name + " ")
    ]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instructions("ENV"):
        env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_the_image_is_built_in_stages_on_a_pinned_python_3_11() -> None:
    base = dict(re.findall(r"ARG (\w+)=(\S+)", DOCKERFILE))["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    stages = instructions("FROM")
    assert len(stages) >= 2, "the image is multi-stage: build tools stay out of what runs"
    assert all(s.split()[0] == "${PYTHON_IMAGE}" for s in stages)
    assert "--from=build" in " ".join(instructions("COPY"))


def test_the_image_runs_as_an_unprivileged_user() -> None:
    user = instructions("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, f"USER {user}: numeric, not root, >= 10000"


def test_the_entry_command_is_the_one_make_run_uses() -> None:
    entrypoint = json.loads(instructions("ENTRYPOINT")[-1])
    assert entrypoint == ["pumpurs"]
    run_local = (REPO / "scripts" / "run-local.sh").read_text()
    assert "PUMPURS=${PUMPURS_BIN:-.venv/bin/pumpurs}" in run_local
    assert '"$PUMPURS" serve "$name"' in run_local
    for overlay in OVERLAYS:
        for deployment in of_kind(overlay, "Deployment"):
            name = deployment["metadata"]["name"]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert entrypoint + container["args"] == ["pumpurs", "serve", name]
            assert "command" not in container
        assert sorted(d["metadata"]["name"] for d in of_kind(overlay, "Deployment")) == sorted(
            SERVICES
        )


def test_the_jobs_run_pumpurs_migrate_for_each_service_and_set_up_the_broker_users() -> None:
    for overlay in OVERLAYS:
        jobs = of_kind(overlay, "Job")
        args = sorted(tuple(j["spec"]["template"]["spec"]["containers"][0]["args"]) for j in jobs)
        assert args == [("broker-users", "apply")] + [
            ("migrate", name) for name in sorted(SERVICES)
        ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_written_at_run_time_lands_on_an_empty_dir(overlay: str) -> None:
    """The root file system is read-only: the data folder and the temporary folder the image
    points to must be emptyDir mounts in every pod, and no bytecode is written."""
    env = image_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    writable = {env["PUMPURS_DATA_DIR"], env["TMPDIR"]}
    for workload in of_kind(overlay, "Deployment") + of_kind(overlay, "Job"):
        pod: dict[str, Any] = workload["spec"]["template"]["spec"]
        empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounted = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty}
            assert writable <= mounted, f"{workload['metadata']['name']}: {writable - mounted}"


def test_the_build_context_leaves_local_state_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored, "everything is excluded unless listed"
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    assert allowed == {"requirements.txt", "pyproject.toml", "shared", "services"}
