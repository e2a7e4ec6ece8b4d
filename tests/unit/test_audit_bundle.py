"""Audit bundles: exported from a store, checked offline; every kind of edit is named."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.domain import Aggregate, event

from shared.bundle import (
    BEYOND_CHECKPOINT,
    CHAIN,
    CHECKPOINT,
    EVENTS,
    PUBLIC_KEY,
    BundleError,
    ChainBrokenError,
    export_bundle,
    verify_bundle,
)
from shared.chain import (
    CHANGED_RECORD,
    FORGED_CHECKPOINT,
    MALFORMED_RECORD,
    TRUNCATED_TAIL,
    Anchor,
)
from shared.checkpoint import CheckpointLog, public_pem, sign, signing_key, verification_key
from shared.store import ServiceApplication, guard_stored_events, store_env


class Note(Aggregate):
    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text

    @event("Amended")
    def amend(self, text: str) -> None:
        self.text = text


class Store(ServiceApplication):
    name = "planning"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Store]:
    store = Store(store_env("planning", tmp_path / "data", {}))
    guard_stored_events(store)
    for n in range(3):
        note = Note(f"note {n}")
        note.amend(f"note {n}, amended")
        store.save(note)
    yield store
    store.close()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def bundle(app: Store, key: Ed25519PrivateKey, tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    export_bundle(app, folder, key)
    return folder


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, items: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))


def test_a_good_bundle_verifies_against_the_pinned_key(
    bundle: Path, key: Ed25519PrivateKey, app: Store
) -> None:
    result = verify_bundle(bundle, key.public_key())
    assert result.ok and result.signature_valid and result.key_pinned
    assert result.chain.head_position == app.head() == result.checkpoint.checkpoint.position
    assert result.chain.records == 6
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        [EVENTS, CHAIN, CHECKPOINT, PUBLIC_KEY]
    )


def test_a_changed_byte_in_the_events_is_found_at_its_position(
    bundle: Path, key: Ed25519PrivateKey
) -> None:
    events = lines(bundle / EVENTS)
    state = bytearray(base64.b64decode(events[3]["state"]))
    state[5] ^= 0x20
    events[3]["state"] = base64.b64encode(bytes(state)).decode()
    write(bundle / EVENTS, events)
    result = verify_bundle(bundle, key.public_key())
    assert not result.ok and result.signature_valid
    broken = result.chain.first_broken
    assert broken is not None and (broken.position, broken.reason) == (4, CHANGED_RECORD)


def test_a_forged_checkpoint_fails_the_signature(bundle: Path, key: Ed25519PrivateKey) -> None:
    signed = json.loads((bundle / CHECKPOINT).read_text())
    signed["checkpoint"]["position"] = 5  # claims a shorter history, keeps the old signature
    (bundle / CHECKPOINT).write_text(json.dumps(signed))
    result = verify_bundle(bundle, key.public_key())
    assert not result.ok and not result.signature_valid
    broken = result.chain.first_broken
    assert broken is not None and (broken.position, broken.reason) == (5, FORGED_CHECKPOINT)


def test_a_bundle_re_signed_with_another_key_fails_only_against_the_pinned_one(
    bundle: Path, key: Ed25519PrivateKey
) -> None:
    # Someone cuts the last record and signs the shorter chain with a key of their own.
    events, chain = lines(bundle / EVENTS)[:-1], lines(bundle / CHAIN)[:-1]
    write(bundle / EVENTS, events)
    write(bundle / CHAIN, chain)
    theirs = Ed25519PrivateKey.generate()
    head = chain[-1]
    forged = sign("planning", head["position"], bytes.fromhex(head["hash"]), theirs)
    (bundle / CHECKPOINT).write_text(json.dumps(forged.to_dict()))
    (bundle / PUBLIC_KEY).write_bytes(public_pem(theirs.public_key()))
    assert verify_bundle(bundle).ok  # the bundle's own key proves only that it is whole
    pinned = verify_bundle(bundle, key.public_key())
    assert not pinned.ok and not pinned.signature_valid


def test_a_truncated_bundle_is_named_against_its_checkpoint(
    bundle: Path, key: Ed25519PrivateKey
) -> None:
    write(bundle / EVENTS, lines(bundle / EVENTS)[:4])
    write(bundle / CHAIN, lines(bundle / CHAIN)[:4])
    broken = verify_bundle(bundle, key.public_key()).chain.first_broken
    assert broken is not None and (broken.position, broken.reason) == (5, TRUNCATED_TAIL)


def test_records_appended_after_the_signed_head_are_not_covered(
    bundle: Path, key: Ed25519PrivateKey
) -> None:
    from shared.bundle import link_line, record_line
    from shared.chain import Link, Record, extend

    last = lines(bundle / CHAIN)[-1]
    extra = Record(7, "0" * 32, 1, "x", b"{}")
    link = extend(Link(last["position"], last["previous"], bytes.fromhex(last["hash"])), [extra])
    with (bundle / EVENTS).open("a") as out:
        out.write(record_line(extra) + "\n")
    with (bundle / CHAIN).open("a") as out:
        out.write(link_line(link[0]) + "\n")
    broken = verify_bundle(bundle, key.public_key()).chain.first_broken
    assert broken is not None and (broken.position, broken.reason) == (7, BEYOND_CHECKPOINT)


def test_a_line_that_cannot_be_read_is_named(bundle: Path, key: Ed25519PrivateKey) -> None:
    text = (bundle / EVENTS).read_text().splitlines()
    text[2] = text[2][:-5]
    (bundle / EVENTS).write_text("\n".join(text) + "\n")
    broken = verify_bundle(bundle, key.public_key()).chain.first_broken
    assert broken is not None and (broken.position, broken.reason) == (3, MALFORMED_RECORD)


def test_a_broken_chain_is_not_signed_and_leaves_no_bundle(
    app: Store, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    folder = tmp_path / "refused"
    truncated = Anchor(app.head() + 2, "reporting's inbox")
    with pytest.raises(ChainBrokenError) as refused:
        export_bundle(app, folder, key, [truncated])
    assert refused.value.verification.first_broken is not None
    assert list(folder.iterdir()) == []


def test_export_wants_an_empty_folder(bundle: Path, app: Store, key: Ed25519PrivateKey) -> None:
    with pytest.raises(BundleError, match="not empty"):
        export_bundle(app, bundle, key)


# -- checkpoints and keys ------------------------------------------------------------------------


def test_reporting_keeps_checkpoints_append_only_and_reads_the_highest(
    app: Store, key: Ed25519PrivateKey
) -> None:
    log = CheckpointLog(app)
    for position in (2, 5, 4):
        log.append(sign("identification", position, bytes(32), key))
    latest = log.latest("identification")
    assert latest is not None and latest.checkpoint.position == 5
    assert latest.verifies(key.public_key())
    assert log.latest("provisioning") is None
    with pytest.raises(Exception, match="immutable"), app.transaction() as sql:
        sql.execute(f"DELETE FROM {log.table}")


def test_the_signing_key_comes_from_settings_and_only_development_generates_one(
    tmp_path: Path,
) -> None:
    with pytest.raises(RuntimeError, match="PUMPURS_AUDIT_SIGNING_KEY"):
        signing_key({"PUMPURS_ENV": "production"})
    dev = {"PUMPURS_KEYS_DIR": str(tmp_path / "keys")}
    first = public_pem(signing_key(dev).public_key())
    assert public_pem(verification_key(dev)) == first  # generated once, then reused
    pem = tmp_path / "audit.pem"
    pem.write_bytes((tmp_path / "keys" / "audit-ed25519.pem").read_bytes())
    configured = {"PUMPURS_ENV": "production", "PUMPURS_AUDIT_SIGNING_KEY_FILE": str(pem)}
    assert public_pem(signing_key(configured).public_key()) == first
