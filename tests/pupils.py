"""A pupil registered through identification's application, for tests that need some."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.identification.application import IdentificationApplication

SCHOOL = "daugavpils-10-vsk"
GIVEN, FAMILY, CODE = "Kanārijs", "Ģirģensons-Žūriņš", "150607-20416"
BORN = date(2007, 6, 15)  # as the personal code says


def register(app: IdentificationApplication, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "school_id": SCHOOL,
        "grade": 7,
        "gender": "M",
        "given_name": GIVEN,
        "family_name": FAMILY,
        "personal_code": CODE,
        "birth_date": BORN,
        "by": "teacher-1",
    }
    return app.register_pupil(**{**fields, **overrides})
