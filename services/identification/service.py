"""Identification's entrypoints: load schema, call the application, dump schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from services.identification import tenancy
from services.identification.application import IdentificationApplication, PupilNotFoundError
from services.identification.catalogue import RISK_FACTORS
from services.identification.journal import FORMAT as JOURNAL_FORMAT
from services.identification.journal import JournalEncodingError, JournalFormatError
from services.identification.schemas import (
    AgeBandsSchema,
    AgeEnquiriesSchema,
    AgeEnquirySchema,
    CreatedPupilSchema,
    CreatedSchoolSchema,
    DepartureSchema,
    ErasureSchema,
    ImportQuerySchema,
    ImportReportSchema,
    PupilListSchema,
    PupilSchema,
    PupilsQuerySchema,
    ReadListSchema,
    RecordRiskSignSchema,
    RegisterPupilSchema,
    RegisterSchoolSchema,
    ResolveRiskSignSchema,
    RiskFactorListSchema,
    SchoolListSchema,
    VersionSchema,
    page,
)
from shared.auth import (
    AUDITOR,
    DATA_PROTECTION_OFFICER,
    DIRECTOR,
    MUNICIPAL_COORDINATOR,
    NATIONAL_COORDINATOR,
    TEACHER,
)
from shared.eventstore import EventStore
from shared.rpc import rpc
from shared.service import ServiceBase
from shared.web import Call, route, schema_instance

WRITERS = (TEACHER, DIRECTOR)
READERS = (
    TEACHER,
    DIRECTOR,
    MUNICIPAL_COORDINATOR,
    NATIONAL_COORDINATOR,
    AUDITOR,
    DATA_PROTECTION_OFFICER,
)
MAX_JOURNAL_BYTES = 8 * 1024 * 1024
# Who asks for age bands, and why: recorded with each birth date read for the answer.
AGE_ENQUIRER, AGE_PURPOSE = "reporting", "esf_age_band"
CONSENT_CHECKER, CONSENT_PURPOSE = "planning", "consent_signer_age"
CSV_TYPES = ("text/csv", "application/csv")


def make_application(env: Mapping[str, str]) -> IdentificationApplication:
    return IdentificationApplication(env)


def csv_body(call: Call) -> bytes:
    """The raw CSV of the request: ``text/csv``, UTF-8 if a charset is named."""
    request = call.request
    if request.mimetype not in CSV_TYPES:
        raise JournalFormatError("the journal must be sent as text/csv")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise JournalEncodingError("the journal must be UTF-8 encoded")
    return request.get_data(cache=True)


class IdentificationService(ServiceBase):
    name = "identification"
    app: IdentificationApplication = EventStore(make_application)

    def _visible_pupil(self, call: Call, pupil_id: UUID) -> None:
        """404 unless the caller's tenant holds the pupil's school (asked of the pupils
        list, committed with the pupil's events, so a command loads the pupil only once)."""
        school = self.app.school(self.app.school_of_pupil(pupil_id))
        if not tenancy.sees(call.user, school):
            raise PupilNotFoundError(f"pupil {pupil_id} not found")

    # -- reference data ------------------------------------------------------------------------
    @route("GET", "/schools", answer=SchoolListSchema, summary="the school directory")
    def list_schools(self, call: Call) -> Any:
        return {"items": self.app.all_schools()}

    @route(
        "POST",
        "/schools",
        body=RegisterSchoolSchema,
        answer=CreatedSchoolSchema,
        status=201,
        roles=(NATIONAL_COORDINATOR,),
    )
    def register_school(self, call: Call) -> Any:
        return self.app.register_school(**call.body, by=call.user.sub)

    @route("GET", "/risk-factors", answer=RiskFactorListSchema, summary="the risk catalogue")
    def list_risk_factors(self, call: Call) -> Any:
        return {"items": RISK_FACTORS}

    # -- pupils ---------------------------------------------------------------------------------
    @route(
        "POST",
        "/pupils",
        body=RegisterPupilSchema,
        answer=CreatedPupilSchema,
        status=201,
        roles=WRITERS,
    )
    def register_pupil(self, call: Call) -> Any:
        tenancy.require(call.user, self.app.school(call.body["school_id"]))
        return self.app.register_pupil(**call.body, by=call.user.sub)

    @route("GET", "/pupils", query=PupilsQuerySchema, answer=PupilListSchema, roles=READERS)
    def list_pupils(self, call: Call) -> Any:
        query = dict(call.query)
        requested = self.app.school(query["school_id"]) if query.get("school_id") else None
        schools = tenancy.tenant_schools(call.user, self.app.all_schools(), requested)
        after = str(query["after"]) if query.get("after") else None
        items = self.app.list_pupils(schools, query, query["limit"], after)
        return page(items, query["limit"])

    @route("GET", "/pupils/<uuid:pupil_id>", answer=PupilSchema, roles=READERS)
    def get_pupil(self, call: Call, pupil_id: UUID) -> Any:
        self._visible_pupil(call, pupil_id)
        pupil = self.app.get_pupil(pupil_id)
        return self.app.read_pupil(pupil, reader=call.user.sub, role=call.user.role)

    @route(
        "GET",
        "/pupils/<uuid:pupil_id>/personal-data-reads",
        answer=ReadListSchema,
        roles=(DATA_PROTECTION_OFFICER, AUDITOR),
        summary="who read the pupil's personal data, and when",
    )
    def personal_data_reads(self, call: Call, pupil_id: UUID) -> Any:
        self._visible_pupil(call, pupil_id)
        return {"items": self.app.reads_of(pupil_id)}

    @route(
        "POST",
        "/pupils/<uuid:pupil_id>/risk-signs",
        body=RecordRiskSignSchema,
        answer=VersionSchema,
        status=201,
        roles=WRITERS,
    )
    def record_risk_sign(self, call: Call, pupil_id: UUID) -> Any:
        self._visible_pupil(call, pupil_id)
        return self.app.record_risk_sign(pupil_id, **call.body, by=call.user.sub)

    @route(
        "POST",
        "/pupils/<uuid:pupil_id>/risk-signs/<string:code>/resolve",
        body=ResolveRiskSignSchema,
        answer=VersionSchema,
        roles=WRITERS,
    )
    def resolve_risk_sign(self, call: Call, pupil_id: UUID, code: str) -> Any:
        self._visible_pupil(call, pupil_id)
        return self.app.resolve_risk_sign(pupil_id, code, **call.body, by=call.user.sub)

    @route(
        "POST",
        "/pupils/<uuid:pupil_id>/departure",
        body=DepartureSchema,
        answer=VersionSchema,
        roles=WRITERS,
    )
    def record_departure(self, call: Call, pupil_id: UUID) -> Any:
        self._visible_pupil(call, pupil_id)
        return self.app.record_departure(pupil_id, **call.body, by=call.user.sub)

    @route(
        "POST",
        "/pupils/<uuid:pupil_id>/erasure",
        body=ErasureSchema,
        answer=VersionSchema,
        roles=(DATA_PROTECTION_OFFICER,),
        summary="destroy the pupil's personal data (the pupil id stays valid)",
    )
    def erase_pupil(self, call: Call, pupil_id: UUID) -> Any:
        self._visible_pupil(call, pupil_id)
        return self.app.erase_pupil(pupil_id, **call.body, by=call.user.sub)

    # -- journal import -------------------------------------------------------------------------
    @route(
        "POST",
        "/imports/journal",
        query=ImportQuerySchema,
        answer=ImportReportSchema,
        roles=WRITERS,
        raw_body=True,
        body_types=CSV_TYPES,
        max_body=MAX_JOURNAL_BYTES,
        idempotent=True,
        summary="import one semester's e-journal CSV of a school",
        body_description=JOURNAL_FORMAT,
    )
    def import_journal(self, call: Call) -> Any:
        tenancy.require(call.user, self.app.school(call.query["school_id"]))
        raw = csv_body(call)
        return self.app.import_journal(**call.query, raw=raw, by=call.user.sub)

    # -- reporting's age enquiry ----------------------------------------------------------------
    @rpc
    def age_bands(self, enquiries: list[dict[str, Any]]) -> dict[str, Any]:
        """Each pupil's ESF age band (below_25, 25_or_over, unknown) on the day asked."""
        asked = schema_instance(AgeEnquiriesSchema).load({"enquiries": enquiries})
        answers = self.app.age_bands(asked["enquiries"], reader=AGE_ENQUIRER, purpose=AGE_PURPOSE)
        return dict(schema_instance(AgeBandsSchema).dump({"answers": answers}))

    # -- planning's check of a pupil's own consent -------------------------------------------------
    @rpc
    def adult_on(self, pupil_id: str, on: str) -> dict[str, Any]:
        """Whether the pupil was of age on the day (true, false, or null if not known)."""
        asked = schema_instance(AgeEnquirySchema).load({"pupil_id": pupil_id, "on": on})
        adult = self.app.adult_on(
            asked["pupil_id"], asked["on"], reader=CONSENT_CHECKER, purpose=CONSENT_PURPOSE
        )
        return {"adult": adult}
