"""Identification's use cases: each gets, calls one command, saves.

Every save of pupils also keeps, in the same transaction, the pupils' read-model
rows and (for new pupils) their wrapped keys and code-index entries; erasure deletes
the latter. Personal data is sealed before it reaches an aggregate and opened only
for a recorded read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from services.identification.audit import PersonalDataReads
from services.identification.crypto import KeyRing, PupilKey, master_key
from services.identification.domain import (
    ASSESSMENT,
    DEPARTED,
    PersonalCodeTakenError,
    PersonalData,
    Pupil,
    PupilErasedError,
    School,
    age_band,
    check_grade,
    is_adult,
)
from services.identification.importer import ImportReport, JournalImport
from services.identification.journal import Semester
from services.identification.readmodels import PupilsList, SchoolDirectory
from services.identification.vault import Vault, checkpoint
from services.identification.views import (
    EVIDENCE,
    REASON,
    birth_date_of,
    personal_code_of,
    pupil_view,
    seal_personal_data,
)
from shared.errors import ConflictError, InvalidInputError, NotFoundError
from shared.idempotency import IdempotencyStore
from shared.schools import School as SchoolInfo
from shared.store import POSTGRES, ServiceApplication, Sql, project_events
from shared.vocabulary import AGE_UNKNOWN

log = logging.getLogger(__name__)

# The role a read of personal data is recorded under when another service made it.
SERVICE_ROLE = "service"


class PupilNotFoundError(NotFoundError):
    code = "pupil_not_found"


class UnknownSchoolError(InvalidInputError):
    code = "unknown_school"

    def __init__(self, field: str = "school_id") -> None:
        # The id is not repeated: a personal code typed into the wrong field would be.
        message = "no school has this id"
        super().__init__(message, {"fields": {field: [message]}})


class SchoolAlreadyRegisteredError(ConflictError):
    code = "school_already_registered"


@dataclass(frozen=True)
class NewPupil:
    """A pupil not yet saved, with what the vault keeps for it."""

    pupil: Pupil
    key: PupilKey
    wrapped_key: str
    digest: str


class IdentificationApplication(ServiceApplication):
    name = "identification"

    def __init__(self, env: Mapping[str, str] | None = None, master: bytes | None = None) -> None:
        super().__init__(env)
        self.keyring = KeyRing(master if master is not None else master_key(self.env))
        prefix = self.table_prefix
        self.vault, self.reads = Vault(prefix), PersonalDataReads(prefix)
        self.pupils, self.schools = PupilsList(prefix), SchoolDirectory(prefix)
        self.idempotency = IdempotencyStore(self)
        with self.transaction() as sql:
            if self.dialect == POSTGRES:  # replicas starting together create tables once
                sql.execute("SELECT pg_advisory_xact_lock(hashtext('pumpurs-ddl'))")
            for create in (
                self.vault.create_tables,
                self.reads.create_table,
                self.pupils.create_table,
                self.schools.create_table,
            ):
                create(sql)

    # -- schools ------------------------------------------------------------------------------
    def register_school(self, *, by: str, **fields: Any) -> School:
        if self.schools.get(self.query, fields["school_id"]) is not None:
            raise SchoolAlreadyRegisteredError(f"school {fields['school_id']} exists already")
        School.check_new(fields["kind"], fields["grade_from"], fields["grade_to"])
        school = School(**fields, by=by)
        self.save(school, effects=[lambda sql: self.schools.add(sql, school.info())])
        return school

    def school(self, school_id: str, field: str = "school_id") -> SchoolInfo:
        school = self.schools.get(self.query, school_id)
        if school is None:
            raise UnknownSchoolError(field)
        return school

    def all_schools(self) -> list[SchoolInfo]:
        return self.schools.all(self.query)

    # -- pupils -------------------------------------------------------------------------------
    def register_pupil(
        self, *, school_id: str, grade: int, gender: str, by: str, **personal: Any
    ) -> Pupil:
        """A new pupil; or, for the personal code of a pupil who left school, that pupil
        back at school (a transfer, a return from abroad, a dropout coming back)."""
        check_grade(self.school(school_id), grade)
        data = PersonalData.checked(**personal)
        digest = self.keyring.code_digest(data.personal_code)
        holder = self.code_holder(digest)
        if holder is not None:
            pupil = self.re_enrolled(self.get_pupil(holder), school_id, grade, gender, data, by)
            self.save_pupils([pupil])
            return pupil
        new = self.new_pupil(school_id, grade, gender, data, by, digest)
        self.save_new_pupil(new)
        return new.pupil

    def re_enrolled(
        self, pupil: Pupil, school_id: str, grade: int, gender: str, data: PersonalData, by: str
    ) -> Pupil:
        """The departed pupil, enrolled at the school again (not saved yet)."""
        key = self.key_of(pupil)
        # A mistyped code that happens to be a departed pupil's must not take that child
        # over: the birth date has to agree too.
        if pupil.status != DEPARTED or birth_date_of(pupil, key) != data.birth_date:
            raise PersonalCodeTakenError(pupil.id)
        pupil.re_enrol(school_id, grade, gender, seal_personal_data(key, data), by)
        return pupil

    def new_pupil(
        self,
        school_id: str,
        grade: int,
        gender: str,
        data: PersonalData,
        by: str,
        digest: str | None = None,
    ) -> NewPupil:
        """A pupil with a new key, its personal data sealed; ``digest`` if known already."""
        key = self.keyring.new_pupil_key(uuid4())
        pupil = Pupil(key.pupil_id, school_id, grade, gender, seal_personal_data(key, data), by)
        digest = digest or self.keyring.code_digest(data.personal_code)
        return NewPupil(pupil, key, self.keyring.wrap(key), digest)

    def code_holder(self, digest: str) -> UUID | None:
        return self.vault.pupils_by_digest(self.query, [digest]).get(digest)

    def check_code_free(self, digest: str) -> None:
        holder = self.code_holder(digest)
        if holder is not None:
            raise PersonalCodeTakenError(holder)

    def save_new_pupil(self, new: NewPupil) -> None:
        try:
            self.save_pupils([new.pupil], [new])
        except IntegrityError:  # registered concurrently: name the winner
            self.check_code_free(new.digest)
            raise

    def save_pupils(self, pupils: Sequence[Pupil], new: Sequence[NewPupil] = ()) -> None:
        """The pupils' new events, their list rows and the new pupils' keys, in one commit."""
        rows = [(n.pupil.id, n.wrapped_key, n.digest) for n in new]
        effects: list[Callable[[Sql], None]] = [lambda sql: self.pupils.upsert(sql, pupils)]
        if rows:
            effects.append(lambda sql: self.vault.keep(sql, rows))
        self.save(*pupils, effects=effects)

    def get_pupil(self, pupil_id: UUID) -> Pupil:
        try:
            pupil: object = self.repository.get(pupil_id, projector_func=project_events)
        except AggregateNotFoundError:
            raise PupilNotFoundError(f"pupil {pupil_id} not found") from None
        if not isinstance(pupil, Pupil):
            raise PupilNotFoundError(f"pupil {pupil_id} not found")
        return pupil

    def school_of_pupil(self, pupil_id: UUID) -> str:
        state = self.pupils.states(self.query, [pupil_id]).get(str(pupil_id))
        if state is None:
            raise PupilNotFoundError(f"pupil {pupil_id} not found")
        return str(state["school_id"])

    def pupil_at(self, pupil_id: UUID, expected_version: int | None) -> Pupil:
        pupil = self.get_pupil(pupil_id)
        if expected_version is not None:
            pupil.check_version(expected_version)
        return pupil

    def key_of(self, pupil: Pupil) -> PupilKey:
        """The pupil's data key; an erased pupil has none."""
        wrapped = None if pupil.erased else self.vault.wrapped_key(self.query, pupil.id)
        if wrapped is None:
            raise PupilErasedError(f"pupil {pupil.id} has been erased")
        return self.keyring.unwrap(pupil.id, wrapped)

    # -- risk signs, departure ------------------------------------------------------------------
    def record_risk_sign(
        self,
        pupil_id: UUID,
        *,
        code: str,
        observed_on: date,
        evidence: str,
        expected_version: int,
        by: str,
        source: str = ASSESSMENT,
    ) -> Pupil:
        pupil = self.pupil_at(pupil_id, expected_version)
        pupil.check_can_record(code, observed_on)
        sealed = self.key_of(pupil).seal(EVIDENCE, evidence)
        pupil.record_risk_sign(code, observed_on, sealed, source, by)
        self.save_pupils([pupil])
        return pupil

    def resolve_risk_sign(
        self, pupil_id: UUID, code: str, *, reason: str, expected_version: int, by: str
    ) -> Pupil:
        pupil = self.pupil_at(pupil_id, expected_version)
        pupil.check_can_resolve(code)
        pupil.resolve_risk_sign(code, self.key_of(pupil).seal(REASON, reason), by)
        self.save_pupils([pupil])
        return pupil

    def record_departure(
        self,
        pupil_id: UUID,
        *,
        reason: str,
        on: date,
        expected_version: int,
        by: str,
        to_school_id: str | None = None,
    ) -> Pupil:
        pupil = self.pupil_at(pupil_id, expected_version)
        if to_school_id is not None:
            self.school(to_school_id, field="to_school_id")
        pupil.depart(reason, on, to_school_id, by)
        self.save_pupils([pupil])
        return pupil

    # -- erasure and reads of personal data -------------------------------------------------------
    def erase_pupil(self, pupil_id: UUID, *, by: str, expected_version: int | None = None) -> Pupil:
        """Destroy the pupil's key and code-index entry; the pupil id stays valid."""
        pupil = self.pupil_at(pupil_id, expected_version)
        pupil.erase(by)
        self.save(pupil, effects=[lambda sql: self._forget(sql, pupil)])
        self.fold_deleted_pages()
        return pupil

    def _forget(self, sql: Sql, pupil: Pupil) -> None:
        self.vault.destroy(sql, pupil.id)
        self.pupils.upsert(sql, [pupil])
        # A kept answer naming the pupil was keyed by a hash of a request that held
        # the pupil's personal data: that hash must go too.
        self.idempotency.forget(sql, str(pupil.id))

    # -- master key rotation ----------------------------------------------------------------------
    def rotate_master_key(self, new_master: bytes) -> int:
        """Re-wrap every pupil's key and re-key the code index under ``new_master``, in one
        transaction; the number of pupils. Run with the service stopped (it holds the old key)."""
        new = KeyRing(new_master)
        rows = [
            self._rekeyed(pupil_id, wrapped, new)
            for pupil_id, wrapped in self.vault.all_wrapped(self.query)
        ]
        with self.transaction() as sql:
            self.vault.rekey(sql, rows)
        self.keyring = new
        return len(rows)

    def _rekeyed(self, pupil_id: UUID, wrapped: str, new: KeyRing) -> tuple[UUID, str, str]:
        key = self.keyring.unwrap(pupil_id, wrapped)
        code = personal_code_of(self.get_pupil(pupil_id), key)
        return pupil_id, new.wrap(key), new.code_digest(code)

    def fold_deleted_pages(self) -> None:
        """Leave no readable copy of a deleted key row in the database's files. SQLite:
        fold the WAL (which still holds old page images) into the file. PostgreSQL: a
        deleted row stays in its table and index pages (a dead tuple) until the space is
        reused, so the key table, a row a pupil, is written afresh."""
        if self.dialect == POSTGRES:
            self.rewrite_vault()
            return
        database = self.env.get("SQLITE_DBNAME")
        if not database or ":memory:" in database:
            return
        if not checkpoint(database):
            log.warning(
                "the WAL could not be truncated after an erasure: old page images "
                "stay in it until a later checkpoint truncates it"
            )

    def rewrite_vault(self) -> None:
        # VACUUM FULL runs outside a transaction (pooled connections are in autocommit) and
        # holds the table for the moment it takes: registrations and reads wait that long.
        datastore = self.recorder.datastore  # type: ignore[attr-defined]
        with datastore.get_connection() as conn:
            conn.execute(f"VACUUM FULL {self.vault.table}")

    def read_pupil(self, pupil: Pupil, *, reader: str, role: str) -> dict[str, Any]:
        """The pupil with its personal data, after recording who reads it."""
        if pupil.erased:
            return pupil_view(pupil, None)
        with self.transaction() as sql:
            self.reads.record(sql, pupil.id, reader, role)
        return pupil_view(pupil, self.key_or_none(pupil))

    def key_or_none(self, pupil: Pupil) -> PupilKey | None:
        try:
            return self.key_of(pupil)
        except PupilErasedError:  # erased between loading and reading
            return None

    def age_bands(
        self, enquiries: Sequence[Mapping[str, Any]], *, reader: str, purpose: str
    ) -> list[dict[str, Any]]:
        """Each pupil's age band on the day asked (``pupil_id``, ``on``), never the birth
        date; unknown for an erased pupil or an unknown id. Every birth date opened is
        recorded first as a read by ``reader`` for ``purpose``, one record per pupil asked."""
        keys = [self._readable(enquiry["pupil_id"]) for enquiry in enquiries]
        with self.transaction() as sql:
            for held in (k for k in keys if k is not None):
                self.reads.record(sql, held[0].id, reader, SERVICE_ROLE, purpose)
        return [
            {
                "pupil_id": str(enquiry["pupil_id"]),
                "on": enquiry["on"],
                "band": _band(held, enquiry["on"]),
            }
            for enquiry, held in zip(enquiries, keys, strict=True)
        ]

    def adult_on(self, pupil_id: UUID, day: date, *, reader: str, purpose: str) -> bool | None:
        """Whether the pupil was of age on ``day``, never the birth date; None for an erased
        or unknown pupil. The birth date read is recorded first, by ``reader`` for ``purpose``."""
        held = self._readable(pupil_id)
        if held is None:
            return None
        with self.transaction() as sql:
            self.reads.record(sql, held[0].id, reader, SERVICE_ROLE, purpose)
        return is_adult(birth_date_of(*held), day)

    def _readable(self, pupil_id: UUID) -> tuple[Pupil, PupilKey] | None:
        """The pupil and its key, if the pupil exists and has personal data to read."""
        try:
            pupil = self.get_pupil(pupil_id)
        except PupilNotFoundError:
            return None
        key = None if pupil.erased else self.key_or_none(pupil)
        return None if key is None else (pupil, key)

    def reads_of(self, pupil_id: UUID) -> list[dict[str, Any]]:
        return self.reads.of_pupil(self.query, pupil_id)

    def list_pupils(
        self, school_ids: list[str] | None, filters: dict[str, Any], limit: int, after: str | None
    ) -> list[dict[str, Any]]:
        return self.pupils.page(self.query, school_ids, filters, limit, after)

    # -- journal import -------------------------------------------------------------------------
    def import_journal(self, *, school_id: str, semester: str, raw: bytes, by: str) -> ImportReport:
        """One semester's e-journal export of a school (see services.identification.journal)."""
        job = JournalImport(self, self.school(school_id), Semester.parse(semester), by)
        return job.run(raw)


def _band(held: tuple[Pupil, PupilKey] | None, day: date) -> str:
    return AGE_UNKNOWN if held is None else age_band(birth_date_of(*held), day)
