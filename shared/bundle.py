"""Audit bundles: one service's stored events, its chain and a signed checkpoint, in a folder.

``events.jsonl``    one stored record a line, exactly as stored (state in base64)
``chain.jsonl``     one link a line (position, previous position, hash in hex)
``checkpoint.json`` the signed head: service, position, hash, time (Ed25519)
``public-key.pem``  the key that signed it (pin your own copy: see ``verify_bundle``)

Verifying needs nothing but the folder (and the pinned key): no database, no broker.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.audit import bound, read_links, read_records
from shared.chain import MALFORMED_RECORD, Anchor, Broken, Link, Record, Verification, verify
from shared.checkpoint import SignedCheckpoint, fingerprint, load_public_key, public_pem, sign
from shared.store import ServiceApplication

EVENTS, CHAIN, CHECKPOINT, PUBLIC_KEY = (
    "events.jsonl",
    "chain.jsonl",
    "checkpoint.json",
    "public-key.pem",
)
BEYOND_CHECKPOINT = "beyond_checkpoint"


class BundleError(ValueError):
    """The folder is not a bundle (or not an empty folder to export into)."""


class ChainBrokenError(RuntimeError):
    """The store's chain is broken: its head is not signed."""

    def __init__(self, verification: Verification) -> None:
        super().__init__("the chain is broken; nothing was signed")
        self.verification = verification


# -- lines ---------------------------------------------------------------------------------


def record_line(r: Record) -> str:
    state = base64.b64encode(r.state).decode()
    return json.dumps(
        {
            "position": r.position,
            "originator_id": r.originator_id,
            "originator_version": r.originator_version,
            "topic": r.topic,
            "state": state,
        },
        separators=(",", ":"),
    )


def link_line(link: Link) -> str:
    return json.dumps(
        {"position": link.position, "previous": link.previous, "hash": link.hash.hex()},
        separators=(",", ":"),
    )


def _record(data: dict[str, Any]) -> Record:
    return Record(
        int(data["position"]),
        str(data["originator_id"]),
        int(data["originator_version"]),
        str(data["topic"]),
        base64.b64decode(data["state"], validate=True),
    )


def _link(data: dict[str, Any]) -> Link:
    return Link(int(data["position"]), int(data["previous"]), bytes.fromhex(data["hash"]))


class MalformedLineError(ValueError):
    def __init__(self, name: str, line: int, position: int) -> None:
        super().__init__(f"{name} line {line} cannot be read")
        self.position = position


class _Lines:
    """Parses one file lazily; a line that cannot be read stops the walk with its position."""

    def __init__(self, path: Path, parse: Any) -> None:
        self.path, self.parse, self.last = path, parse, 0

    def __iter__(self) -> Iterator[Any]:
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    item = self.parse(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    raise MalformedLineError(self.path.name, number, self.last + 1) from None
                self.last = item.position
                yield item


# -- export ------------------------------------------------------------------------------------


def _written(items: Iterable[Any], out: IO[str], line: Any) -> Iterator[Any]:
    for item in items:
        out.write(line(item) + "\n")
        yield item


def export_bundle(
    app: ServiceApplication, folder: Path, key: Ed25519PrivateKey, anchors: Sequence[Anchor] = ()
) -> tuple[SignedCheckpoint, Verification]:
    """Write the bundle in one pass over the store, verifying as it goes; sign only an
    unbroken chain (a broken one leaves no bundle behind and raises ChainBrokenError)."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise BundleError(f"{folder} is not empty")
    upto = bound(app)
    try:
        with ExitStack() as files:
            events = files.enter_context((folder / EVENTS).open("w", encoding="utf-8"))
            chain = files.enter_context((folder / CHAIN).open("w", encoding="utf-8"))
            result = verify(
                _written(read_records(app, upto), events, record_line),
                _written(read_links(app, upto), chain, link_line),
                anchors,
            )
        if not result.ok:
            raise ChainBrokenError(result)
    except BaseException:
        for name in (EVENTS, CHAIN):
            (folder / name).unlink(missing_ok=True)
        raise
    signed = sign(app.name, result.head_position, result.head_hash, key)
    (folder / CHECKPOINT).write_text(json.dumps(signed.to_dict(), indent=2) + "\n")
    (folder / PUBLIC_KEY).write_bytes(public_pem(key.public_key()))
    return signed, result


# -- offline verification ------------------------------------------------------------------------


@dataclass
class BundleVerification:
    checkpoint: SignedCheckpoint
    signature_valid: bool
    key_pinned: bool
    key_fingerprint: str
    chain: Verification

    @property
    def ok(self) -> bool:
        return self.signature_valid and self.chain.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checkpoint": self.checkpoint.to_dict()["checkpoint"],
            "signature_valid": self.signature_valid,
            "key": "pinned" if self.key_pinned else "bundled (pin it with --public-key)",
            "key_fingerprint": self.key_fingerprint,
            **{k: v for k, v in self.chain.to_dict().items() if k != "ok"},
        }


def read_checkpoint(path: Path) -> SignedCheckpoint:
    try:
        return SignedCheckpoint.from_dict(json.loads(path.read_text("utf-8")))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: {exc}") from None


def verify_bundle(folder: Path, pinned: Ed25519PublicKey | None = None) -> BundleVerification:
    """Check the signature, recompute the chain from the bundle's records, and name the first
    broken position. Without a pinned key the bundle's own key is used: that proves only
    that the bundle is whole, not who signed it."""
    for name in (EVENTS, CHAIN, CHECKPOINT):
        if not (folder / name).is_file():
            raise BundleError(f"{folder} has no {name}")
    signed = read_checkpoint(folder / CHECKPOINT)
    key = pinned or load_public_key((folder / PUBLIC_KEY).read_bytes())
    valid = signed.verifies(key)
    c = signed.checkpoint
    anchor = Anchor(c.position, "the bundle's checkpoint", bytes.fromhex(c.hash), valid)
    records, links = _Lines(folder / EVENTS, _record), _Lines(folder / CHAIN, _link)
    try:
        result = verify(records, links, [anchor])
    except MalformedLineError as exc:
        result = Verification(first_broken=Broken(exc.position, MALFORMED_RECORD, str(exc)))
    if result.ok and result.head_position > c.position:
        result.first_broken = Broken(
            c.position + 1,
            BEYOND_CHECKPOINT,
            f"records after the signed head ({c.position}) are not covered by the signature",
        )
    return BundleVerification(signed, valid, pinned is not None, fingerprint(key), result)
