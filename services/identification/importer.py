"""Importing one semester's e-journal export: register unknown pupils, record the signs.

Rows are taken in batches; each batch is one transaction (events, list rows, keys and
code index together). Re-importing changes nothing: a known personal code finds its
pupil, and a sign is not recorded again while it is active, nor when the journal
already gave it for the same semester (so a teacher's resolution is not undone).
A pupil whose last departure named this school (a transfer here) is enrolled here again
by the row, and counted as registered; any other pupil who left is not: a past
semester's export lists pupils who have left since.
A batch that collides with a concurrent change is worked out again from the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from services.identification import domain
from services.identification.crypto import PupilKey
from services.identification.domain import ENROLLED, JOURNAL, PersonalCodeTakenError, Pupil
from services.identification.journal import JournalRow, Semester, parse_journal
from services.identification.views import EVIDENCE
from shared.schools import School as SchoolInfo

if TYPE_CHECKING:
    from services.identification.application import IdentificationApplication, NewPupil

BATCH_ROWS = 500
ATTEMPTS = 3


class RowSkipped(ValueError):
    """A row of a known pupil that cannot take the journal's signs."""


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    registered: int = 0
    signs_recorded: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: ImportReport) -> None:
        self.imported += other.imported
        self.registered += other.registered
        self.signs_recorded += other.signs_recorded
        self.errors.extend(other.errors)


@dataclass
class _Batch:
    """What one batch of rows will save."""

    new: list[NewPupil] = field(default_factory=list)
    changed: list[Pupil] = field(default_factory=list)
    report: ImportReport = field(default_factory=ImportReport)


class JournalImport:
    def __init__(
        self,
        app: IdentificationApplication,
        school: SchoolInfo,
        semester: Semester,
        by: str,
        today: date | None = None,
    ) -> None:
        self.app, self.school, self.semester, self.by = app, school, semester, by
        # The same today as the domain's, which refuses a sign observed after it.
        self.observed_on = semester.observed_on(today or domain.today())

    def run(self, raw: bytes) -> ImportReport:
        journal = parse_journal(raw, self.school)
        report = ImportReport(rows=journal.row_count)
        report.errors = [{"line": line, "reason": reason} for line, reason in journal.errors]
        for start in range(0, len(journal.rows), BATCH_ROWS):
            report.add(self._import(journal.rows[start : start + BATCH_ROWS]))
            time.sleep(0)  # under eventlet: let other requests run between batches
        report.errors.sort(key=lambda error: error["line"])
        return report

    def _import(self, rows: Sequence[JournalRow]) -> ImportReport:
        for attempt in range(1, ATTEMPTS + 1):
            batch = self._prepare(rows)
            try:
                self.app.save_pupils([*(n.pupil for n in batch.new), *batch.changed], batch.new)
                return batch.report
            except IntegrityError:  # a pupil changed, or a code was registered, meanwhile
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    # -- one batch ---------------------------------------------------------------------------------
    def _prepare(self, rows: Sequence[JournalRow]) -> _Batch:
        batch = _Batch()
        digests = [self.app.keyring.code_digest(row.personal.personal_code) for row in rows]
        known = self.app.vault.pupils_by_digest(self.app.query, digests)
        states = self.app.pupils.states(self.app.query, list(known.values()))
        for row, digest in zip(rows, digests, strict=True):
            try:
                if digest in known:
                    self._known(row, known[digest], states[str(known[digest])], batch)
                else:
                    self._register(row, digest, batch)
            except RowSkipped as exc:
                batch.report.errors.append({"line": row.line, "reason": str(exc)})
                continue
            batch.report.imported += 1
        return batch

    def _register(self, row: JournalRow, digest: str, batch: _Batch) -> None:
        school_id = self.school.school_id
        new = self.app.new_pupil(school_id, row.grade, row.gender, row.personal, self.by, digest)
        batch.report.signs_recorded += self._record_signs(new.pupil, new.key, row)
        batch.new.append(new)
        batch.report.registered += 1

    def _known(self, row: JournalRow, pupil_id: UUID, state: dict[str, Any], batch: _Batch) -> None:
        """A pupil registered before: at this school and enrolled, it may take new signs;
        one transferred here is enrolled here again first."""
        if state["status"] != ENROLLED:
            pupil = self._transferred_here(row, self.app.get_pupil(pupil_id))
            batch.report.signs_recorded += self._record_signs(pupil, self.app.key_of(pupil), row)
            batch.changed.append(pupil)
            batch.report.registered += 1
            return
        if state["school_id"] != self.school.school_id:
            raise RowSkipped("this personal code is registered at another school")
        if not row.signs(self.semester):
            return
        pupil = self.app.get_pupil(pupil_id)
        if recorded := self._record_signs(pupil, self.app.key_of(pupil), row):
            batch.report.signs_recorded += recorded
            batch.changed.append(pupil)

    def _transferred_here(self, row: JournalRow, pupil: Pupil) -> Pupil:
        departure = pupil.departure or {}
        if pupil.erased or departure.get("to_school_id") != self.school.school_id:
            raise RowSkipped(
                "the pupil has left school; no signs were recorded "
                "(register the pupil to enrol them here again)"
            )
        school_id, personal = self.school.school_id, row.personal
        try:
            return self.app.re_enrolled(pupil, school_id, row.grade, row.gender, personal, self.by)
        except PersonalCodeTakenError:
            raise RowSkipped("the birth date differs from the registered pupil's") from None

    def _record_signs(self, pupil: Pupil, key: PupilKey, row: JournalRow) -> int:
        recorded = 0
        for code, evidence in row.signs(self.semester):
            start, end = self.semester.start, self.semester.end
            if pupil.active_sign(code) or pupil.has_journal_sign(code, start, end):
                continue
            sealed = key.seal(EVIDENCE, evidence)
            pupil.record_risk_sign(code, self.observed_on, sealed, JOURNAL, self.by)
            recorded += 1
        return recorded
