"""An aggregate's history as its owners show it: every event with who, when and what changed."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import Schema, fields, validate

from shared.contracts import registry

# The largest version a store's integer column holds (SQLite's INTEGER, PostgreSQL's bigint):
# a history query past it is refused (400), not sent to the database.
MAX_VERSION = 2**63 - 1
_INTERNAL = {"originator_id", "originator_version", "timestamp", "originator_topic", "by"}


class HistoryQuerySchema(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_VERSION))
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=1000))


class HistoryEntrySchema(Schema):
    """Subclass with ``source`` set to the service whose contracts name the events."""

    source: ClassVar[str]

    version = fields.Integer(attribute="originator_version")
    event = fields.Method("_event")
    at = fields.DateTime(attribute="timestamp")
    by = fields.String()
    changes = fields.Method("_changes")

    def _event(self, event: Any) -> str:
        return registry.for_domain_event(self.source, type(event).__qualname__).event_type

    def _changes(self, event: Any) -> dict[str, Any]:
        return {k: v for k, v in vars(event).items() if k not in _INTERNAL}
