"""What operators watch works against the real services: promtool accepts the alert rules and
each running service's /metrics, every metric an alert or a dashboard reads is one that a
service exports, and the Ingress routes every API route of each service (and not /metrics).

The four services run once for the module, as `make run` runs them, on the store under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from shared.cli import SERVICES
from shared.testing import Broker, ServiceProcess, Stores, token_for
from tests.deploy.tools import (
    K8S,
    OVERLAYS,
    metric_names,
    of_kind,
    promql_of_grafana,
    run,
    tool,
)

# What a service exports does not depend on its store: run with the first store only.
pytestmark = pytest.mark.store_free

STORE_KIND = os.environ.get("PUMPURS_TEST_STORE", "sqlite")
DASHBOARDS = sorted((K8S / "base" / "monitoring" / "dashboards").glob("*.json"))
# Series a rule or dashboard may read that no service exports, each with its reason.
NOT_EXPORTED = {"up": "Prometheus records it for every scrape of a target"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The four services on one broker vhost; what each answers at /metrics and /openapi.json
    after a little traffic."""
    tmp = tmp_path_factory.mktemp("monitoring")
    broker = Broker.from_env(os.environ)
    broker.create()
    stores = Stores(STORE_KIND, tmp / "data", os.environ)
    keys = tmp / "keys"
    env = {"AMQP_URI": broker.uri, "PUMPURS_KEYS_DIR": str(keys), **stores.env(list(SERVICES))}
    services = [ServiceProcess(name, env, tmp) for name in SERVICES]
    try:
        for service in services:
            service.start(wait=False)
        for service in services:
            service.wait_ready()
        operator = {"Authorization": f"Bearer {token_for('operator', keys)}"}
        answers: dict[str, Any] = {}
        for service in services:
            # Traffic, so the request metrics have samples: a good call and a refused one.
            assert requests.get(f"{service.url}/health/ready", timeout=10).status_code == 200
            requests.get(f"{service.url}/no-such-route", headers=operator, timeout=10)
            answers[service.name] = {
                "metrics": requests.get(f"{service.url}/metrics", timeout=10).text,
                "openapi": requests.get(f"{service.url}/openapi.json", timeout=10).json(),
            }
        yield answers
    finally:
        stop_all(services)
        stores.drop()
        broker.delete()


def stop_all(services: list[ServiceProcess]) -> None:
    """SIGTERM to all at once; an idle nameko HTTP service acts on it at its next request."""
    for service in services:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.send_signal(signal.SIGTERM)
    for service in services:
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{service.url}/health/live", timeout=1)
    for service in services:
        with contextlib.suppress(Exception):
            service.stop()


def declared_metrics(exposition: str) -> set[str]:
    """Every series name a /metrics text declares (its # TYPE lines), with the suffixes
    Prometheus stores for each type."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        if kind == "counter":
            names |= {
                f"{name.removesuffix('_total')}_total",
                f"{name.removesuffix('_total')}_created",
            }
    return names


def alert_rules() -> dict[str, Any]:
    (rule,) = of_kind("production", "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def dashboard_queries() -> dict[str, list[str]]:
    """PromQL of every panel of every dashboard, and the metric of each variable's query."""
    queries: dict[str, list[str]] = {}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        for variable in board["templating"]["list"]:
            query = variable.get("query")
            if isinstance(query, dict):
                # label_values(METRIC{...}, label) is Grafana's, not PromQL: keep METRIC{...}.
                inner = re.fullmatch(r"label_values\((.+), *\w+\)", query["query"])
                assert inner, f"{path.name}: unexpected variable query {query['query']}"
                exprs.append(inner.group(1))
        queries[path.name] = [promql_of_grafana(e) for e in exprs]
    return queries


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(alert_rules()))
    done = run([tool("promtool"), "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(g["rules"]) for g in alert_rules()["groups"])
    assert f"SUCCESS: {count} rules found" in done.stdout


# What each alert must do, as promtool's rule unit tests: series over time, then which
# alerts fire at a moment (an empty list: none).
ALERT_CASES: list[dict[str, Any]] = [
    {
        "interval": "1m",
        "input_series": [
            {"series": 'pumpurs_dead_letters_messages{service="planning"}', "values": "0 0 2x10"},
            {
                "series": 'pumpurs_outbox_oldest_unpublished_age_seconds{service="identification"}',
                "values": "1 0+60x15",
            },
            {"series": 'pumpurs_ready{service="reporting", pod="reporting-1"}', "values": "1 0x10"},
            # planning's relay moves from one replica to another: never an alert.
            {
                "series": 'pumpurs_outbox_relay_active{service="planning", pod="p-1"}',
                "values": "1x3 0x10",
            },
            {
                "series": 'pumpurs_outbox_relay_active{service="planning", pod="p-2"}',
                "values": "0x3 1x10",
            },
            # provisioning's lease is held by nobody from the third minute.
            {
                "series": 'pumpurs_outbox_relay_active{service="provisioning", pod="v-1"}',
                "values": "1 1 0x10",
            },
            {
                "series": "pumpurs_consumer_lag_events"
                '{service="planning", source="identification"}',
                "values": "0 500x20",
            },
            # An enquiry waits from the first minute and is never answered; pending
            # enquiries that are answered within minutes never raise it.
            {
                "series": 'pumpurs_reporting_age_enquiry_oldest_age_seconds{service="reporting"}',
                "values": "0 0+60x90",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "PumpursDeadLetters", "exp_alerts": []},
            {
                "eval_time": "4m",
                "alertname": "PumpursDeadLetters",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", "service": "planning"},
                    }
                ],
            },
            # Two minutes old at 3m; an alert only once that lasted five minutes.
            {"eval_time": "6m", "alertname": "PumpursOutboxBacklogOld", "exp_alerts": []},
            {
                "eval_time": "9m",
                "alertname": "PumpursOutboxBacklogOld",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "critical", "service": "identification"},
                    }
                ],
            },
            {
                "eval_time": "7m",
                "alertname": "PumpursNotReady",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "service": "reporting",
                            "pod": "reporting-1",
                        },
                    }
                ],
            },
            {
                "eval_time": "10m",
                "alertname": "PumpursRelayNotSingle",
                "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "service": "provisioning"}},
                ],
            },
            # An hour old at 61m; an alert once that lasted fifteen minutes.
            {"eval_time": "70m", "alertname": "PumpursAgeEnquiriesUnanswered", "exp_alerts": []},
            {
                "eval_time": "80m",
                "alertname": "PumpursAgeEnquiriesUnanswered",
                "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
            },
            {"eval_time": "5m", "alertname": "PumpursConsumerLagging", "exp_alerts": []},
            {
                "eval_time": "12m",
                "alertname": "PumpursConsumerLagging",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "service": "planning",
                            "source": "identification",
                        },
                    }
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            # 100 requests a minute; from the start 10 of them fail with 500 (10%).
            {
                "series": 'pumpurs_http_requests_total{service="planning", status="200"}',
                "values": "0+90x30",
            },
            {
                "series": 'pumpurs_http_requests_total{service="planning", status="500"}',
                "values": "0+10x30",
            },
            # 1 in 1000 fails: no alert.
            {
                "series": 'pumpurs_http_requests_total{service="provisioning", status="200"}',
                "values": "0+999x30",
            },
            {
                "series": 'pumpurs_http_requests_total{service="provisioning", status="503"}',
                "values": "0+1x30",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "20m",
                "alertname": "PumpursHighErrorRate",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "critical", "service": "planning"},
                    }
                ],
            },
        ],
    },
]


def test_each_alert_fires_when_it_should_and_not_before(tmp_path: Path) -> None:
    # When an alert fires and with which labels; its annotations' templates are checked by
    # `promtool check rules` above (promtool test would compare their expanded text).
    rules = alert_rules()
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": ALERT_CASES}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    done = run([tool("promtool"), "test", "rules", str(tmp_path / "tests.yaml")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alerts_cover_what_operators_must_act_on() -> None:
    alerts = {
        r["alert"]: r["expr"] for g in alert_rules()["groups"] for r in g["rules"] if "alert" in r
    }
    read = metric_names(list(alerts.values()))
    wanted = {
        "pumpurs_outbox_oldest_unpublished_age_seconds",
        "pumpurs_consumer_lag_events",
        "pumpurs_dead_letters_messages",
        "pumpurs_http_requests_total",
        "pumpurs_ready",
        "pumpurs_reporting_age_enquiry_oldest_age_seconds",
    }
    assert wanted <= set().union(*read.values())
    for rule in (r for g in alert_rules()["groups"] for r in g["rules"]):
        assert rule["annotations"]["summary"] and rule["labels"]["severity"], rule["alert"]


def test_promtool_accepts_each_running_services_metrics(system: dict[str, Any]) -> None:
    for name, answer in system.items():
        done = run([tool("promtool"), "check", "metrics"], stdin=answer["metrics"])
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        assert done.stdout.strip() == "" and done.stderr.strip() == "", f"{name}: lint findings"


def test_every_metric_an_alert_or_a_dashboard_reads_is_exported(system: dict[str, Any]) -> None:
    exported = set().union(*(declared_metrics(a["metrics"]) for a in system.values()))
    expressions = [r["expr"] for g in alert_rules()["groups"] for r in g["rules"]]
    queries = dashboard_queries()
    assert sorted(queries) == [
        "pumpurs-event-pipeline.json",
        "pumpurs-programme.json",
        "pumpurs-services.json",
    ]
    for expressions_of_board in queries.values():
        expressions += expressions_of_board
    used = metric_names(expressions)
    missing = {
        name: expr
        for expr, names in used.items()
        for name in names
        if name not in exported and name not in NOT_EXPORTED
    }
    assert missing == {}, "read by an alert or a dashboard, exported by no service"
    # Each dashboard reads something (a panel with no query would show nothing).
    for board, exprs in queries.items():
        assert all(used[promql] for promql in exprs), board


def ingress_routes(overlay: str) -> dict[str, list[tuple[str, str]]]:
    (ingress,) = of_kind(overlay, "Ingress")
    routes: dict[str, list[tuple[str, str]]] = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            service = path["backend"]["service"]["name"]
            routes.setdefault(service, []).append((path["path"], path["pathType"]))
    return routes


def routed(path: str, rules: list[tuple[str, str]]) -> bool:
    # Kubernetes' Prefix matches whole path elements: /pupils matches /pupils/x, not /pupilsx.
    return any(
        path == prefix or (kind == "Prefix" and path.startswith(prefix.rstrip("/") + "/"))
        for prefix, kind in rules
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_routes_every_api_route_and_keeps_metrics_inside(
    overlay: str, system: dict[str, Any]
) -> None:
    routes = ingress_routes(overlay)
    assert sorted(routes) == sorted(SERVICES)
    for name, answer in system.items():
        for path in answer["openapi"]["paths"]:
            inside = path == "/metrics" or path.startswith("/health/")
            assert routed(path, routes[name]) != inside, f"{name} {path}"
