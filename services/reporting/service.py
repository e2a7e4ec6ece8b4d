"""Reporting's entrypoints: its three inboxes, and the ESF report read from its read models.

Who may read reports: auditors and the national coordinator everything; a municipal
coordinator their own municipality; teachers and directors their own school. A scope
outside the caller's tenant is refused (403), as elsewhere for an explicit tenant
parameter; the operator and the data protection officer read no reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import eventlet
from werkzeug.wrappers import Response

from services.reporting.ages import AgeDesk, AgeEnquirer, AgeEnquiryTimer
from services.reporting.application import ReportingApplication
from services.reporting.audit import AuditRoutes
from services.reporting.export import XLSX, export
from services.reporting.gauges import ProgrammeGauges
from services.reporting.schemas import EsfQuerySchema
from shared.auth import AUDITOR, DIRECTOR, MUNICIPAL_COORDINATOR, NATIONAL_COORDINATOR, TEACHER
from shared.eventstore import EventStore
from shared.inbox import IncomingEvent, inbox
from shared.service import ServiceBase
from shared.web import JSON, Call, route

# Reports are read long after the events: a batch may wait this long (seconds) to grow.
READERS_CAN_WAIT = 0.2
REPORT_READERS = (AUDITOR, NATIONAL_COORDINATOR, MUNICIPAL_COORDINATOR, DIRECTOR, TEACHER)


def make_application(env: Mapping[str, str]) -> ReportingApplication:
    # A rebuild or an as_of replay yields to the hub between pages.
    return ReportingApplication(env, pause=eventlet.sleep)


class ReportingService(AuditRoutes, ServiceBase):
    name = "reporting"
    app: ReportingApplication = EventStore(make_application)
    gauges = ProgrammeGauges()
    age_desk: AgeDesk = AgeEnquirer()

    @inbox("identification", batched=True, linger=READERS_CAN_WAIT)
    def on_identification_events(self, events: list[IncomingEvent]) -> None:
        self.app.receive_all(events)

    @inbox("planning", batched=True, linger=READERS_CAN_WAIT)
    def on_planning_events(self, events: list[IncomingEvent]) -> None:
        self.app.receive_all(events)

    @inbox("provisioning", batched=True, linger=READERS_CAN_WAIT)
    def on_provisioning_events(self, events: list[IncomingEvent]) -> None:
        self.app.receive_all(events)

    @AgeEnquiryTimer.decorator(interval=1)
    def ask_ages(self) -> None:
        """Supported pupils' age bands, asked of identification and journalled."""
        self.age_desk.ask_waiting()

    @route(
        "GET",
        "/reports/esf",
        query=EsfQuerySchema,
        roles=REPORT_READERS,
        answer_types=(JSON, "text/csv", XLSX),
        summary="the ESF indicators of a semester or school year (json, csv or xlsx)",
    )
    def esf_report(self, call: Call) -> Any:
        report = self.app.esf_report(call.query["request"], call.user)
        return exported(report, call.query["format"])


def exported(report: dict[str, Any], fmt: str) -> Any:
    if fmt == "json":
        return report
    body, mimetype, filename = export(report, fmt)
    disposition = f'attachment; filename="{filename}"'
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": disposition})
