"""Planning's use cases (first slice: the read model of pupils at risk)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.planning.readmodel import PupilsReadModel
from shared.inbox import IncomingEvent
from shared.store import ServiceApplication


class PlanningApplication(ServiceApplication):
    name = "planning"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self.pupils = PupilsReadModel(self.table_prefix)
        with self.transaction() as sql:
            self.pupils.create_table(sql)

    def apply_identification_event(self, event: IncomingEvent) -> None:
        envelope = event.envelope
        effects = self.pupils.effects_for(
            envelope.event_type, envelope.aggregate_id, envelope.aggregate_version, event.payload
        )
        self.save_tracked(tracking=event.tracking, effects=effects)

    def pupils_at_risk(self, school_ids: list[str] | None) -> list[dict[str, Any]]:
        return self.pupils.list(self.query, school_ids, at_risk=True)
