"""Sealing a pupil's values, and the pupil as the API shows it (opened with its key)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from services.identification.crypto import PupilKey
from services.identification.domain import PersonalData, Pupil

PERSONAL_DATA = "personal_data"
EVIDENCE = "evidence"
REASON = "reason"
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def seal_personal_data(key: PupilKey, data: PersonalData) -> str:
    plain = {
        "given_name": data.given_name,
        "family_name": data.family_name,
        "personal_code": data.personal_code,
        "birth_date": data.birth_date.isoformat(),
    }
    return key.seal(PERSONAL_DATA, _JSON.encode(plain))


def _personal(pupil: Pupil, key: PupilKey | None) -> dict[str, Any]:
    if key is None or pupil.personal_data is None:
        return dict.fromkeys(("given_name", "family_name", "personal_code", "birth_date"))
    data = json.loads(key.open(PERSONAL_DATA, pupil.personal_data))
    return {**data, "birth_date": date.fromisoformat(data["birth_date"])}


def personal_code_of(pupil: Pupil, key: PupilKey) -> str:
    return str(_personal(pupil, key)["personal_code"])


def birth_date_of(pupil: Pupil, key: PupilKey) -> date:
    birth_date: date = _personal(pupil, key)["birth_date"]
    return birth_date


def _opened(key: PupilKey | None, purpose: str, sealed: str | None) -> str | None:
    return key.open(purpose, sealed) if key is not None and sealed is not None else None


def pupil_view(pupil: Pupil, key: PupilKey | None) -> dict[str, Any]:
    """Everything about the pupil; personal fields null without a key (or once erased)."""
    return {
        "pupil_id": pupil.id,
        "school_id": pupil.school_id,
        "grade": pupil.grade,
        "gender": pupil.gender,
        **_personal(pupil, key),
        "at_risk": pupil.at_risk,
        "risk_signs": [
            {
                **sign,
                "evidence": _opened(key, EVIDENCE, sign["evidence"]),
                "reason": _opened(key, REASON, sign["reason"]),
            }
            for sign in pupil.risk_signs
        ],
        "status": pupil.status,
        "departure": pupil.departure,
        "erased": pupil.erased,
        "version": pupil.version,
    }
