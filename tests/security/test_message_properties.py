"""Properties of the integration messages: every contract's payload survives the wire
(dump -> JSON -> load -> dump gives the same payload), and malformed input is refused with
InvalidMessageError, never another exception (which would crash a consumer instead of
parking the message)."""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields, validate

from shared.contracts import Contract, Envelope, InvalidMessageError, registry

pytestmark = pytest.mark.store_free  # opens no store: run with the first store only

CONTRACTS = sorted(registry, key=lambda c: (c.source, c.event_type, c.version))


def _validator(field: fields.Field, kind: type) -> Any:
    return next((v for v in field.validators if isinstance(v, kind)), None)


def strategy_for(field: fields.Field) -> st.SearchStrategy[Any]:
    """Values a domain event could hold for the field, within its validators."""
    one_of = _validator(field, validate.OneOf)
    if one_of is not None:
        values: st.SearchStrategy[Any] = st.sampled_from(list(one_of.choices))
    elif isinstance(field, fields.Nested):
        nested = field.nested
        assert isinstance(nested, type) and issubclass(nested, Schema)
        values = event_strategy(nested())
    elif isinstance(field, fields.List):
        values = st.lists(strategy_for(field.inner), max_size=4)
    elif isinstance(field, fields.Dict):
        assert field.key_field is not None and field.value_field is not None
        values = st.dictionaries(
            strategy_for(field.key_field), strategy_for(field.value_field), max_size=4
        )
    elif isinstance(field, fields.Decimal):
        values = st.decimals(
            min_value=Decimal(0), max_value=Decimal(10**7), places=2, allow_nan=False
        )
    elif isinstance(field, fields.Integer):
        bounds = _validator(field, validate.Range)
        values = st.integers(bounds.min if bounds else 0, bounds.max if bounds else 10**9)
    elif isinstance(field, fields.Boolean):
        values = st.booleans()
    elif isinstance(field, fields.Date):
        values = st.dates(min_value=date(2017, 1, 1), max_value=date(2030, 12, 31))
    else:
        values = st.text(min_size=1, max_size=30)
    if field.allow_none:
        values = st.none() | values
    return values


def event_strategy(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            name: strategy_for(field)
            for name, field in schema.fields.items()
            if not isinstance(field, fields.Function)  # taken from the aggregate id
        }
    )


def wire(payload: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(payload)))


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: f"{c.source}.{c.event_type}")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_contract_round_trips(contract: Contract, data: st.DataObject) -> None:
    attributes = data.draw(event_strategy(contract.schema()))
    aggregate_id = str(uuid.uuid4())
    payload = wire(contract.dump(SimpleNamespace(**attributes, originator_id=aggregate_id)))
    loaded = contract.load(payload)
    again = wire(contract.dump(SimpleNamespace(**loaded, originator_id=aggregate_id)))
    assert again == payload


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
VALID = {
    "event_id": "8d6b6a3e-6f1f-4a77-9d53-0c2b7d0b6a11",
    "event_type": "pupil_flagged_at_risk",
    "schema_version": 1,
    "source": "identification",
    "notification_id": 7,
    "previous_id": 6,
    "occurred_at": "2019-10-01T08:00:00+00:00",
    "aggregate_id": "2b8e4b41-7a39-4b55-8d0e-7d3c4e0c9f10",
    "aggregate_version": 3,
    "actor": "teacher-1",
    "payload": {"school_id": "daugavpils-10-vsk"},
}


def accepted_or_refused(body: Any) -> None:
    """Loads, or raises InvalidMessageError; any other exception fails the test."""
    try:
        envelope = Envelope.from_message(body)
        registry.load(envelope)
    except InvalidMessageError:
        pass


@given(body=JSON_VALUES)
def test_any_json_is_loaded_or_refused_as_an_invalid_message(body: Any) -> None:
    accepted_or_refused(body)


@given(
    name=st.sampled_from(sorted(VALID)),
    value=JSON_VALUES,
    drop=st.booleans(),
)
def test_a_valid_envelope_with_one_field_broken_is_loaded_or_refused(
    name: str, value: Any, drop: bool
) -> None:
    body = dict(VALID)
    if drop:
        del body[name]
    else:
        body[name] = value
    accepted_or_refused(body)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: f"{c.source}.{c.event_type}")
@settings(max_examples=15, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6))
def test_any_payload_of_a_known_type_is_loaded_or_refused(
    contract: Contract, payload: dict[str, Any]
) -> None:
    body = {
        **VALID,
        "source": contract.source,
        "event_type": contract.event_type,
        "schema_version": contract.version,
        "payload": payload,
    }
    accepted_or_refused(body)
