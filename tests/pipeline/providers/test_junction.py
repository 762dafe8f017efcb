"""Junction and Libre through Junction: the pure normalisers, then the client against the local
fake Junction API, then the Svix-signed pushes."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from db import connections, sync_runs, tenants
from db.env import SettingError
from db.metrics import Reading
from db.sessions import Session
from pipeline import runtime, vocabulary
from pipeline.errors import PermanentSyncError, TransientSyncError
from pipeline.providers import PROVIDERS, Window, build_providers
from pipeline.providers.junction import (
    Junction,
    normalise_activity,
    normalise_sample,
    normalise_sleep,
    parse_push,
    verify_push,
)
from pipeline.providers.libre import Libre
from pipeline.providers.push import BadSignature, MalformedPush, PushEvent
from pipeline.settings import PipelineSettings
from pipeline.sync import run_sync
from tests.fakes import junction as fake
from tests.fakes.junction import FakeJunction, User

WINDOW = Window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
NIGHT = datetime(2026, 3, 1, 23, tzinfo=UTC)  # in bed 23:00, up 07:00 on 2 March
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks' published test key
KEY = "sk_us_fake_team_key"


# -- the normalisers: pure ------------------------------------------------------------------


def test_a_night_is_a_session_with_its_stages_and_readings_at_wake_up() -> None:
    user = User()
    doc = fake.sleep(user, NIGHT)
    found = normalise_sleep(doc)
    woke = NIGHT + timedelta(hours=8)

    (session,) = [f for f in found if isinstance(f, Session)]
    assert (session.started_at, session.ended_at) == (NIGHT, woke)
    assert session.details == pytest.approx(
        {"deep_min": doc["deep"] / 60, "rem_min": doc["rem"] / 60, "light_min": doc["light"] / 60, "awake_min": 48.0}
    )
    readings = {r.metric: r for r in found if isinstance(r, Reading)}
    assert {r.recorded_at for r in readings.values()} == {woke}
    assert readings["sleep_duration"].value == pytest.approx(8 * 60 * 0.9)
    assert (readings["resting_heart_rate"].value, readings["hrv_rmssd"].value) == (52.0, 48.5)
    assert readings["skin_temp_deviation"].value == pytest.approx(-0.2)
    assert all(r.unit == vocabulary.UNITS[r.metric] for r in readings.values())


def test_a_nap_is_a_session_only_and_an_ongoing_sleep_is_nothing() -> None:
    user = User()
    nap = normalise_sleep(fake.sleep(user, NIGHT, 1, type="short_sleep"))
    assert [type(item) for item in nap] == [Session]
    assert normalise_sleep(fake.sleep(user, NIGHT, type="indeterminate")) == []


def test_a_null_field_yields_nothing_and_a_non_number_yields_nan() -> None:
    found = normalise_sleep(fake.sleep(User(), NIGHT, average_hrv=None, hr_lowest="low"))
    metrics = {r.metric: r.value for r in found if isinstance(r, Reading)}
    assert "hrv_rmssd" not in metrics and math.isnan(metrics["resting_heart_rate"])


def test_an_activity_day_is_dated_at_noon_utc_of_its_calendar_date() -> None:
    found = normalise_activity(fake.activity(User(), date(2026, 3, 2)))
    noon = datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert found == [Reading("steps", noon, 8123.0, "count"), Reading("active_energy", noon, 420.5, "kcal")]


def test_glucose_in_mmol_per_litre_is_stored_in_mg_dl() -> None:
    at = datetime(2026, 3, 2, 8, tzinfo=UTC)
    (reading,) = normalise_sample("glucose", fake.sample(at, 5.5, "mmol/L"))
    assert reading == Reading("glucose", at, pytest.approx(99.088), "mg/dL")  # type: ignore[arg-type]
    assert normalise_sample("glucose", fake.sample(at, 104, "mg/dL"))[0].value == 104.0
    assert math.isnan(normalise_sample("glucose", fake.sample(at, 5.5, "mol/m3"))[0].value)


def test_a_sample_without_a_usable_time_or_value_yields_nothing() -> None:
    at = datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert normalise_sample("heartrate", fake.sample(at, None, "bpm")) == []
    assert normalise_sample("heartrate", fake.sample(at, 60, "bpm") | {"timestamp": "soon"}) == []


# -- settings, availability -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "base"),
    [
        ({}, "https://api.tryvital.io"),
        ({"JUNCTION_REGION": "eu"}, "https://api.eu.tryvital.io"),
        ({"JUNCTION_ENVIRONMENT": "sandbox"}, "https://api.sandbox.tryvital.io"),
        ({"JUNCTION_ENVIRONMENT": "sandbox", "JUNCTION_REGION": "eu"}, "https://api.sandbox.eu.tryvital.io"),
        ({"JUNCTION_API_BASE": "https://api.us.junction.com"}, "https://api.us.junction.com"),
    ],
)
def test_environment_and_region_pick_junction_s_documented_base(env: dict[str, str], base: str) -> None:
    assert Junction.from_env(env | {"JUNCTION_API_KEY": KEY}).base_url == base


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"JUNCTION_ENVIRONMENT": "staging"}, "JUNCTION_ENVIRONMENT: expected one of production, sandbox"),
        ({"JUNCTION_REGION": "ap"}, "JUNCTION_REGION: expected one of us, eu"),
        ({"JUNCTION_WEBHOOK_SECRET": "s3cret"}, "JUNCTION_WEBHOOK_SECRET: expected a signing secret must start"),
        ({"JUNCTION_API_BASE": "ftp://junction.example"}, "JUNCTION_API_BASE: expected a URL"),
    ],
)
def test_bad_junction_settings_name_the_variable_and_never_the_secret(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingError, match=f"^{error}") as raised:
        Junction.from_env(env | {"JUNCTION_API_KEY": KEY})
    assert "s3cret" not in str(raised.value) and KEY not in str(raised.value)


async def test_without_an_api_key_junction_and_libre_register_but_say_what_they_need() -> None:
    providers = build_providers({})
    junction, libre = providers["junction"], providers["libre"]
    assert not junction.available and "JUNCTION_API_KEY" in (junction.unavailable_reason or "")
    assert not libre.available and "through Junction" in (libre.unavailable_reason or "")
    with pytest.raises(PermanentSyncError, match="JUNCTION_API_KEY"):
        [r async for r in libre.fetch({"user_id": "u"}, WINDOW, {})]
    configured = build_providers({"JUNCTION_API_KEY": KEY})
    assert configured["junction"].available and configured["libre"].available
    assert KEY not in repr(configured["junction"])


# -- the client against the fake Junction ---------------------------------------------------


@pytest.fixture(scope="module")
def fake_junction() -> Iterator[FakeJunction]:
    server = FakeJunction(api_key=KEY, page_size=50).start()
    yield server
    server.stop()


@pytest.fixture
def junction(fake_junction: FakeJunction) -> Junction:
    return Junction.from_env(fake_junction.env() | {"PROVIDER_TIMEOUT_SECONDS": "2"})


@pytest.fixture
def user(fake_junction: FakeJunction) -> User:
    """A night, two activity days, an hour of heart rate, and a day of Libre glucose in mmol/L."""
    found = fake_junction.add_user()
    found.summaries["sleep"] = [fake.sleep(found, NIGHT), fake.sleep(found, NIGHT - timedelta(days=3))]
    found.summaries["activity"] = [fake.activity(found, date(2026, 3, 1)), fake.activity(found, date(2026, 3, 2))]
    found.samples["heartrate"]["oura"] = fake.every_five_minutes(datetime(2026, 3, 2, 9, tzinfo=UTC), 12, 64, "bpm")
    glucose = fake.every_five_minutes(datetime(2026, 3, 2, tzinfo=UTC), 120, 5.5, "mmol/L")
    found.samples["glucose"]["freestyle_libre"] = glucose
    return found


async def collect(provider: Junction, user: User, window: Window = WINDOW) -> list[Reading | Session]:
    return [item async for item in provider.fetch({"user_id": user.user_id}, window, {})]


async def test_a_fetch_gives_sleep_activity_heart_rate_and_glucose_in_canonical_units(
    junction: Junction, user: User
) -> None:
    found = await collect(junction, user)

    sessions = [f for f in found if isinstance(f, Session)]
    readings = [f for f in found if isinstance(f, Reading)]
    assert [(s.started_at, s.ended_at) for s in sessions] == [(NIGHT, NIGHT + timedelta(hours=8))]
    by_metric: dict[str, list[Reading]] = {}
    for reading in readings:
        by_metric.setdefault(reading.metric, []).append(reading)
    assert len(by_metric["heart_rate"]) == 12 and len(by_metric["glucose"]) == 120
    assert [r.value for r in by_metric["glucose"]] == pytest.approx([5.5 * 18.016] * 120)
    assert [r.value for r in by_metric["steps"]] == [8123.0]  # 1 March's noon lies before the window
    assert all(vocabulary.problem(r, WINDOW.start, WINDOW.end) is None for r in readings)
    assert all(vocabulary.session_problem(s, WINDOW.start, WINDOW.end) is None for s in sessions)
    summary = user.received("sleep")[-1]
    assert summary.path == f"/v2/summary/sleep/{user.user_id}"
    assert summary.query == {"start_date": "2026-03-01", "end_date": "2026-03-03"}
    assert summary.headers["x-vital-api-key"] == KEY and "authorization" not in summary.headers


async def test_timeseries_pages_are_followed_by_cursor_until_there_is_none(junction: Junction, user: User) -> None:
    await collect(junction, user)

    pages = user.received("glucose")
    assert len(pages) == 3  # 120 samples, 50 a page
    assert "cursor" not in pages[0].query and pages[1].query["cursor"] != pages[2].query["cursor"]
    assert {p.query["start_date"] for p in pages} == {"2026-03-01T10:00:00Z"}  # 14 h early: LibreView's clock


async def test_libre_reads_only_libreview_glucose(fake_junction: FakeJunction, user: User) -> None:
    user.samples["glucose"]["dexcom_v3"] = fake.every_five_minutes(datetime(2026, 3, 2, tzinfo=UTC), 10, 180, "mg/dL")
    older = fake.every_five_minutes(datetime(2026, 3, 2, 12, 1, tzinfo=UTC), 2, 90, "mg/dL")
    user.samples["glucose"]["abbott_libreview"] = older
    libre = Libre.from_env(fake_junction.env())

    found = await collect(libre, user)

    assert {(r.metric, r.unit) for r in found if isinstance(r, Reading)} == {("glucose", "mg/dL")}
    assert len(found) == 122 and all(isinstance(r, Reading) and r.value < 100 for r in found)
    assert {r.path for r in user.requests} == {f"/v2/timeseries/{user.user_id}/glucose/grouped"}


async def test_libreview_times_are_the_wearer_s_wall_clock_and_other_sources_are_utc(
    junction: Junction, fake_junction: FakeJunction
) -> None:
    user = fake_junction.add_user()
    wall = datetime(2026, 3, 2, 8, tzinfo=UTC)  # sent as 08:00+00:00, meaning 08:00 in Paris
    user.samples["glucose"]["freestyle_libre"] = [fake.sample(wall, 5.0, "mmol/L")]
    user.samples["heartrate"]["oura"] = [fake.sample(wall, 61, "bpm")]

    found = [i async for i in junction.fetch({"user_id": user.user_id}, WINDOW, {"timezone": "Europe/Paris"})]

    times = {r.metric: r.recorded_at for r in found if isinstance(r, Reading)}
    assert times == {"glucose": wall - timedelta(hours=1), "heart_rate": wall}
    # The last half hour in Paris has wall-clock stamps past the window's end in UTC: still read.
    late = datetime(2026, 3, 3, 0, 30, tzinfo=UTC)  # 00:30 in Paris is 23:30 UTC on the 2nd
    user.samples["glucose"]["freestyle_libre"].append(fake.sample(late, 6.0, "mmol/L"))
    found = [i async for i in junction.fetch({"user_id": user.user_id}, WINDOW, {"timezone": "Europe/Paris"})]
    glucose = [r.recorded_at for r in found if isinstance(r, Reading) and r.metric == "glucose"]
    assert glucose == [wall - timedelta(hours=1), late - timedelta(hours=1)]
    assert user.received("glucose")[-1].query["end_date"] == "2026-03-03T14:00:00Z"
    assert user.received("heartrate")[-1].query["end_date"] == "2026-03-03T00:00:00Z"
    with pytest.raises(PermanentSyncError, match="not an IANA zone"):
        [i async for i in junction.fetch({"user_id": user.user_id}, WINDOW, {"timezone": "Mars/Olympus"})]


async def test_the_user_id_comes_from_the_connection_settings_or_its_stored_link(
    junction: Junction, user: User
) -> None:
    by_settings = [i async for i in junction.fetch({}, WINDOW, {"user_id": user.user_id})]
    assert len(by_settings) == len(await collect(junction, user))
    with pytest.raises(PermanentSyncError, match="names no Junction user id"):
        [i async for i in junction.fetch({}, WINDOW, {})]


async def test_a_malformed_sample_is_passed_on_for_the_sync_to_skip_while_the_rest_are_kept(
    junction: Junction, fake_junction: FakeJunction
) -> None:
    user = fake_junction.add_user()
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    samples = fake.every_five_minutes(start, 3, 6.1, "mmol/L")
    samples[1]["value"] = "HI"
    user.samples["glucose"]["freestyle_libre"] = samples

    found = [r for r in await collect(junction, user) if isinstance(r, Reading)]

    assert [r.recorded_at for r in found] == [start + timedelta(minutes=5 * i) for i in range(3)]
    problems = [vocabulary.problem(r, WINDOW.start, WINDOW.end) for r in found]
    assert problems[0] is None and problems[2] is None and problems[1] == "glucose value is not a finite number"


async def test_a_refused_api_key_is_permanent_and_never_a_token_refresh(
    fake_junction: FakeJunction, user: User
) -> None:
    wrong = Junction.from_env(fake_junction.env() | {"JUNCTION_API_KEY": "sk_us_revoked"})

    with pytest.raises(PermanentSyncError, match="junction answered 401: the API key was refused") as raised:
        await collect(wrong, user)

    assert type(raised.value) is PermanentSyncError and "sk_us_revoked" not in str(raised.value)


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ({"status": 429, "retry_after": "17"}, TransientSyncError, "junction answered 429"),
        ({"status": 503}, TransientSyncError, "junction answered 503: fake fault 503"),
        ({"status": 500}, TransientSyncError, "junction answered 500"),
        ({"delay": 3.0}, TransientSyncError, "junction: no answer within the request timeout"),
        ({"drop": True, "count": 2}, TransientSyncError, "junction: connection failed"),
        ({"status": 422, "body": {"detail": [{"loc": ["query", "start_date"], "msg": "field required"}]}},
         PermanentSyncError, "junction answered 422: field required"),
    ],
)  # fmt: skip
async def test_each_failure_of_a_data_request_maps_to_its_error(
    junction: Junction, user: User, fault: dict[str, Any], error: type[Exception], message: str
) -> None:
    options = dict(fault)
    # aiohttp retries a GET once on a dropped pooled connection, so a drop is played twice.
    user.fail(options.pop("count", 1), **options)

    with pytest.raises(error, match=message) as raised:
        await collect(junction, user)

    assert type(raised.value) is error
    if "retry_after" in fault:
        assert isinstance(raised.value, TransientSyncError) and raised.value.retry_after == 17.0


async def test_an_unknown_junction_user_is_a_permanent_failure_naming_junction_s_reason(junction: Junction) -> None:
    with pytest.raises(PermanentSyncError, match="junction answered 404: User not found"):
        [i async for i in junction.fetch({"user_id": "no-such-user"}, WINDOW, {})]


async def test_a_link_finds_or_makes_the_junction_user_and_returns_a_link_url(
    junction: Junction, fake_junction: FakeJunction
) -> None:
    first = await junction.link("cb-u9001", "https://cb.example/done")

    assert first.user_id in fake_junction.users and fake_junction.users[first.user_id].client_user_id == "cb-u9001"
    assert first.url.startswith(fake_junction.url + "/link?token=") and first.url not in repr(first)
    assert fake_junction.link_requests[-1] == {"user_id": first.user_id, "redirect_url": "https://cb.example/done"}
    again = await Libre.from_env(fake_junction.env()).link("cb-u9001")
    assert again.user_id == first.user_id and again.url != first.url  # found, not made twice
    assert fake_junction.link_requests[-1] == {
        "user_id": first.user_id,
        "filter_on_providers": ["abbott_libreview", "freestyle_libre"],
    }


async def test_a_link_with_a_refused_key_is_permanent(fake_junction: FakeJunction) -> None:
    wrong = Junction.from_env(fake_junction.env() | {"JUNCTION_API_KEY": "sk_us_revoked"})
    with pytest.raises(PermanentSyncError, match="the API key was refused"):
        await wrong.link("cb-u9002")


# -- pushes: Svix (Standard Webhooks) signatures, checked against the official library --------


def signed(body: bytes, at: float | None = None, secret: str = SECRET, msg_id: str = "msg_2Yv1") -> dict[str, str]:
    """Headers as Svix sends them, signed by the standardwebhooks library, not by our code."""
    stamp = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    signature = Webhook(secret).sign(msg_id, stamp, body.decode())
    return {"svix-id": msg_id, "svix-timestamp": str(int(stamp.timestamp())), "svix-signature": signature}


def event(user_id: str, kind: str = "daily.data.glucose.created", slug: str = "freestyle_libre") -> bytes:
    doc = {
        "event_type": kind,
        "user_id": user_id,
        "client_user_id": "cb-42",
        "team_id": "6b74423d-0504-4470-9afb-477252ccf67a",
        "data": {"user_id": user_id, "source": {"provider": slug, "slug": slug}, "data": []},
    }
    return json.dumps(doc).encode()


def test_a_svix_signature_over_id_timestamp_and_body_passes() -> None:
    body = event("u-1")
    verify_push(body, signed(body), SECRET)


@pytest.mark.parametrize("fault", ["tampered body", "stale", "future", "wrong secret", "other id", "unsigned"])
def test_a_push_that_is_not_genuine_and_fresh_is_refused(fault: str) -> None:
    body = event("u-1")
    at = time.time() + {"stale": -301, "future": 301}.get(fault, 0)
    headers = signed(body, at, "whsec_" + "A" * 32 if fault == "wrong secret" else SECRET)
    if fault == "other id":
        headers["svix-id"] = "msg_other"
    if fault == "unsigned":
        headers = {}
    sent = body.replace(b"u-1", b"u-2") if fault == "tampered body" else body

    with pytest.raises(BadSignature):
        verify_push(sent, headers, SECRET)


def test_a_rotated_secret_s_signature_list_passes_with_either_entry() -> None:
    body = event("u-1")
    old, new = signed(body), signed(body, secret="whsec_" + "B" * 32)
    both = old | {"svix-signature": f"{new['svix-signature']} {old['svix-signature']}"}
    verify_push(body, both, SECRET)


GLUCOSE, SLEEP = frozenset({"glucose"}), frozenset({"sleep"})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (event("u-1"), PushEvent("libre", "u-1", "daily.data.glucose.created", only=GLUCOSE)),
        (event("u-1", "daily.data.sleep.updated", "oura"),
         PushEvent("junction", "u-1", "daily.data.sleep.updated", only=SLEEP)),
        (event("u-1", "provider.connection.error", "oura"),
         PushEvent("junction", "u-1", "provider.connection.error", sync=False)),
        (event("u-1", "daily.data.workouts.created", "oura"),
         PushEvent("junction", "u-1", "daily.data.workouts.created", sync=False)),
        (event("u-1", "daily.data.sleep.created", "abbott_libreview"),
         PushEvent("libre", "u-1", "daily.data.sleep.created", sync=False)),
    ],
)  # fmt: skip
def test_events_name_the_junction_user_the_connection_what_changed_and_whether_to_sync(
    body: bytes, expected: PushEvent
) -> None:
    assert parse_push(body) == expected


def test_a_historical_pull_gives_the_span_it_looked_through() -> None:
    data = {"user_id": "u-1", "provider": "oura", "is_final": True}
    span = {"start_date": "2026-02-01T00:00:00+00:00", "end_date": "2026-03-01T00:00:00+00:00"}
    doc = {"event_type": "historical.data.sleep.created", "user_id": "u-1", "data": data | span}
    found = parse_push(json.dumps(doc).encode())
    assert found.window == Window(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    assert found.only == SLEEP and found.provider == "junction"
    backwards = doc | {"data": data | {"start_date": span["end_date"], "end_date": span["start_date"]}}
    assert parse_push(json.dumps(backwards).encode()).window is None


async def test_a_fetch_for_a_push_reads_only_what_it_named(junction: Junction, user: User) -> None:
    window = Window(WINDOW.start, WINDOW.end, frozenset({"glucose"}))
    found = [i async for i in junction.fetch({"user_id": user.user_id}, window, {})]
    assert {type(i) for i in found} == {Reading} and {i.metric for i in found if isinstance(i, Reading)} == {"glucose"}
    assert {r.path.split("/")[-2] for r in user.requests} == {"glucose"}


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"event_type": "daily.data.sleep.created"}', b'{"user_id": "u"}', b"\xff"]
)
def test_a_body_junction_does_not_document_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPush):
        parse_push(body)


# -- a Libre connection through the sync pipeline -------------------------------------------


async def test_a_libre_sync_stores_glucose_in_mg_dl_and_counts_the_malformed_sample(
    pool: asyncpg.Pool, fake_junction: FakeJunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PROVIDERS, "libre", Libre.from_env(fake_junction.env()))
    user = fake_junction.add_user()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    samples = fake.every_five_minutes(start, 4, 4.0, "mmol/L")
    samples[2]["value"] = None  # a gap: nothing, not a zero
    samples[3]["value"] = "LO"  # malformed: counted invalid, the rest kept
    user.samples["glucose"]["freestyle_libre"] = samples
    async with pool.acquire() as conn:
        tenant_id = await tenants.ensure_tenant(conn, "libre-sync", "Libre sync")
        patient = await tenants.ensure_user(conn, tenant_id, "libre-p1", "Pat Libre")
        connection_id = await connections.upsert(
            conn, runtime.current().keyring, user_id=patient, provider="libre", tokens={"user_id": user.user_id}
        )
        run_id = await sync_runs.create(conn, connection_id, "scheduled")

    outcome = await run_sync(pool, runtime.current().keyring, PipelineSettings(redis_url=None), run_id)

    assert outcome is not None and outcome.status == "completed" and (outcome.received, outcome.invalid) == (3, 1)
    rows = await pool.fetch(
        "SELECT metric, value, unit, recorded_at FROM metrics WHERE user_id = $1 ORDER BY recorded_at", patient
    )
    assert [(r["metric"], r["unit"], r["recorded_at"]) for r in rows] == [
        ("glucose", "mg/dL", start), ("glucose", "mg/dL", start + timedelta(minutes=5))
    ]  # fmt: skip
    assert [r["value"] for r in rows] == pytest.approx([4.0 * 18.016] * 2)


# -- anything a peer may send: a typed error or nothing, never a crash -----------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
LIKELY = JSON_VALUES | st.sampled_from(["daily.data.glucose.created", "historical.data.sleep.created", "u-1",
                                        "freestyle_libre", "2026-03-02T08:00:00+00:00"])  # fmt: skip
SOURCES = st.fixed_dictionaries({}, optional={"provider": LIKELY, "slug": LIKELY}) | JSON_VALUES
DATA = st.fixed_dictionaries(
    {}, optional={"user_id": LIKELY, "source": SOURCES, "provider": LIKELY | SOURCES, "start_date": LIKELY,
                  "end_date": LIKELY}
) | JSON_VALUES  # fmt: skip
EVENTS = st.fixed_dictionaries({}, optional={"event_type": LIKELY, "user_id": LIKELY, "data": DATA})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | EVENTS.map(lambda d: json.dumps(d).encode()))
def test_any_push_body_is_an_event_or_malformed(body: bytes) -> None:
    try:
        found = parse_push(body)
    except MalformedPush:
        return
    assert found.provider in ("junction", "libre") and found.provider_user_id


SUMMARY_FIELDS = st.sampled_from(
    ["bedtime_start", "bedtime_stop", "type", "total", "deep", "rem", "efficiency", "calendar_date", "steps",
     "timestamp", "value", "unit"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(SUMMARY_FIELDS, JSON_VALUES | st.sampled_from(["2026-03-02T08:00:00+00:00", "long_sleep"])))
def test_any_document_normalises_to_readings_or_nothing(doc: dict[str, Any]) -> None:
    for found in (normalise_sleep(doc), normalise_activity(doc), normalise_sample("glucose", doc)):
        assert all(isinstance(item, Reading | Session) for item in found)
