"""Crypto-shredding: a key per pupil, wrapped by the master key.

- Each pupil's personal data and free texts are sealed with AES-256-GCM under the
  pupil's own data key; the pupil id and the purpose are the associated data, so a
  sealed value cannot be moved to another pupil or field unnoticed.
- The data key is stored only wrapped (AES-256-GCM under a key derived from the
  master key) in a mutable table; erasure deletes that row, and with it every way
  back to the plaintext.
- The personal-code index holds a keyed HMAC (a second key derived from the master
  key), never the code: without the master key it cannot be brute-forced.

The master key is ``PUMPURS_MASTER_KEY`` (base64, 32 bytes). With
``PUMPURS_ENV=development`` (the default) and no key set, one is generated under
``PUMPURS_KEYS_DIR`` (``var/keys``) on first use; anywhere else it is required.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.auth import keys_dir, write_once

MASTER_KEY_FILE = "identification-master.key"
_NONCE = 12


class UnreadableError(ValueError):
    """A sealed value or wrapped key that does not open with the key at hand."""


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


def decode_key(value: str, where: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RuntimeError(f"{where} is not valid base64") from None
    if len(key) != 32:
        raise RuntimeError(f"{where} must be 32 bytes (base64), it is {len(key)}")
    return key


def _development_master_key(environ: Mapping[str, str]) -> bytes:
    path = keys_dir(environ) / MASTER_KEY_FILE
    generated = base64.b64encode(AESGCM.generate_key(bit_length=256))
    return decode_key(write_once(path, generated).decode(), str(path))


def master_key(environ: Mapping[str, str]) -> bytes:
    """``PUMPURS_MASTER_KEY``; in development generated once under the keys folder."""
    configured = environ.get("PUMPURS_MASTER_KEY")
    if configured:
        return decode_key(configured, "PUMPURS_MASTER_KEY")
    if environ.get("PUMPURS_ENV", "development") != "development":
        raise RuntimeError("PUMPURS_MASTER_KEY must be set (base64 of 32 random bytes)")
    return _development_master_key(environ)


def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return base64.b64encode(nonce + aead.encrypt(nonce, plaintext, aad)).decode("ascii")


def _open(aead: AESGCM, sealed: str, aad: bytes) -> bytes:
    try:
        raw = base64.b64decode(sealed, validate=True)
        return aead.decrypt(raw[:_NONCE], raw[_NONCE:], aad)
    except (InvalidTag, binascii.Error, ValueError):
        raise UnreadableError("the value does not open with this key") from None


class PupilKey:
    """One pupil's data key: seals and opens that pupil's values."""

    def __init__(self, pupil_id: UUID, key: bytes) -> None:
        self.pupil_id = pupil_id
        self.key = key
        self._aead = AESGCM(key)

    def _aad(self, purpose: str) -> bytes:
        return self.pupil_id.bytes + purpose.encode()

    def seal(self, purpose: str, plaintext: str) -> str:
        return _seal(self._aead, plaintext.encode("utf-8"), self._aad(purpose))

    def open(self, purpose: str, sealed: str) -> str:
        return _open(self._aead, sealed, self._aad(purpose)).decode("utf-8")


class KeyRing:
    """The master key's two uses: wrapping pupils' keys and keying the code index."""

    def __init__(self, master: bytes) -> None:
        self._wrapping = AESGCM(_derive(master, b"pumpurs/identification/key-wrapping/v1"))
        self._index = _derive(master, b"pumpurs/identification/personal-code-index/v1")

    def new_pupil_key(self, pupil_id: UUID) -> PupilKey:
        return PupilKey(pupil_id, AESGCM.generate_key(bit_length=256))

    def wrap(self, key: PupilKey) -> str:
        return _seal(self._wrapping, key.key, b"pupil-key:" + key.pupil_id.bytes)

    def unwrap(self, pupil_id: UUID, wrapped: str) -> PupilKey:
        return PupilKey(pupil_id, _open(self._wrapping, wrapped, b"pupil-key:" + pupil_id.bytes))

    def code_digest(self, personal_code: str) -> str:
        """The index entry of a (canonical) personal code."""
        return hmac.digest(self._index, personal_code.encode(), "sha256").hex()
