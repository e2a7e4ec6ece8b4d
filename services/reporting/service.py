"""Reporting's entrypoints: so far only the chassis routes (health, metrics, OpenAPI)."""

from __future__ import annotations

from collections.abc import Mapping

from services.reporting.application import ReportingApplication
from shared.eventstore import EventStore
from shared.service import ServiceBase


def make_application(env: Mapping[str, str]) -> ReportingApplication:
    return ReportingApplication(env)


class ReportingService(ServiceBase):
    name = "reporting"
    app: ReportingApplication = EventStore(make_application)
