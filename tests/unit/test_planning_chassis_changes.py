"""The chassis changes planning's performance work made still behave as before."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.auth import TokenVerifier, mint_token, public_key_pem
from shared.contracts import Envelope
from shared.errors import AuthenticationError


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {"PUMPURS_KEYS_DIR": str(tmp_path / "keys")}


def test_a_remembered_token_still_expires(environ: dict[str, str]) -> None:
    verifier = TokenVerifier(public_key_pem(environ), leeway=0)
    token = mint_token("teacher", sub="anna", school="s", ttl_seconds=1, environ=environ)
    assert verifier.verify(f"Bearer {token}").sub == "anna"
    assert verifier.verify(f"Bearer {token}").sub == "anna"  # remembered
    time.sleep(2.1)
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(f"Bearer {token}")


def test_a_token_differing_in_any_byte_from_a_remembered_one_is_verified_anew(
    environ: dict[str, str],
) -> None:
    verifier = TokenVerifier(public_key_pem(environ))
    token = mint_token("teacher", sub="anna", school="s", environ=environ)
    verifier.verify(f"Bearer {token}")
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(AuthenticationError):
        verifier.verify(f"Bearer {forged}")


def test_the_verifier_remembers_a_bounded_number_of_tokens(environ: dict[str, str]) -> None:
    verifier = TokenVerifier(public_key_pem(environ), remember=2)
    tokens = [mint_token("auditor", sub=f"a{i}", environ=environ) for i in range(3)]
    for token in tokens:
        verifier.verify(f"Bearer {token}")
    assert len(verifier._verified) == 2


def test_an_envelope_message_is_a_copy_that_round_trips() -> None:
    envelope = Envelope(
        event_id="8d6b6a3e-6f1f-4a77-9d53-0c2b7d0b6a11",
        event_type="plan_submitted",
        schema_version=1,
        source="planning",
        notification_id=2,
        previous_id=1,
        occurred_at=datetime(2019, 10, 1, tzinfo=UTC),
        aggregate_id="2b8e4b41-7a39-4b55-8d0e-7d3c4e0c9f10",
        aggregate_version=4,
        actor="anna",
        payload={"pending_level": "school"},
    )
    message = envelope.to_message()
    message["payload"]["pending_level"] = "national"
    assert envelope.payload == {"pending_level": "school"}
    assert Envelope.from_message(envelope.to_message()) == envelope
