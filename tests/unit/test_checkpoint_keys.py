"""After the audit key is rotated, checkpoints signed before still verify; forgeries do not."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.checkpoint import public_pem, sign, with_retired


def test_a_checkpoint_of_a_retired_key_verifies_only_while_that_key_is_listed() -> None:
    old, new, forger = (Ed25519PrivateKey.generate() for _ in range(3))
    before = sign("planning", 120, bytes(32), old)
    after = sign("planning", 180, bytes(32), new)
    retired = {"PUMPURS_AUDIT_RETIRED_PUBLIC_KEYS": public_pem(old.public_key()).decode()}

    keys = with_retired(new.public_key(), retired)
    assert before.verifies(keys) and after.verifies(keys)
    assert not sign("planning", 120, bytes(32), forger).verifies(keys)

    current_only = with_retired(new.public_key(), {})
    assert after.verifies(current_only) and not before.verifies(current_only)
    assert not before.anchor(current_only, "reporting's checkpoint").valid
