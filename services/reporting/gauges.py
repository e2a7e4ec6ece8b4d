"""The programme's gauges for operators' dashboards, computed from the read models when
``/metrics`` is scraped: no ids, and labels from fixed lists only.

- ``pumpurs_programme_pupils_at_risk``: pupils with at least one risk sign not resolved
  (a departed pupil's signs end with the departure);
- ``pumpurs_programme_plans{status}``: plans of every semester by current status;
- ``pumpurs_programme_budget_eur{state}``: the schools' budgets of every semester added up,
  ``allocated``, ``committed`` (reserved, not yet delivered) and ``spent``;
- ``pumpurs_reporting_age_enquiries_pending``: supported pupils' age enquiries not yet
  answered by identification (stays up while identification is unreachable).
- ``pumpurs_reporting_age_enquiry_oldest_age_seconds``: how long the oldest of them has
  waited (0 when none does): what an alert watches, since a busy day leaves many
  enquiries pending for a moment but none pending for long.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nameko.extensions import DependencyProvider
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.reporting.application import ReportingApplication
from services.reporting.domain import BUDGET_STATES
from shared.eventstore import store_of
from shared.metrics import metrics_for
from shared.vocabulary import PLAN_STATUSES


def _families() -> tuple[GaugeMetricFamily, ...]:
    return (
        GaugeMetricFamily(
            "pumpurs_programme_pupils_at_risk", "Pupils with a risk sign not yet resolved."
        ),
        GaugeMetricFamily(
            "pumpurs_programme_plans",
            "Individual support plans of every semester, by current status.",
            labels=["status"],
        ),
        GaugeMetricFamily(
            "pumpurs_programme_budget_eur",
            "The schools' budgets of every semester added up, by state of the money.",
            labels=["state"],
        ),
        GaugeMetricFamily(
            "pumpurs_reporting_age_enquiries_pending",
            "Age enquiries of supported pupils waiting for identification's answer.",
        ),
        GaugeMetricFamily(
            "pumpurs_reporting_age_enquiry_oldest_age_seconds",
            "How long the oldest age enquiry has waited for identification's answer.",
        ),
    )


class ProgrammeCollector(Collector):
    def __init__(self, container: Any) -> None:
        self.container = container

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        app = store_of(self.container).app
        assert isinstance(app, ReportingApplication)
        figures = app.programme_figures()
        at_risk, plans, budget, enquiries, oldest = _families()
        at_risk.add_metric([], figures["pupils_at_risk"])
        for status in PLAN_STATUSES:
            plans.add_metric([status], figures["plans"][status])
        for state in BUDGET_STATES:
            budget.add_metric([state], figures["budget_eur"][state])
        enquiries.add_metric([], figures["age_enquiries_waiting"])
        oldest.add_metric([], figures["age_enquiry_oldest_seconds"])
        return iter((at_risk, plans, budget, enquiries, oldest))


class ProgrammeGauges(DependencyProvider):
    """Registers the collector on the container's own registry (see shared/metrics.py)."""

    def setup(self) -> None:
        metrics_for(self.container).registry.register(ProgrammeCollector(self.container))

    def get_dependency(self, worker_ctx: Any) -> None:
        return None
