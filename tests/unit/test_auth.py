"""Tokens and the role and tenant policy."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from shared.auth import AUDIENCE, ISSUER, TokenVerifier, mint_token, public_key_pem
from shared.errors import AuthenticationError, ForbiddenError


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {"PUMPURS_KEYS_DIR": str(tmp_path / "keys")}


@pytest.fixture
def verifier(environ: dict[str, str]) -> TokenVerifier:
    return TokenVerifier(public_key_pem(environ))


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_a_minted_token_verifies_with_its_claims(
    environ: dict[str, str], verifier: TokenVerifier
) -> None:
    token = mint_token("teacher", sub="anna", school="daugavpils-10-vsk", environ=environ)
    principal = verifier.verify(bearer(token))
    assert (principal.sub, principal.role, principal.school) == (
        "anna",
        "teacher",
        "daugavpils-10-vsk",
    )


def test_the_key_is_generated_once_and_private(environ: dict[str, str]) -> None:
    first = public_key_pem(environ)
    assert public_key_pem(environ) == first
    key_file = Path(environ["PUMPURS_KEYS_DIR"]) / "jwt-ed25519.pem"
    assert key_file.stat().st_mode & 0o077 == 0


def test_an_expired_token_is_refused(environ: dict[str, str], verifier: TokenVerifier) -> None:
    token = mint_token("auditor", sub="a", ttl_seconds=-60, environ=environ)
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(bearer(token))


def test_an_unsigned_token_is_refused(verifier: TokenVerifier) -> None:
    claims = {
        "sub": "x",
        "role": "national_coordinator",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    unsigned = jwt.encode(claims, key="", algorithm="none")
    with pytest.raises(AuthenticationError):
        verifier.verify(bearer(unsigned))


def test_a_tampered_payload_is_refused(environ: dict[str, str], verifier: TokenVerifier) -> None:
    token = mint_token("teacher", sub="anna", school="daugavpils-10-vsk", environ=environ)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "national_coordinator"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AuthenticationError):
        verifier.verify(bearer(f"{header}.{forged}.{signature}"))


def test_a_token_for_another_audience_is_refused(
    environ: dict[str, str], verifier: TokenVerifier
) -> None:
    from shared.auth import development_private_key

    claims = {
        "sub": "x",
        "role": "auditor",
        "iss": ISSUER,
        "aud": "someone-else",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    token = jwt.encode(claims, development_private_key(environ), algorithm="EdDSA")
    with pytest.raises(AuthenticationError):
        verifier.verify(bearer(token))


def test_a_school_role_without_a_school_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError):
        mint_token("teacher", sub="t", environ=environ)


def test_tenants(environ: dict[str, str], verifier: TokenVerifier) -> None:
    def principal(role: str, school: str | None = None, municipality: str | None = None) -> Any:
        token = mint_token(role, sub="s", school=school, municipality=municipality, environ=environ)
        return verifier.verify(bearer(token))

    teacher = principal("teacher", school="daugavpils-10-vsk")
    assert teacher.sees_school("daugavpils-10-vsk")
    assert not teacher.sees_school("daugavpils-12-vsk")
    coordinator = principal("municipal_coordinator", municipality="daugavpils")
    assert coordinator.sees_school("daugavpils-12-vsk")
    assert not principal("municipal_coordinator", municipality="riga").sees_school(
        "daugavpils-12-vsk"
    )
    assert principal("auditor").sees_school("daugavpils-12-vsk")
    assert not principal("operator").sees_school("daugavpils-12-vsk")
    with pytest.raises(ForbiddenError):
        teacher.require("director")


def test_while_rotating_a_token_of_either_key_verifies_and_no_other(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    old, new = {"PUMPURS_KEYS_DIR": str(tmp_path / "old")}, environ
    outsider = {"PUMPURS_KEYS_DIR": str(tmp_path / "outsider")}
    rotating = TokenVerifier(public_key_pem(old) + public_key_pem(new))
    for keys in (old, new):
        token = mint_token("auditor", sub="ieva", environ=keys)
        assert rotating.verify(bearer(token)).sub == "ieva"
    with pytest.raises(AuthenticationError, match="InvalidSignatureError"):
        rotating.verify(bearer(mint_token("auditor", sub="x", environ=outsider)))
    expired = mint_token("auditor", sub="late", ttl_seconds=-60, environ=old)
    with pytest.raises(AuthenticationError, match="expired"):
        rotating.verify(bearer(expired))


def test_a_verification_key_setting_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="no PEM public key"):
        TokenVerifier(b"not a key")


def test_keys_generated_by_processes_starting_together_are_one_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from shared.auth import write_once

    path = tmp_path / "keys" / "k.pem"
    with ThreadPoolExecutor(8) as pool:
        seen = set(pool.map(lambda i: write_once(path, f"key {i}".encode()), range(64)))
    assert len(seen) == 1 and seen == {path.read_bytes()}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["k.pem"]  # nothing left aside
