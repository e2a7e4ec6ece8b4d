"""The programme's words that cross service boundaries (../shared/api.md, domain.md).

Plan statuses, approval levels, measure kinds and outcomes appear in planning's
aggregate, in its integration events and in reporting's indicators: one list each,
here, so a new kind cannot reach one of them and not the others. Plain values only:
every domain may import this.
"""

from __future__ import annotations

DRAFT = "draft"
IN_APPROVAL = "in_approval"
APPROVED = "approved"
IN_PROGRESS = "in_progress"
UNDER_REVISION = "under_revision"
SUSPENDED = "suspended"
INACTIVE = "inactive"
EVALUATED = "evaluated"
CLOSED = "closed"
PLAN_STATUSES = (
    DRAFT,
    IN_APPROVAL,
    APPROVED,
    IN_PROGRESS,
    UNDER_REVISION,
    SUSPENDED,
    INACTIVE,
    EVALUATED,
    CLOSED,
)

SCHOOL, MUNICIPALITY, NATIONAL = "school", "municipality", "national"
APPROVAL_LEVELS = (SCHOOL, MUNICIPALITY, NATIONAL)

CONSULTATION_KINDS = (
    "subject_teacher",
    "psychologist",
    "social_pedagogue",
    "special_educator",
    "speech_therapist",
    "occupational_therapist",
    "sign_language_interpreter",
    "teacher_assistant",
    "assistant",
)
MATERIAL_KINDS = (
    "public_transport",
    "special_transport",
    "accommodation",
    "meals",
    "learning_materials",
    "personal_items",
)
MEASURE_KINDS = CONSULTATION_KINDS + MATERIAL_KINDS

CONTINUES_LEARNING = "continues_learning"
LEFT_EDUCATION = "left_education"
OUTCOMES = (CONTINUES_LEARNING, LEFT_EDUCATION, "transferred", "graduated")
RISK_OUTCOMES = ("resolved", "reduced", "unchanged")

RISK_GROUPS = ("learning", "economic", "family", "social_health")

# A pupil's age band on a day, as identification answers reporting's enquiry (ESF's
# "participants below 25"): UNKNOWN once the pupil is erased, or for an id it never had.
BELOW_25 = "below_25"
AGED_25_OR_OVER = "25_or_over"
AGE_UNKNOWN = "unknown"
AGE_BANDS = (BELOW_25, AGED_25_OR_OVER, AGE_UNKNOWN)
