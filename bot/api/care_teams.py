"""Care teams over the API: the teams, their members (users of the tenant with a role) and the
patients they look after.  Reads need read, the rest write.

A member or patient id of another tenant, in the path or the body, is a 404.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from bot.api.auth import require
from bot.api.body import json_body, string_field, unknown_fields
from bot.api.errors import ApiError, invalid, not_found
from bot.api.openapi import BIGINT_MAX, ID, Routes, Schema, listing
from bot.api.params import CURSOR, LIMIT, bigint, cursor, encode_cursor, limit, page_schema, path_id
from bot.api.users import _timezone, owned
from bot.state import pool
from db import care_teams
from db.care_teams import ROLES, CareTeam, DuplicateName, Member, Patient

_TIME = {"type": "string", "format": "date-time"}
TEAM: Schema = {
    "type": "object",
    "required": ["id", "name", "timezone", "created_at"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "timezone": {"type": "string"},
                   "created_at": _TIME},
}  # fmt: skip
_TEAM_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "timezone": {"type": "string", "description": "An IANA zone (Europe/London) for quiet hours; default UTC."},
}
NEW_TEAM: Schema = {"type": "object", "required": ["name"], "properties": _TEAM_FIELDS}
CHANGE_TEAM: Schema = {"type": "object", "properties": _TEAM_FIELDS}
MEMBER: Schema = {
    "type": "object",
    "required": ["user_id", "display_name", "role", "created_at"],
    "properties": {"user_id": {"type": "integer"}, "display_name": {"type": "string"}, "role": {"enum": list(ROLES)},
                   "created_at": _TIME},
}  # fmt: skip
NEW_MEMBER: Schema = {"type": "object", "required": ["user_id", "role"],
                      "properties": {"user_id": ID, "role": {"enum": list(ROLES)}}}  # fmt: skip
CHANGE_MEMBER: Schema = {"type": "object", "required": ["role"], "properties": {"role": {"enum": list(ROLES)}}}
PATIENT: Schema = {
    "type": "object",
    "required": ["patient_id", "display_name", "created_at"],
    "properties": {"patient_id": {"type": "integer"}, "display_name": {"type": "string"}, "created_at": _TIME},
}
NEW_PATIENT: Schema = {"type": "object", "required": ["patient_id"], "properties": {"patient_id": ID}}


def _team(team: CareTeam) -> dict[str, Any]:
    return {"id": team.id, "name": team.name, "timezone": team.timezone, "created_at": team.created_at.isoformat()}


def _member(member: Member) -> dict[str, Any]:
    return {"user_id": member.user_id, "display_name": member.display_name, "role": member.role,
            "created_at": member.created_at.isoformat()}  # fmt: skip


def _patient(patient: Patient) -> dict[str, Any]:
    return {"patient_id": patient.patient_id, "display_name": patient.display_name,
            "created_at": patient.created_at.isoformat()}  # fmt: skip


def _conflict() -> ApiError:
    return ApiError(409, "conflict", "another care team of this tenant has this name", {"field": "name"})


def _role(body: dict[str, Any]) -> str:
    role = body.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise invalid(f"role must be one of {', '.join(ROLES)}", {"field": "role"})
    return role


def _body_id(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= BIGINT_MAX:
        raise invalid(f"{name} must be an id (an integer of 1 or more)", {"field": name})
    return value


async def _owned_team(conn: asyncpg.Connection, tenant_id: int, request: web.Request) -> CareTeam:
    found = await care_teams.get(conn, tenant_id, path_id(request, "team_id", "care team"))
    if found is None:
        raise not_found("care team")
    return found


async def create_team(request: web.Request) -> web.Response:
    key = require(request, "write")
    body = await json_body(request)
    unknown_fields(body, set(_TEAM_FIELDS))
    name = string_field(body, "name", required=True)
    assert name is not None
    async with pool(request).acquire() as conn:
        try:
            team = await care_teams.create(conn, key.tenant_id, name, _timezone(body) or "UTC")
        except DuplicateName:
            raise _conflict() from None
    return web.json_response(_team(team), status=201)


async def list_teams(request: web.Request) -> web.Response:
    key = require(request, "read")
    size, after = limit(request), cursor(request, bigint)
    async with pool(request).acquire() as conn:
        found = await care_teams.page(conn, key.tenant_id, after[0] if after else 0, size + 1)
    more, found = len(found) > size, found[:size]
    return web.json_response(
        {"data": [_team(t) for t in found], "next_cursor": encode_cursor([found[-1].id]) if more else None}
    )


async def get_team(request: web.Request) -> web.Response:
    key = require(request, "read")
    async with pool(request).acquire() as conn:
        return web.json_response(_team(await _owned_team(conn, key.tenant_id, request)))


async def update_team(request: web.Request) -> web.Response:
    key = require(request, "write")
    team_id = path_id(request, "team_id", "care team")
    body = await json_body(request)
    unknown_fields(body, set(_TEAM_FIELDS))
    name = string_field(body, "name", required=False)
    timezone = _timezone(body)
    async with pool(request).acquire() as conn:
        try:
            team = await care_teams.update(conn, key.tenant_id, team_id, name=name, timezone=timezone)
        except DuplicateName:
            raise _conflict() from None
    if team is None:
        raise not_found("care team")
    return web.json_response(_team(team))


async def delete_team(request: web.Request) -> web.Response:
    key = require(request, "write")
    async with pool(request).acquire() as conn, conn.transaction():
        team = await _owned_team(conn, key.tenant_id, request)
        # The team's rules would go with it, silently: ask for them to be moved or deleted first.
        if rules := await care_teams.rule_count(conn, team.id):
            raise ApiError(409, "conflict", f"the care team owns {rules} rule(s): delete them or change their owner")
        await care_teams.delete(conn, key.tenant_id, team.id)
    return web.Response(status=204)


async def list_members(request: web.Request) -> web.Response:
    key = require(request, "read")
    async with pool(request).acquire() as conn:
        team = await _owned_team(conn, key.tenant_id, request)
        found = await care_teams.members(conn, team.id)
    return web.json_response({"data": [_member(m) for m in found]})


async def add_member(request: web.Request) -> web.Response:
    key = require(request, "write")
    path_id(request, "team_id", "care team")
    body = await json_body(request)
    unknown_fields(body, {"user_id", "role"})
    user_id, role = _body_id(body, "user_id"), _role(body)
    return await _set_member(request, key.tenant_id, user_id, role, status=201)


async def change_member(request: web.Request) -> web.Response:
    key = require(request, "write")
    path_id(request, "team_id", "care team")
    user_id = path_id(request, "user_id", "member")
    body = await json_body(request)
    unknown_fields(body, {"role"})
    role = _role(body)
    async with pool(request).acquire() as conn:
        team = await _owned_team(conn, key.tenant_id, request)
        if not any(m.user_id == user_id for m in await care_teams.members(conn, team.id)):
            raise not_found("member")
    return await _set_member(request, key.tenant_id, user_id, role, status=200)


async def _set_member(request: web.Request, tenant_id: int, user_id: int, role: str, *, status: int) -> web.Response:
    async with pool(request).acquire() as conn:
        team = await _owned_team(conn, tenant_id, request)
        await owned(conn, tenant_id, user_id)
        member = await care_teams.set_member(conn, team.id, user_id, role)
    if member is None:
        raise not_found("user")
    return web.json_response(_member(member), status=status)


async def remove_member(request: web.Request) -> web.Response:
    key = require(request, "write")
    user_id = path_id(request, "user_id", "member")
    async with pool(request).acquire() as conn:
        team = await _owned_team(conn, key.tenant_id, request)
        if not await care_teams.remove_member(conn, team.id, user_id):
            raise not_found("member")
    return web.Response(status=204)


async def list_patients(request: web.Request) -> web.Response:
    key = require(request, "read")
    async with pool(request).acquire() as conn:
        team = await _owned_team(conn, key.tenant_id, request)
        found = await care_teams.patients(conn, team.id)
    return web.json_response({"data": [_patient(p) for p in found]})


async def add_patient(request: web.Request) -> web.Response:
    key = require(request, "write")
    path_id(request, "team_id", "care team")
    body = await json_body(request)
    unknown_fields(body, {"patient_id"})
    patient_id = _body_id(body, "patient_id")
    async with pool(request).acquire() as conn:
        team = await _owned_team(conn, key.tenant_id, request)
        await owned(conn, key.tenant_id, patient_id)
        patient = await care_teams.add_patient(conn, team.id, patient_id)
    if patient is None:
        raise not_found("user")
    return web.json_response(_patient(patient), status=201)


async def remove_patient(request: web.Request) -> web.Response:
    key = require(request, "write")
    patient_id = path_id(request, "patient_id", "patient")
    async with pool(request).acquire() as conn:
        team = await _owned_team(conn, key.tenant_id, request)
        if not await care_teams.remove_patient(conn, team.id, patient_id):
            raise not_found("patient")
    return web.Response(status=204)


def add_routes(routes: Routes) -> None:
    tag, one = "care-teams", "/v1/care-teams/{team_id}"
    add = routes.add
    add("POST", "/v1/care-teams", create_team, scope="write", tag=tag, body=NEW_TEAM, responses={201: TEAM},
        errors=(409,), summary="Create a care team")  # fmt: skip
    add("GET", "/v1/care-teams", list_teams, scope="read", tag=tag, query=(LIMIT, CURSOR),
        responses={200: page_schema(TEAM)}, summary="The tenant's care teams, by page")  # fmt: skip
    add("GET", one, get_team, scope="read", tag=tag, responses={200: TEAM}, summary="One care team")
    add("PATCH", one, update_team, scope="write", tag=tag, body=CHANGE_TEAM, responses={200: TEAM}, errors=(409,),
        summary="Rename a care team or change its timezone")  # fmt: skip
    add("DELETE", one, delete_team, scope="write", tag=tag, responses={204: None}, errors=(409,),
        summary="Delete a care team that owns no rules, with its member and patient lists")  # fmt: skip
    add("GET", one + "/members", list_members, scope="read", tag=tag, responses={200: listing(MEMBER)},
        summary="The team's members and their roles")  # fmt: skip
    add("POST", one + "/members", add_member, scope="write", tag=tag, body=NEW_MEMBER, responses={201: MEMBER},
        summary="Add a user of the tenant to the team with a role (or change their role)")  # fmt: skip
    add("PATCH", one + "/members/{user_id}", change_member, scope="write", tag=tag, body=CHANGE_MEMBER,
        responses={200: MEMBER}, summary="Change a member's role")  # fmt: skip
    add("DELETE", one + "/members/{user_id}", remove_member, scope="write", tag=tag, responses={204: None},
        summary="Take a member off the team")  # fmt: skip
    add("GET", one + "/patients", list_patients, scope="read", tag=tag, responses={200: listing(PATIENT)},
        summary="The patients the team looks after")  # fmt: skip
    add("POST", one + "/patients", add_patient, scope="write", tag=tag, body=NEW_PATIENT, responses={201: PATIENT},
        summary="Put a patient of the tenant on the team's list (idempotent)")  # fmt: skip
    add("DELETE", one + "/patients/{patient_id}", remove_patient, scope="write", tag=tag, responses={204: None},
        summary="Take a patient off the team's list")  # fmt: skip
