"""The registry of integration event types, by source, name and schema version."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from marshmallow import RAISE, Schema, ValidationError

from shared.contracts.envelope import Envelope, InvalidMessageError


class UnknownEventError(InvalidMessageError):
    """A message whose type or schema version this consumer does not know."""


@functools.cache
def _schema(schema: type[Schema], strict: bool) -> Schema:
    """One instance per schema and mode, reused for every event (building one per event cost
    more than the dump or load itself)."""
    return schema(unknown=RAISE) if strict else schema()


@dataclass(frozen=True)
class Contract:
    source: str
    event_type: str
    version: int
    schema: type[Schema]
    domain_event: str  # qualified class name of the domain event, e.g. Pupil.Registered

    def dump(self, event: Any) -> dict[str, Any]:
        return dict(_schema(self.schema, strict=False).dump(vars(event)))

    def load(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(_schema(self.schema, strict=True).load(payload))
        except ValidationError as exc:
            raise InvalidMessageError(
                f"payload of {self.event_type} v{self.version} is invalid", exc.messages
            ) from exc


class Registry:
    def __init__(self) -> None:
        self._by_type: dict[tuple[str, str, int], Contract] = {}
        self._by_domain: dict[tuple[str, str], Contract] = {}

    def register(
        self, source: str, event_type: str, version: int, schema: type[Schema], domain_event: str
    ) -> None:
        contract = Contract(source, event_type, version, schema, domain_event)
        self._by_type[(source, event_type, version)] = contract
        current = self._by_domain.get((source, domain_event))
        if current is None or current.version < version:
            self._by_domain[(source, domain_event)] = contract

    def for_domain_event(self, source: str, domain_event: str) -> Contract:
        """The newest contract a source publishes a domain event under."""
        try:
            return self._by_domain[(source, domain_event)]
        except KeyError:
            raise LookupError(
                f"{source} has no integration contract for domain event {domain_event}"
            ) from None

    def load(self, envelope: Envelope) -> dict[str, Any]:
        """The validated payload of an envelope, or UnknownEventError / InvalidMessageError."""
        key = (envelope.source, envelope.event_type, envelope.schema_version)
        contract = self._by_type.get(key)
        if contract is None:
            raise UnknownEventError(
                f"unknown event {envelope.source}.{envelope.event_type} v{envelope.schema_version}"
            )
        return contract.load(envelope.payload)

    def __iter__(self) -> Iterator[Contract]:
        return iter(self._by_type.values())


registry = Registry()
