"""Erasure on the store under test: after it, the database files (SQLite's raw bytes, or
PostgreSQL's dump and its tables' and indexes' files) hold neither the pupil's name nor
personal code in any form, nor what would unlock them; the pupil id keeps working. And every
read of personal data is on record."""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

from shared.testing import Client, ServiceProcess, postgres_conninfo, running

SCHOOL = "daugavpils-10-vsk"
# Canary values: nothing else in the database could contain them by chance.
GIVEN, FAMILY = "Kanārijģirts", "Žvirbulēns-Ņaudiņš"
CODE, BORN = "291107-21239", "2007-11-29"
EVIDENCE = "Kanārijģirts cares for three siblings"
PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"


def forms(value: str) -> set[bytes]:
    """The ways a value could sit in a file: encodings, escapes, hex, base64."""
    found = set()
    for text in {value, unicodedata.normalize("NFD", value), value.replace("-", "")}:
        utf8 = text.encode()
        found |= {
            utf8,
            text.encode("utf-16-le"),
            text.encode("utf-16-be"),
            json.dumps(text).strip('"').encode(),  # \\u escapes
            binascii.hexlify(utf8),
            binascii.hexlify(utf8).upper(),
        }
        for shift in range(3):  # base64 of the value at each alignment, edges cut
            encoded = base64.b64encode(b"\0" * shift + utf8)[4:-4]
            found.add(encoded)
    return {f for f in found if len(f) >= 6}


CANARIES = {v: forms(v) for v in (GIVEN, FAMILY, CODE, EVIDENCE, BORN)}


def database_image(system: Any) -> bytes:
    """What an attacker with the database would hold."""
    if system.stores.kind == "postgres":
        env = {
            **os.environ,
            "PGPASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
        }
        dump = subprocess.run(
            [
                PG_DUMP,
                "-h",
                os.environ["POSTGRES_HOST"],
                "-p",
                os.environ["POSTGRES_PORT"],
                "-U",
                os.environ["POSTGRES_USER"],
                "--no-owner",
                system.stores.database("identification"),
            ],
            env=env,
            capture_output=True,
            check=True,
        )
        return dump.stdout + relation_files(system)
    files = sorted(system.stores.data_dir.glob("identification.sqlite*"))
    assert files, "no SQLite files"
    return b"".join(path.read_bytes() for path in files)


def relation_files(system: Any) -> bytes:
    """The raw files of identification's tables and indexes, as the server keeps them on disk
    (read through the server, as its superuser): deleted rows linger there, not in a dump."""
    import psycopg

    conninfo = postgres_conninfo(os.environ, system.stores.database("identification"))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the pages in shared memory, written out
        paths = conn.execute(
            "SELECT pg_relation_filepath(oid) FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'i', 't')"
        ).fetchall()
        files = [
            conn.execute("SELECT pg_read_binary_file(%s)", (path,)).fetchone()
            for (path,) in paths
            if path
        ]
    return b"".join(bytes(row[0]) for row in files if row)


def leaked(image: bytes, secrets: dict[str, set[bytes]]) -> list[str]:
    return [name for name, variants in secrets.items() if any(v in image for v in variants)]


def ok(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    return dict(answer.json())


@pytest.fixture
def identification(system: Any) -> Iterator[ServiceProcess]:
    service = system.service("identification")
    with running(service):
        yield service


def test_after_erasure_the_database_holds_no_trace_of_name_or_code(
    system: Any, identification: ServiceProcess
) -> None:
    teacher = Client(identification.url, system.token("teacher", school=SCHOOL))
    body = {
        "school_id": SCHOOL,
        "grade": 6,
        "given_name": GIVEN,
        "family_name": FAMILY,
        "personal_code": CODE,
        "birth_date": BORN,
        "gender": "M",
    }
    keyed = {"Idempotency-Key": "canary-registration"}
    pupil_id = ok(teacher.post("/pupils", body, headers=keyed), 201)["pupil_id"]
    sign = {
        "code": "family.caring_duties",
        "observed_on": "2019-10-01",
        "evidence": EVIDENCE,
        "expected_version": 1,
    }
    ok(teacher.post(f"/pupils/{pupil_id}/risk-signs", sign), 201)
    seen = ok(teacher.get(f"/pupils/{pupil_id}"))
    assert (seen["given_name"], seen["family_name"], seen["personal_code"]) == (
        GIVEN,
        FAMILY,
        CODE,
    )
    # What would unlock the ciphertexts: the pupil's wrapped key and its code-index entry.
    vault = system.stores.query(
        "identification",
        "SELECT wrapped_key, code_digest FROM identification_pupil_keys WHERE pupil_id = ?",
        (pupil_id,),
    )
    unlocks = {
        "wrapped key": {vault[0]["wrapped_key"].encode()},
        "code digest": {vault[0]["code_digest"].encode()},
    }
    before = database_image(system)
    assert leaked(before, CANARIES) == []  # encrypted at rest from the start
    assert leaked(before, unlocks) == ["wrapped key", "code digest"]  # the scan sees them

    dpo = Client(identification.url, system.token("data_protection_officer"))
    erased = ok(dpo.post(f"/pupils/{pupil_id}/erasure", {}))
    assert erased == {"pupil_id": pupil_id, "version": 4}

    after = database_image(system)
    assert leaked(after, CANARIES) == []
    assert leaked(after, unlocks) == []

    # The pupil id keeps working for everyone who refers to it.
    view = ok(teacher.get(f"/pupils/{pupil_id}"))
    assert {k: view[k] for k in ("given_name", "family_name", "personal_code", "birth_date")} == {
        "given_name": None,
        "family_name": None,
        "personal_code": None,
        "birth_date": None,
    }
    assert (view["erased"], view["at_risk"], view["school_id"], view["grade"]) == (
        True,
        True,
        SCHOOL,
        6,
    )
    assert [(s["code"], s["evidence"]) for s in view["risk_signs"]] == [
        ("family.caring_duties", None)
    ]
    listed = ok(teacher.get("/pupils", params={"at_risk": "true"}))["items"]
    assert [(p["pupil_id"], p["erased"]) for p in listed] == [(pupil_id, True)]
    departure = {"reason": "graduated", "on": "2020-06-20", "expected_version": 4}
    assert ok(teacher.post(f"/pupils/{pupil_id}/departure", departure))["version"] == 5
    # A retry of the first registration is no longer recognised (its answer was dropped with
    # the request hash); the code is free, so the same person would be a new, unlinked pupil.
    retried = ok(teacher.post("/pupils", body, headers=keyed), 201)
    assert retried["pupil_id"] != pupil_id


def test_only_the_data_protection_officer_erases_and_every_read_is_on_record(
    system: Any, identification: ServiceProcess
) -> None:
    teacher = Client(identification.url, system.token("teacher", school=SCHOOL))
    body = {
        "school_id": SCHOOL,
        "grade": 6,
        "given_name": "Ilze",
        "family_name": "Ozola",
        "personal_code": "320000-99999",
        "birth_date": "2009-01-01",
        "gender": "F",
    }
    pupil_id = ok(teacher.post("/pupils", body), 201)["pupil_id"]
    director = Client(identification.url, system.token("director", school=SCHOOL))
    coordinator = Client(
        identification.url, system.token("municipal_coordinator", municipality="daugavpils")
    )
    for client in (teacher, director, coordinator, teacher):
        ok(client.get(f"/pupils/{pupil_id}"))

    assert teacher.post(f"/pupils/{pupil_id}/erasure", {}).status_code == 403
    assert director.post(f"/pupils/{pupil_id}/erasure", {}).status_code == 403
    assert teacher.get(f"/pupils/{pupil_id}/personal-data-reads").status_code == 403

    dpo = Client(identification.url, system.token("data_protection_officer"))
    reads = ok(dpo.get(f"/pupils/{pupil_id}/personal-data-reads"))["items"]
    assert [(r["by"], r["role"]) for r in reads] == [
        ("test-teacher", "teacher"),
        ("test-director", "director"),
        ("test-municipal_coordinator", "municipal_coordinator"),
        ("test-teacher", "teacher"),
    ]
    assert all(r["at"].endswith("+00:00") for r in reads)
    assert ok(teacher.get(f"/pupils/{pupil_id}"))["version"] == 1  # reads change no version

    stale = dpo.post(f"/pupils/{pupil_id}/erasure", {"expected_version": 2})
    assert stale.status_code == 409
    ok(dpo.post(f"/pupils/{pupil_id}/erasure", {"expected_version": 1}))
    again = dpo.post(f"/pupils/{pupil_id}/erasure", {})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "pupil_erased")
    ok(teacher.get(f"/pupils/{pupil_id}"))  # nothing personal left to read: not a read
    after = ok(dpo.get(f"/pupils/{pupil_id}/personal-data-reads"))["items"]
    assert len(after) == 5  # the five reads above; none once nothing personal was left
    # The record of reads names no personal data, so it survives the erasure.
    text = json.dumps(after)
    assert "Ilze" not in text and "320000" not in text
