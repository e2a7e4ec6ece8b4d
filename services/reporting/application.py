"""Reporting's use cases (the service itself comes with its own issue)."""

from shared.store import ServiceApplication


class ReportingApplication(ServiceApplication):
    name = "reporting"
