"""deploy/k8s renders for every overlay, validates against Kubernetes' and the operators'
schemas, passes checkov, and has what the issue asks of a deployment (no cluster needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from shared.brokeraccess import apply_users, user_name, vhost_of
from shared.cli import SERVICES, nameko_config, parser
from tests.deploy.tools import (
    OVERLAYS,
    SCHEMAS,
    of_kind,
    rendered,
    resources,
    run,
    tool,
    tools_python,
)

pytestmark = pytest.mark.store_free  # opens no store: run with the first store only

CUSTOM_KINDS = {
    "RabbitmqCluster",
    "Cluster",
    "Database",
    "ScheduledBackup",
    "ObjectStore",
    "ServiceMonitor",
    "PrometheusRule",
}


@pytest.fixture(scope="module")
def rendered_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rendered")
    files = {}
    for overlay in OVERLAYS:
        files[overlay] = folder / f"{overlay}.yaml"
        files[overlay].write_text(rendered(overlay))
    return files


def test_kubernetes_validate_strict_passes_and_warns_only_of_custom_resources(
    rendered_files: dict[str, Path],
) -> None:
    files = [str(f) for f in rendered_files.values()]
    done = run([tool("kubernetes-validate"), "--strict", "--quiet", *files])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR" not in done.stdout
    # It has no schema for the operators' kinds; those are checked just below.
    for path in files:
        unknown = set(
            re.findall(rf"WARN {re.escape(path)} Couldn't find schema for kind (\w+)", done.stdout)
        )
        assert unknown == CUSTOM_KINDS, path


def test_every_resource_validates_custom_ones_against_the_schemas_kept_in_the_repo(
    rendered_files: dict[str, Path],
) -> None:
    files = {overlay: str(path) for overlay, path in rendered_files.items()}
    answers = tools_python("validate.py", str(SCHEMAS), *files.values())
    for overlay, path in files.items():
        answer = answers[path]
        assert answer["errors"] == [], overlay
        checked = {(kind, name) for kind, name, _how in answer["validated"]}
        assert checked == {(r["kind"], r["metadata"]["name"]) for r in resources(overlay)}
        by_schema = {kind for kind, _name, how in answer["validated"] if how == "schema"}
        assert by_schema == CUSTOM_KINDS, overlay


def test_a_misspelt_field_of_a_custom_resource_is_caught(tmp_path: Path) -> None:
    (broker,) = of_kind("production", "RabbitmqCluster")
    broker = {**broker, "spec": {**broker["spec"], "replica": 3}}
    (cluster,) = of_kind("production", "Cluster")
    cluster = {**cluster, "spec": {**cluster["spec"], "instances": "three"}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all([broker, cluster]))
    errors = tools_python("validate.py", str(SCHEMAS), str(path))[str(path)]["errors"]
    assert any("RabbitmqCluster/pumpurs-rabbitmq" in e and "'replica'" in e for e in errors)
    assert any("Cluster/pumpurs-db: spec.instances" in e for e in errors)


def test_checkov_finds_no_failed_check_and_every_waiver_gives_its_reason(
    rendered_files: dict[str, Path],
) -> None:
    folder = next(iter(rendered_files.values())).parent
    done = run(
        [
            tool("checkov"),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "--output",
            "json",
            "--directory",
            str(folder),
        ],
        timeout=600,
    )
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert sum(r["summary"]["passed"] for r in reports) > 0
    for report in reports:
        for skipped in report["results"]["skipped_checks"]:
            reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
            assert len(reason) > 20, f"{skipped['check_id']} is waived without a reason"


def pod_specs(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (w["metadata"]["name"], w["spec"]["template"]["spec"])
        for w in of_kind(overlay, "Deployment") + of_kind(overlay, "Job")
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_restricted(overlay: str) -> None:
    for name, pod in pod_specs(overlay):
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_liveness_never_asks_the_broker_or_the_database(overlay: str) -> None:
    for deployment in of_kind(overlay, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_in_git_only_references(overlay: str) -> None:
    assert of_kind(overlay, "Secret") == []
    referenced = set()
    for name, pod in pod_specs(overlay):
        secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        referenced |= {v["secretName"] for v in secret_volumes.values()}
        for container in pod["containers"]:
            secret_paths = [
                m["mountPath"] for m in container["volumeMounts"] if m["name"] in secret_volumes
            ]
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                elif variable["name"].endswith("_FILE"):
                    # A key read from a file: the file is on a Secret volume.
                    assert any(variable["value"].startswith(p + "/") for p in secret_paths), name
                else:
                    assert not re.search(r"PASSWORD|KEY|SECRET|URI", variable["name"]), variable
    assert referenced == {
        "pumpurs-rabbitmq-default-user",
        "pumpurs-master-key",
        "pumpurs-jwt",
        "pumpurs-audit-signing-key",
    } | {f"pumpurs-{kind}-{service}" for kind in ("db", "broker") for service in SERVICES}
    (config,) = [
        c
        for c in of_kind(overlay, "ConfigMap")
        if c["metadata"]["name"].startswith("pumpurs-config")
    ]
    assert not [k for k in config["data"] if re.search(r"PASSWORD|SECRET|MASTER", k)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_a_service_a_disruption_budget_an_autoscaler_and_a_monitor(
    overlay: str,
) -> None:
    for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"):
        names = sorted(r["metadata"]["name"] for r in of_kind(overlay, kind))
        assert names == sorted(SERVICES), kind
    for hpa in of_kind(overlay, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] == hpa["metadata"]["name"]
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for deployment in of_kind(overlay, "Deployment"):
        assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_is_closed_by_default(overlay: str) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(overlay, "NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    services = policies["pumpurs-services"]
    sources = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in services["ingress"]
        for peer in rule["from"]
    }
    assert sources == {"ingress-nginx", "monitoring"}
    destinations = [peer for rule in services["egress"] for peer in rule["to"]]
    assert {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "pumpurs-rabbitmq"}}
    } in destinations
    assert {"podSelector": {"matchLabels": {"cnpg.io/cluster": "pumpurs-db"}}} in destinations
    assert len(destinations) == 2, "services reach each other only through the broker"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_broker_and_database_are_replicated_with_a_database_per_service_and_backups(
    overlay: str,
) -> None:
    (broker,) = of_kind(overlay, "RabbitmqCluster")
    assert broker["spec"]["replicas"] == 3
    (cluster,) = of_kind(overlay, "Cluster")
    assert cluster["spec"]["instances"] == 3
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    databases = {d["spec"]["name"]: d["spec"] for d in of_kind(overlay, "Database")}
    assert sorted(databases) == sorted(SERVICES) == sorted(roles)
    for name, database in databases.items():
        assert database["owner"] == name, "each service owns its own database only"
        assert roles[name]["passwordSecret"]["name"] == f"pumpurs-db-{name}"
    (archiver,) = [p for p in cluster["spec"]["plugins"] if p.get("isWALArchiver")]
    (store,) = of_kind(overlay, "ObjectStore")
    assert archiver["parameters"]["barmanObjectName"] == store["metadata"]["name"]
    assert store["spec"]["configuration"]["destinationPath"].startswith("s3://")
    (backup,) = of_kind(overlay, "ScheduledBackup")
    assert backup["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert backup["spec"]["method"] == "plugin"


BROKER_USERS_JOB = "pumpurs-broker-users"


def pod_environment(overlay: str, container: dict[str, Any]) -> dict[str, str]:
    """A container's environment as its process sees it; a secret's value stands there as
    `secret:NAME/KEY`, so that a test can tell which secret a variable comes from."""
    config_maps = {c["metadata"]["name"]: c["data"] for c in of_kind(overlay, "ConfigMap")}
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environ.update(config_maps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        environ[variable["name"]] = (
            f"secret:{ref['name']}/{ref['key']}" if ref else variable["value"]
        )
    return environ


def secrets_read(pod: dict[str, Any]) -> set[str]:
    names = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    for container in pod["containers"]:
        names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
        names |= {
            v["valueFrom"]["secretKeyRef"]["name"]
            for v in container.get("env", [])
            if "secretKeyRef" in v.get("valueFrom", {})
        }
    return names


def broker_users_job(overlay: str) -> dict[str, Any]:
    (job,) = [j for j in of_kind(overlay, "Job") if j["metadata"]["name"] == BROKER_USERS_JOB]
    return job


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_connects_to_the_broker_as_its_own_user_with_its_own_password(
    overlay: str,
) -> None:
    (broker,) = of_kind(overlay, "RabbitmqCluster")
    for deployment in of_kind(overlay, "Deployment"):
        service = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        environ = pod_environment(overlay, container)
        # A password in the configured URI would be in git, and every service's.
        configured = urlsplit(environ["AMQP_URI"])
        assert configured.username is None and configured.password is None, service
        # What the service connects with once it has added its credentials (shared/cli.py).
        uri = urlsplit(nameko_config(service, environ)["AMQP_URI"])
        assert uri.hostname == broker["metadata"]["name"], "the operator's Service"
        user = unquote(uri.username or "")
        assert user == user_name(service, vhost_of(environ["AMQP_URI"])) == f"pumpurs.{service}"
        assert unquote(uri.password or "") == f"secret:pumpurs-broker-{service}/password"
        # Not another service's password, nor the old shared user's, nor the administrator's.
        broker_secrets = {
            s for s in secrets_read(pod) if s.startswith(("pumpurs-broker", "pumpurs-rabbitmq"))
        }
        assert broker_secrets == {f"pumpurs-broker-{service}"}, service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_job_gives_each_service_the_broker_user_it_connects_as(overlay: str) -> None:
    job = broker_users_job(overlay)
    # README's steps wait for the Jobs labelled so before starting the services, and delete
    # them on an upgrade so that they run again.
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
    assert job["spec"]["backoffLimit"] >= 3, "it retries until the broker answers"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert parser().parse_args(container["args"]).func is apply_users
    environ = pod_environment(overlay, container)
    (cluster,) = of_kind(overlay, "RabbitmqCluster")
    broker = cluster["metadata"]["name"]
    assert environ["PUMPURS_RABBITMQ_API"] == f"http://{broker}:15672"
    # The administrator the Cluster Operator creates, from the secret it writes.
    assert environ["PUMPURS_RABBITMQ_API_USER"] == f"secret:{broker}-default-user/username"
    assert environ["PUMPURS_RABBITMQ_API_PASSWORD"] == f"secret:{broker}-default-user/password"
    deployments = {d["metadata"]["name"]: d for d in of_kind(overlay, "Deployment")}
    for service in SERVICES:
        (server,) = deployments[service]["spec"]["template"]["spec"]["containers"]
        served = pod_environment(overlay, server)
        password = environ[f"PUMPURS_BROKER_PASSWORD_{service.upper()}"]
        assert password == served["AMQP_PASSWORD"] == f"secret:pumpurs-broker-{service}/password"
        # The Job sets up the user the service logs in as, on the vhost it connects to.
        vhost = vhost_of(environ["AMQP_URI"])
        assert vhost == vhost_of(served["AMQP_URI"])
        assert user_name(service, vhost) == served["AMQP_USER"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a NetworkPolicy's pod selector takes pods labelled so (Kubernetes' rules)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    holds = {
        "In": lambda key, values: labels.get(key) in values,
        "NotIn": lambda key, values: labels.get(key) not in values,
        "Exists": lambda key, _values: key in labels,
        "DoesNotExist": lambda key, _values: key not in labels,
    }
    return all(
        holds[e["operator"]](e["key"], e.get("values", []))
        for e in selector.get("matchExpressions", [])
    )


def admitted_from_the_namespace(policy: dict[str, Any], labels: dict[str, str]) -> list[Any]:
    """The ports of the policy's ingress rules that let in pods of its namespace so labelled."""
    return [
        rule["ports"]
        for rule in policy["ingress"]
        for peer in rule["from"]
        if "namespaceSelector" not in peer and selects(peer["podSelector"], labels)
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_broker_users_job_reaches_the_management_api_and_nothing_else(overlay: str) -> None:
    labels = broker_users_job(overlay)["spec"]["template"]["metadata"]["labels"]
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(overlay, "NetworkPolicy")}
    applying = {name for name, spec in policies.items() if selects(spec["podSelector"], labels)}
    assert applying == {"default-deny", "allow-dns", BROKER_USERS_JOB}
    own = policies[BROKER_USERS_JOB]
    # Nothing connects to it.
    assert own["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in own
    rabbitmq = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pumpurs-rabbitmq"}}}
    management = [{"port": 15672, "protocol": "TCP"}]
    assert own["egress"] == [{"to": [rabbitmq], "ports": management}]
    # The broker's side must let it in too, and there on that port only.
    assert admitted_from_the_namespace(policies["rabbitmq"], labels) == [management]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_database_migrations_reach_the_database_and_the_broker_users_job_does_not(
    overlay: str,
) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(overlay, "NetworkPolicy")}
    for job in of_kind(overlay, "Job"):
        labels = job["spec"]["template"]["metadata"]["labels"]
        needs_it = job["metadata"]["name"] != BROKER_USERS_JOB
        assert selects(policies["pumpurs-migrations"]["podSelector"], labels) is needs_it
        assert bool(admitted_from_the_namespace(policies["postgres"], labels)) is needs_it
