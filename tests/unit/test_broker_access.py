"""The broker-access table against what the services declare and against RabbitMQ's rules.
What the broker actually refuses is shown in tests/integration/test_broker_access.py."""

from __future__ import annotations

import importlib
import re

import pytest

from shared.brokeraccess import SERVICES, SUBSCRIBES, grant_for, with_credentials
from shared.cli import SERVICES as SERVED
from shared.inbox import Inbox


def declared_sources(service: str) -> set[str]:
    module, cls_name, _port = SERVED[service]
    cls = getattr(importlib.import_module(module), cls_name)
    return {
        entrypoint.source
        for name in dir(cls)
        for entrypoint in getattr(getattr(cls, name), "nameko_entrypoints", ())
        if isinstance(entrypoint, Inbox)
    }


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_may_bind_to_exactly_the_sources_its_inboxes_consume(service: str) -> None:
    assert set(SUBSCRIBES[service]) == declared_sources(service)
    events = grant_for(service).topics[0]
    for source in SERVICES:
        allowed = re.fullmatch(events.read, f"{source}.#") is not None
        assert allowed == (source in SUBSCRIBES[service]), source


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_publishes_events_under_its_own_name_only(service: str) -> None:
    events = grant_for(service).topics[0]
    for source in SERVICES:
        allowed = re.fullmatch(events.write, f"{source}.pupil_flagged_at_risk") is not None
        assert allowed == (source == service), source


def test_only_reporting_may_ask_for_plan_histories_and_age_bands_only_planning_for_adults() -> None:
    def may_call(service: str, key: str) -> bool:
        return re.fullmatch(grant_for(service).topics[1].write, key) is not None

    for service in SERVICES:
        assert may_call(service, "planning.audit_plan_history") == (service == "reporting")
        assert may_call(service, "identification.age_bands") == (service == "reporting")
        assert may_call(service, "identification.adult_on") == (service == "planning")
        assert not may_call(service, "identification.audit_verify") or service == "reporting"
    assert may_call("planning", "identification.notifications")
    assert not may_call("identification", "planning.notifications")


def test_a_service_may_not_touch_another_services_queues() -> None:
    grant = grant_for("provisioning")
    for queue in ("planning.from.identification", "planning.dead-letters", "rpc-planning"):
        for pattern in (grant.configure, grant.write, grant.read):
            assert re.fullmatch(pattern, queue) is None, (queue, pattern)
    for queue in (
        "provisioning.from.identification",
        "provisioning.from.planning",
        "provisioning.dead-letters",
        "rpc-provisioning",
    ):
        assert re.fullmatch(grant.read, queue), queue


def test_a_password_from_the_environment_is_put_into_the_uri_encoded() -> None:
    uri = "amqp://pumpurs-rabbitmq:5672/"
    env = {"AMQP_USER": "pumpurs.planning", "AMQP_PASSWORD": "p@ss/wo:rd"}
    assert with_credentials(uri, env) == (
        "amqp://pumpurs.planning:p%40ss%2Fwo%3Ard@pumpurs-rabbitmq:5672/"
    )
    assert with_credentials(uri, {}) == uri
