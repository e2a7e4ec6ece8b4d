"""Signed checkpoints of a chain's head, the key that signs them, and where reporting keeps them.

A checkpoint says "service S's chain had head hash H at position P, seen at time T", signed
with Ed25519. Kept outside the service's own database (in an export bundle an auditor
holds, or in reporting's database), it shows what the chain alone cannot: that the tail
was cut off afterwards, or that history up to P was rewritten and rechained.

The signing key: ``PUMPURS_AUDIT_SIGNING_KEY`` (PEM) or ``PUMPURS_AUDIT_SIGNING_KEY_FILE``;
in local development one is generated under ``var/keys`` on first use. The matching public
key (``pumpurs audit public-key``) is what an auditor pins.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.auth import generated_private_key, keys_dir
from shared.chain import Anchor
from shared.store import SQLITE, ServiceApplication, guard_append_only

KIND = "pumpurs.audit.checkpoint/1"


class Verifier(Protocol):
    """An Ed25519 public key, or several (``KeySet``)."""

    def verify(self, signature: bytes, data: bytes) -> None: ...


class KeySet:
    """The current checkpoint key and the retired ones: a checkpoint signed before a key
    rotation still verifies (``PUMPURS_AUDIT_RETIRED_PUBLIC_KEYS``, PEM keys one after
    the other)."""

    def __init__(self, keys: Sequence[Verifier]) -> None:
        self.keys = list(keys)

    def verify(self, signature: bytes, data: bytes) -> None:
        for key in self.keys:
            try:
                key.verify(signature, data)
            except InvalidSignature:
                continue
            return
        raise InvalidSignature


def with_retired(key: Verifier, environ: Mapping[str, str] | None = None) -> KeySet:
    environ = os.environ if environ is None else environ
    retired = environ.get("PUMPURS_AUDIT_RETIRED_PUBLIC_KEYS", "").encode()
    marker = b"-----BEGIN PUBLIC KEY-----"
    return KeySet([key, *(load_public_key(marker + pem) for pem in retired.split(marker)[1:])])


@dataclass(frozen=True)
class Checkpoint:
    service: str
    position: int
    hash: str  # hex
    at: str  # ISO 8601, UTC

    def message(self) -> bytes:
        """The signed bytes: canonical JSON, so any change to any field fails the signature."""
        return json.dumps(
            {"kind": KIND, **asdict(self)}, sort_keys=True, separators=(",", ":")
        ).encode()


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    signature: bytes

    def verifies(self, key: Verifier) -> bool:
        try:
            key.verify(self.signature, self.checkpoint.message())
        except InvalidSignature:
            return False
        return True

    def anchor(self, key: Verifier, source: str) -> Anchor:
        c = self.checkpoint
        return Anchor(c.position, f"{source} of {c.at}", bytes.fromhex(c.hash), self.verifies(key))

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": asdict(self.checkpoint),
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedCheckpoint:
        try:
            c = data["checkpoint"]
            bytes.fromhex(str(c["hash"]))
            checkpoint = Checkpoint(
                str(c["service"]), int(c["position"]), str(c["hash"]), str(c["at"])
            )
            return cls(checkpoint, base64.b64decode(data["signature"], validate=True))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a signed checkpoint ({type(exc).__name__})") from None


def sign(service: str, position: int, head_hash: bytes, key: Ed25519PrivateKey) -> SignedCheckpoint:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    checkpoint = Checkpoint(service, position, head_hash.hex(), at)
    return SignedCheckpoint(checkpoint, key.sign(checkpoint.message()))


# -- keys ----------------------------------------------------------------------------------


def _is_local(environ: Mapping[str, str]) -> bool:
    return environ.get("PUMPURS_ENV", "development") == "development"


def signing_key(environ: Mapping[str, str] | None = None) -> Ed25519PrivateKey:
    environ = os.environ if environ is None else environ
    if environ.get("PUMPURS_AUDIT_SIGNING_KEY"):
        return _private(environ["PUMPURS_AUDIT_SIGNING_KEY"].encode())
    if environ.get("PUMPURS_AUDIT_SIGNING_KEY_FILE"):
        return _private(Path(environ["PUMPURS_AUDIT_SIGNING_KEY_FILE"]).read_bytes())
    if not _is_local(environ):
        raise RuntimeError(
            "PUMPURS_AUDIT_SIGNING_KEY or PUMPURS_AUDIT_SIGNING_KEY_FILE must be set"
        )
    return generated_private_key(keys_dir(environ) / "audit-ed25519.pem")


def verification_key(environ: Mapping[str, str] | None = None) -> Ed25519PublicKey:
    """PUMPURS_AUDIT_PUBLIC_KEY(_FILE), or the public half of the signing key."""
    environ = os.environ if environ is None else environ
    if environ.get("PUMPURS_AUDIT_PUBLIC_KEY"):
        return load_public_key(environ["PUMPURS_AUDIT_PUBLIC_KEY"].encode())
    if environ.get("PUMPURS_AUDIT_PUBLIC_KEY_FILE"):
        return load_public_key(Path(environ["PUMPURS_AUDIT_PUBLIC_KEY_FILE"]).read_bytes())
    return signing_key(environ).public_key()


def _private(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the audit signing key is not an Ed25519 key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the audit public key is not an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


# -- the checkpoints reporting keeps ----------------------------------------------------------


class CheckpointLog:
    """Append-only: the signed heads reporting has seen of each service's chain."""

    def __init__(self, app: ServiceApplication) -> None:
        self.app = app
        self.table = f"{app.table_prefix}audit_checkpoints"
        self._created = False

    def create_table(self) -> None:
        if self._created:
            return
        key = (
            "INTEGER PRIMARY KEY AUTOINCREMENT"
            if self.app.dialect == SQLITE
            else "bigserial PRIMARY KEY"
        )
        with self.app.transaction() as sql:
            sql.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (id {key}, service TEXT NOT NULL, "
                "position BIGINT NOT NULL, hash TEXT NOT NULL, at TEXT NOT NULL, "
                "signature TEXT NOT NULL)"
            )
        guard_append_only(self.app, self.table)
        self._created = True

    def append(self, signed: SignedCheckpoint) -> None:
        self.create_table()
        c = signed.checkpoint
        signature = base64.b64encode(signed.signature).decode()
        with self.app.transaction() as sql:
            sql.execute(
                f"INSERT INTO {self.table} (service, position, hash, at, signature) "
                "VALUES (?, ?, ?, ?, ?)",
                (c.service, c.position, c.hash, c.at, signature),
            )

    def latest(self, service: str) -> SignedCheckpoint | None:
        """The checkpoint with the highest position (the one that covers the most)."""
        self.create_table()
        rows = self.app.query(
            f"SELECT service, position, hash, at, signature FROM {self.table} "
            "WHERE service = ? ORDER BY position DESC, id DESC LIMIT 1",
            (service,),
        )
        if not rows:
            return None
        row = rows[0]
        return SignedCheckpoint.from_dict(
            {
                "checkpoint": {k: row[k] for k in ("service", "position", "hash", "at")},
                "signature": row["signature"],
            }
        )
