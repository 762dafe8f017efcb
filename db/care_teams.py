"""Care teams: their members (people of the tenant, each with a role) and the patients they
look after, and the two questions the chat front ends ask before showing or doing anything.

Every function that takes a ``tenant_id`` reads and writes that tenant's rows only: a team,
member or patient of another tenant reads exactly like one that does not exist.

Roles: clinician, nurse and coach may act on a patient's alerts (acknowledge, snooze,
resolve); a viewer may only look.  Anyone may view their own data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

ROLES = ("clinician", "nurse", "coach", "viewer")
ACTING_ROLES = ("clinician", "nurse", "coach")


class DuplicateName(Exception):
    """Another team of the tenant has this name."""


@dataclass(frozen=True, slots=True)
class CareTeam:
    id: int
    tenant_id: int
    name: str
    timezone: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Member:
    user_id: int
    display_name: str
    role: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Patient:
    patient_id: int
    display_name: str
    created_at: datetime


_TEAM = "SELECT id, tenant_id, name, timezone, created_at FROM care_teams"


async def create(conn: asyncpg.Connection, tenant_id: int, name: str, timezone: str) -> CareTeam:
    """Raises DuplicateName.  (``timezone`` is checked by the caller.)"""
    try:
        row = await conn.fetchrow(
            "INSERT INTO care_teams (tenant_id, name, timezone) VALUES ($1, $2, $3)"
            " RETURNING id, tenant_id, name, timezone, created_at",
            tenant_id,
            name,
            timezone,
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateName(name) from None
    return CareTeam(**dict(row))


async def get(conn: asyncpg.Connection, tenant_id: int, team_id: int) -> CareTeam | None:
    row = await conn.fetchrow(_TEAM + " WHERE id = $1 AND tenant_id = $2", team_id, tenant_id)
    return CareTeam(**dict(row)) if row else None


async def page(conn: asyncpg.Connection, tenant_id: int, after_id: int, limit: int) -> list[CareTeam]:
    """Up to ``limit`` teams with ids above ``after_id``, in id order."""
    rows = await conn.fetch(
        _TEAM + " WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3", tenant_id, after_id, limit
    )
    return [CareTeam(**dict(r)) for r in rows]


async def update(
    conn: asyncpg.Connection, tenant_id: int, team_id: int, *, name: str | None, timezone: str | None
) -> CareTeam | None:
    """Change the given fields (None leaves one as it is).  Raises DuplicateName."""
    try:
        row = await conn.fetchrow(
            "UPDATE care_teams SET name = coalesce($3, name), timezone = coalesce($4, timezone)"
            " WHERE id = $1 AND tenant_id = $2 RETURNING id, tenant_id, name, timezone, created_at",
            team_id,
            tenant_id,
            name,
            timezone,
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateName(name or "") from None
    return CareTeam(**dict(row)) if row else None


async def rule_count(conn: asyncpg.Connection, team_id: int) -> int:
    """How many notification rules the team owns (deleting the team would delete them)."""
    found: int = await conn.fetchval("SELECT count(*) FROM notification_rules WHERE care_team_id = $1", team_id)
    return found


async def delete(conn: asyncpg.Connection, tenant_id: int, team_id: int) -> bool:
    """Delete the team with its memberships and patient list (and the rules it owns)."""
    found = await conn.fetchval(
        "DELETE FROM care_teams WHERE id = $1 AND tenant_id = $2 RETURNING id", team_id, tenant_id
    )
    return found is not None


async def members(conn: asyncpg.Connection, team_id: int) -> list[Member]:
    """The team's members, in user id order."""
    rows = await conn.fetch(
        "SELECT m.user_id, u.display_name, m.role, m.created_at FROM care_team_members m"
        " JOIN users u ON u.id = m.user_id WHERE m.care_team_id = $1 ORDER BY m.user_id",
        team_id,
    )
    return [Member(**dict(r)) for r in rows]


async def set_member(conn: asyncpg.Connection, team_id: int, user_id: int, role: str) -> Member | None:
    """Add the user to the team with ``role``, or change their role; None when the user is not
    of the team's tenant (or either does not exist).  Raises ValueError for an unknown role."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    row = await conn.fetchrow(
        "WITH added AS (INSERT INTO care_team_members (care_team_id, user_id, role)"
        "  SELECT t.id, u.id, $3 FROM care_teams t JOIN users u ON u.tenant_id = t.tenant_id"
        "  WHERE t.id = $1 AND u.id = $2"
        "  ON CONFLICT (care_team_id, user_id) DO UPDATE SET role = excluded.role"
        "  RETURNING user_id, role, created_at)"
        " SELECT a.user_id, u.display_name, a.role, a.created_at FROM added a JOIN users u ON u.id = a.user_id",
        team_id,
        user_id,
        role,
    )
    return Member(**dict(row)) if row else None


async def remove_member(conn: asyncpg.Connection, team_id: int, user_id: int) -> bool:
    found = await conn.fetchval(
        "DELETE FROM care_team_members WHERE care_team_id = $1 AND user_id = $2 RETURNING 1", team_id, user_id
    )
    return found is not None


async def patients(conn: asyncpg.Connection, team_id: int) -> list[Patient]:
    """The team's patients, in id order."""
    rows = await conn.fetch(
        "SELECT p.patient_id, u.display_name, p.created_at FROM care_team_patients p"
        " JOIN users u ON u.id = p.patient_id WHERE p.care_team_id = $1 ORDER BY p.patient_id",
        team_id,
    )
    return [Patient(**dict(r)) for r in rows]


async def add_patient(conn: asyncpg.Connection, team_id: int, patient_id: int) -> Patient | None:
    """Put the patient on the team's list (a no-op when they are on it); None when the patient
    is not of the team's tenant (or either does not exist)."""
    row = await conn.fetchrow(
        "WITH added AS (INSERT INTO care_team_patients (care_team_id, patient_id)"
        "  SELECT t.id, u.id FROM care_teams t JOIN users u ON u.tenant_id = t.tenant_id"
        "  WHERE t.id = $1 AND u.id = $2"
        "  ON CONFLICT (care_team_id, patient_id) DO UPDATE SET patient_id = excluded.patient_id"
        "  RETURNING patient_id, created_at)"
        " SELECT a.patient_id, u.display_name, a.created_at FROM added a JOIN users u ON u.id = a.patient_id",
        team_id,
        patient_id,
    )
    return Patient(**dict(row)) if row else None


async def remove_patient(conn: asyncpg.Connection, team_id: int, patient_id: int) -> bool:
    found = await conn.fetchval(
        "DELETE FROM care_team_patients WHERE care_team_id = $1 AND patient_id = $2 RETURNING 1", team_id, patient_id
    )
    return found is not None


async def teams_of_patient(conn: asyncpg.Connection, patient_id: int) -> list[CareTeam]:
    """The teams that look after the patient, in id order."""
    rows = await conn.fetch(
        "SELECT t.id, t.tenant_id, t.name, t.timezone, t.created_at FROM care_teams t"
        " JOIN care_team_patients p ON p.care_team_id = t.id WHERE p.patient_id = $1 ORDER BY t.id",
        patient_id,
    )
    return [CareTeam(**dict(r)) for r in rows]


async def can_view_patient(conn: asyncpg.Connection, viewer_user_id: int, patient_id: int) -> bool:
    """Whether the viewer may see the patient's data: it is themselves, or they are a member
    (any role, viewer included) of a team that looks after the patient."""
    if viewer_user_id == patient_id:
        found: bool = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", patient_id)
        return found
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM care_team_members m JOIN care_team_patients p USING (care_team_id)"
        " WHERE m.user_id = $1 AND p.patient_id = $2)",
        viewer_user_id,
        patient_id,
    )
    return found


async def can_act_on_alert(conn: asyncpg.Connection, user_id: int, alert_id: int) -> bool:
    """Whether the user may acknowledge, snooze or resolve the alert: they are a clinician,
    nurse or coach of a team that looks after the alert's patient.  (A patient does not act
    on their own alerts through this: their care team does.)"""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM alerts a"
        " JOIN care_team_patients p ON p.patient_id = a.user_id"
        " JOIN care_team_members m ON m.care_team_id = p.care_team_id"
        " WHERE a.id = $2 AND m.user_id = $1 AND m.role = ANY($3::text[]))",
        user_id,
        alert_id,
        list(ACTING_ROLES),
    )
    return found
