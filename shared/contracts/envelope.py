"""The integration-event envelope every message on the bus carries."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate


class InvalidMessageError(ValueError):
    """A message that can never be applied: it goes to the dead letters at once."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


class EnvelopeSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    event_id = fields.UUID(required=True)
    event_type = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"))
    schema_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    source = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z_]*$"))
    notification_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    previous_id = fields.Integer(
        required=True, allow_none=True, strict=True, validate=validate.Range(min=1)
    )
    occurred_at = fields.AwareDateTime(required=True)
    aggregate_id = fields.UUID(required=True)
    aggregate_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    actor = fields.String(required=True, validate=validate.Length(min=1, max=200))
    payload = fields.Dict(keys=fields.String(), required=True)


@functools.cache
def _envelope_schema() -> EnvelopeSchema:
    """Built once: a schema instance per message cost more than loading the message."""
    return EnvelopeSchema()


@dataclass(frozen=True)
class Envelope:
    event_id: str
    event_type: str
    schema_version: int
    source: str
    notification_id: int
    previous_id: int | None
    occurred_at: datetime
    aggregate_id: str
    aggregate_version: int
    actor: str
    payload: dict[str, Any] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies the payload, which cost the relay
        # more than reading and mapping the event.
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["occurred_at"] = self.occurred_at.isoformat()
        data["payload"] = dict(self.payload)
        return data

    @classmethod
    def from_message(cls, body: Any) -> Envelope:
        if not isinstance(body, dict):
            raise InvalidMessageError("message body is not a JSON object")
        try:
            data = _envelope_schema().load(body)
        except ValidationError as exc:
            raise InvalidMessageError("message envelope is invalid", exc.messages) from exc
        data["event_id"] = str(data["event_id"])
        data["aggregate_id"] = str(data["aggregate_id"])
        return cls(**data)
