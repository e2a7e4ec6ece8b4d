"""Which schools a caller's tenant holds, knowing the schools registered here as well.

``Principal.sees_school`` finds a school's municipality in the shipped reference data;
identification also knows the schools a national coordinator added, so a municipal
coordinator sees those of their municipality too.
"""

from __future__ import annotations

from shared.auth import MUNICIPAL_COORDINATOR, NATIONWIDE_ROLES, Principal
from shared.errors import ForbiddenError
from shared.schools import School as SchoolInfo


def sees(principal: Principal, school: SchoolInfo) -> bool:
    if principal.sees_school(school.school_id):
        return True
    return principal.role == MUNICIPAL_COORDINATOR and principal.municipality == school.municipality


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
