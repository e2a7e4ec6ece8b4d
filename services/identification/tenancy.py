"""Which schools a caller's tenant holds, knowing the schools registered here as well.

Identification holds every school (the shipped reference data and those a national
coordinator added), so the school it looked up says its own municipality.
"""

from __future__ import annotations

from shared.auth import NATIONWIDE_ROLES, Principal
from shared.errors import ForbiddenError
from shared.schools import School as SchoolInfo


def sees(principal: Principal, school: SchoolInfo) -> bool:
    return principal.sees_school(school.school_id, lambda _: school.municipality)


def require(principal: Principal, school: SchoolInfo) -> None:
    if not sees(principal, school):
        raise ForbiddenError("this school is outside your tenant")


def tenant_schools(
    principal: Principal, schools: list[SchoolInfo], requested: SchoolInfo | None
) -> list[str] | None:
    """The schools a list may show (None: all), narrowed to the requested one."""
    if requested is not None:
        require(principal, requested)
        return [requested.school_id]
    if principal.role in NATIONWIDE_ROLES:
        return None
    return [school.school_id for school in schools if sees(principal, school)]
