"""Forged, stale and malformed tokens against a running service: each one 401 with the JSON
error body, and nothing stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth import AUDIENCE, ISSUER, development_private_key
from shared.testing import Client, running

SCHOOL = "daugavpils-10-vsk"
PUPIL = {
    "school_id": SCHOOL,
    "grade": 7,
    "gender": "F",
    "given_name": "Ilze",
    "family_name": "Ozola",
    "personal_code": "329876-54321",
    "birth_date": "2008-03-01",
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "forger",
        "role": "teacher",
        "school": SCHOOL,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


class Forger:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    def signed(self, **changes: Any) -> str:
        return jwt.encode(claims(**changes), self.key, algorithm="EdDSA")

    def unsigned(self) -> str:
        return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims())}."

    def hs256_with_public_key(self) -> str:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims())}"
        mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"

    def tampered(self) -> str:
        header, _payload, signature = self.signed().split(".")
        return f"{header}.{segment(claims(role='national_coordinator', school=None))}.{signature}"


FORGERIES: dict[str, Callable[[Forger], str]] = {
    "alg none": Forger.unsigned,
    "HS256 signed with the public key": Forger.hs256_with_public_key,
    "expired": lambda f: f.signed(exp=int(time.time()) - 3600),
    "not yet valid": lambda f: f.signed(nbf=int(time.time()) + 3600),
    "wrong audience": lambda f: f.signed(aud="another-api"),
    "wrong issuer": lambda f: f.signed(iss="someone-else"),
    "role changed after signing": Forger.tampered,
    "no exp": lambda f: f.signed(exp=None),
    "no sub": lambda f: f.signed(sub=None),
    "no iat": lambda f: f.signed(iat=None),
    "no role": lambda f: f.signed(role=None),
    "no school for a school role": lambda f: f.signed(school=None),
    "unknown role": lambda f: f.signed(role="superuser"),
    "another Ed25519 key": lambda f: Forger(Ed25519PrivateKey.generate()).signed(),
    "not a JWT": lambda f: "abc.def",
}


@pytest.fixture(scope="module")
def identification(module_system: Any) -> Iterator[Any]:
    service = module_system.service("identification")
    with running(service):
        yield service


@pytest.fixture(scope="module")
def forger(module_system: Any, identification: Any) -> Forger:
    return Forger(development_private_key({"PUMPURS_KEYS_DIR": str(module_system.keys_dir)}))


def test_the_genuine_token_works(forger: Forger, identification: Any) -> None:
    # The forgeries below differ from this one in one thing each.
    genuine = Client(identification.url, forger.signed(sub="genuine"))
    assert genuine.get("/pupils", params={"school_id": SCHOOL}).status_code == 200


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_token_is_401_and_stores_nothing(
    forgery: str, forger: Forger, module_system: Any, identification: Any
) -> None:
    answer = Client(identification.url, FORGERIES[forgery](forger)).post("/pupils", PUPIL)
    assert answer.status_code == 401, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unauthenticated"
    assert set(error) == {"code", "message", "details"}
    reader = Client(identification.url, module_system.token("teacher", school=SCHOOL))
    assert reader.get("/pupils", params={"school_id": SCHOOL}).json()["items"] == []
