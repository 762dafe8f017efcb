"""Oura: the pure normaliser, then the client against the local fake Oura API."""

from __future__ import annotations

import math
import socket
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from db.env import SettingError
from db.metrics import Reading
from db.sessions import Session
from pipeline.errors import AccessTokenRejectedError, PermanentSyncError, RefreshFailedError, TransientSyncError
from pipeline.providers import PROVIDERS, Window, build_providers, configure, get_provider
from pipeline.providers.http import OAuthApp
from pipeline.providers.oura import COLLECTIONS, Oura, normalise, queries
from pipeline.vocabulary import UNITS
from tests.fakes import oura as fake
from tests.fakes.oura import Account, FakeOura

DAY = date(2026, 3, 2)
DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
WINDOW = Window(datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- the normaliser: pure --------------------------------------------------------------------


def test_daily_activity_becomes_steps_and_active_energy_at_the_start_of_the_users_day() -> None:
    assert normalise("daily_activity", fake.activity(DAY, steps=9123, active_calories=512)) == [
        Reading("steps", at("2026-03-02T04:00:00+02:00"), 9123.0, "count"),
        Reading("active_energy", at("2026-03-02T04:00:00+02:00"), 512.0, "kcal"),
    ]


def test_a_long_sleep_is_a_session_and_readings_in_minutes_percent_bpm_and_ms_dated_at_wake_time() -> None:
    woke = at("2026-03-02T07:12:00+02:00")
    assert normalise("sleep", fake.sleep(DAY, total_sleep_duration=27015)) == [
        Session(
            "sleep",
            at("2026-03-01T23:12:00+02:00"),
            woke,
            None,
            {"deep_min": 90.0, "rem_min": 105.0, "light_min": 255.0, "awake_min": 30.0},
        ),
        Reading("sleep_duration", woke, 450.25, "min"),
        Reading("sleep_efficiency", woke, 91.0, "%"),
        Reading("sleep_deep", woke, 90.0, "min"),
        Reading("sleep_rem", woke, 105.0, "min"),
        Reading("resting_heart_rate", woke, 52.0, "bpm"),
        Reading("hrv_rmssd", woke, 48.0, "ms"),
    ]


@pytest.mark.parametrize("kind", ["sleep", "late_nap"])
def test_a_nap_is_a_sleep_session_but_gives_no_nightly_readings(kind: str) -> None:
    (nap,) = normalise("sleep", fake.sleep(DAY, kind=kind))
    assert isinstance(nap, Session) and (nap.kind, nap.duration) == ("sleep", timedelta(hours=8))


@pytest.mark.parametrize("kind", ["rest", "deleted", None])
def test_rest_periods_and_deleted_sleeps_yield_nothing(kind: str | None) -> None:
    assert normalise("sleep", fake.sleep(DAY, kind=kind)) == []


def test_spo2_has_no_timestamp_so_it_is_dated_noon_utc_of_its_day() -> None:
    assert normalise("daily_spo2", fake.spo2(DAY, 96.5)) == [
        Reading("spo2", datetime(2026, 3, 2, 12, tzinfo=UTC), 96.5, "%")
    ]


def test_readiness_temperature_deviation_is_skin_temperature_deviation_in_celsius() -> None:
    assert normalise("daily_readiness", fake.readiness(DAY, -0.31)) == [
        Reading("skin_temp_deviation", at("2026-03-02T00:00:00+02:00"), -0.31, "°C")
    ]


def test_a_heart_rate_sample_keeps_its_own_time() -> None:
    sample = fake.heartrate(datetime(2026, 3, 2, 6, 5, tzinfo=UTC), 64)
    assert normalise("heartrate", sample) == [
        Reading("heart_rate", datetime(2026, 3, 2, 6, 5, tzinfo=UTC), 64.0, "bpm")
    ]


@pytest.mark.parametrize(
    ("collection", "doc", "kept"),
    [
        ("daily_activity", fake.activity(DAY, steps=None), ["active_energy"]),
        ("daily_activity", fake.activity(DAY, steps=None, active_calories=None), []),
        ("daily_spo2", fake.spo2(DAY, None), []),
        ("daily_spo2", {"id": "x", "day": "2026-03-02", "spo2_percentage": None}, []),
        ("daily_readiness", fake.readiness(DAY, None), []),
        ("sleep", fake.sleep(DAY, average_hrv=None, lowest_heart_rate=None), ["session", "sleep_duration",
                                                                             "sleep_efficiency", "sleep_deep",
                                                                             "sleep_rem"]),
    ],
)  # fmt: skip
def test_null_fields_yield_nothing_rather_than_a_zero(collection: str, doc: dict[str, Any], kept: list[str]) -> None:
    assert [r.metric if isinstance(r, Reading) else "session" for r in normalise(collection, doc)] == kept


def test_a_null_sleep_stage_is_left_out_of_the_session_details() -> None:
    session = normalise("sleep", fake.sleep(DAY, kind="late_nap", rem_sleep_duration=None, awake_time=None))[0]
    assert isinstance(session, Session) and session.details == {"deep_min": 90.0, "light_min": 255.0}


def test_a_field_that_is_not_a_number_becomes_nan_so_the_sync_counts_it_invalid() -> None:
    (steps, energy) = normalise("daily_activity", fake.activity(DAY) | {"steps": "lots"})
    assert isinstance(steps, Reading) and isinstance(energy, Reading)
    assert steps.metric == "steps" and math.isnan(steps.value)
    assert energy.value == 420.0


def test_a_document_without_a_usable_date_yields_nothing() -> None:
    assert normalise("heartrate", {"bpm": 60, "source": "awake"}) == []
    assert normalise("daily_spo2", {"id": "x", "day": "yesterday", "spo2_percentage": {"average": 97}}) == []


def test_every_metric_oura_declares_is_canonical_and_every_collection_maps_to_it() -> None:
    assert Oura.metrics <= set(UNITS)
    assert Oura.metrics == {f.metric for c in COLLECTIONS.values() for f in c.fields}
    assert "daily_sleep" not in COLLECTIONS  # scores only: nothing in our vocabulary


def test_the_window_becomes_the_documented_parameters_with_a_day_either_side_for_local_days() -> None:
    window = Window(datetime(2026, 3, 1, 9, 30, tzinfo=UTC), datetime(2026, 3, 3, 18, 0, tzinfo=UTC))
    assert list(queries(COLLECTIONS["daily_spo2"], window)) == [{"start_date": "2026-02-28", "end_date": "2026-03-04"}]
    assert list(queries(COLLECTIONS["heartrate"], window)) == [
        {"start_datetime": "2026-03-01T09:30:00Z", "end_datetime": "2026-03-03T18:00:00Z"}
    ]


def test_a_window_over_30_days_is_read_in_chunks_oura_accepts() -> None:
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 15, tzinfo=UTC))
    assert list(queries(COLLECTIONS["daily_activity"], window)) == [
        {"start_date": "2025-12-31", "end_date": "2026-01-29"},
        {"start_date": "2026-01-30", "end_date": "2026-02-16"},
    ]
    assert list(queries(COLLECTIONS["heartrate"], window)) == [
        {"start_datetime": "2026-01-01T00:00:00Z", "end_datetime": "2026-01-31T00:00:00Z"},
        {"start_datetime": "2026-01-31T00:00:00Z", "end_datetime": "2026-02-15T00:00:00Z"},
    ]


# -- settings, availability and the registry -------------------------------------------------


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"OURA_CLIENT_ID": "abc"}, "OURA_CLIENT_SECRET: expected both"),
        ({"OURA_CLIENT_SECRET": "s3cret"}, "OURA_CLIENT_ID: expected both"),
        ({"OURA_API_BASE": "ftp://oura.example"}, "OURA_API_BASE: expected a URL"),
        ({"OURA_TOKEN_URL": "api.ouraring.com/oauth/token"}, "OURA_TOKEN_URL: expected a URL"),
    ],
)
def test_bad_oura_settings_name_the_variable_and_never_the_secret(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingError, match=f"^{error}") as raised:
        Oura.from_env(env)
    assert "s3cret" not in str(raised.value)


async def test_oura_without_credentials_registers_but_reports_itself_unavailable() -> None:
    oura = build_providers({})["oura"]
    assert isinstance(oura, Oura)
    assert (oura.available, oura.unavailable_reason) == (False, "Oura has no client id and secret configured")
    with pytest.raises(PermanentSyncError, match="no client id and secret"):
        [r async for r in oura.fetch({"access_token": "x"}, WINDOW, {})]


def test_the_defaults_are_oura_s_documented_endpoints_and_the_timeout_30_seconds() -> None:
    oura = Oura.from_env({"OURA_CLIENT_ID": "abc", "OURA_CLIENT_SECRET": "s3cret"})
    assert oura.available and oura.oauth is not None
    assert (oura.base_url, oura.oauth.token_url, oura.timeout) == (
        "https://api.ouraring.com",
        "https://api.ouraring.com/oauth/token",
        30.0,
    )
    assert "s3cret" not in repr(oura.oauth)
    url = oura.authorize_url("https://cb.example/oauth/oura", "st4te")
    assert url.startswith("https://cloud.ouraring.com/oauth/authorize?response_type=code&client_id=abc&")
    assert "state=st4te" in url and "scope=daily+heartrate+spo2" in url


def test_configure_rebuilds_the_registry_in_place_and_keeps_providers_registered_by_hand(
    fake_oura: FakeOura,
) -> None:
    before, registry = PROVIDERS["oura"], PROVIDERS
    PROVIDERS["by-hand"] = before
    try:
        configure(fake_oura.env() | {"PROVIDER_TIMEOUT_SECONDS": "2.5"})
        oura = get_provider("oura")
        assert isinstance(oura, Oura) and oura is not before and PROVIDERS is registry
        assert (oura.base_url, oura.timeout, oura.available) == (fake_oura.url, 2.5, True)
        assert get_provider("by-hand") is before
    finally:
        del PROVIDERS["by-hand"]
        PROVIDERS["oura"] = before


# -- the client against the fake Oura --------------------------------------------------------


@pytest.fixture
def oura(fake_oura: FakeOura) -> Oura:
    app = OAuthApp(f"{fake_oura.url}/oauth/token", fake_oura.client_id, fake_oura.client_secret)
    return Oura(app, base_url=fake_oura.url, timeout=5)


@pytest.fixture
def account(fake_oura: FakeOura) -> Account:
    return fake_oura.add_account(documents=fake.documents(DAYS), page_size=2)


async def collect(oura: Oura, tokens: dict[str, Any], window: Window = WINDOW) -> list[Reading | Session]:
    return [item async for item in oura.fetch(tokens, window, {})]


def readings(items: list[Reading | Session]) -> list[Reading]:
    return [item for item in items if isinstance(item, Reading)]


async def test_every_page_of_every_collection_is_read_in_canonical_units(oura: Oura, account: Account) -> None:
    items = await collect(oura, account.tokens())

    assert len(items) == len(DAYS) * fake.ITEMS_PER_DAY
    found = readings(items)
    assert {(r.metric, r.unit) for r in found} == {(m, UNITS[m]) for m in Oura.metrics}
    assert sorted(r.value for r in found if r.metric == "steps") == [8001.0, 8002.0, 8003.0]
    assert all(r.recorded_at.tzinfo is not None for r in found)
    assert [s.ended_at.date() for s in items if isinstance(s, Session)] == DAYS
    # Three days on pages of two: a second page, asked for by its next_token, for each collection.
    for collection in ("daily_activity", "sleep", "daily_spo2", "daily_readiness"):
        pages = account.received(collection)
        assert len(pages) == 2 and "next_token" not in pages[0].query and "next_token" in pages[1].query
    assert len(account.received("heartrate")) == 5  # nine samples


async def test_the_window_reaches_oura_as_documented_query_parameters(oura: Oura, account: Account) -> None:
    await collect(oura, account.tokens())

    assert account.received("daily_activity")[0].query == {"start_date": "2026-02-27", "end_date": "2026-03-05"}
    assert account.received("heartrate")[0].query == {
        "start_datetime": "2026-02-28T00:00:00Z",
        "end_datetime": "2026-03-04T00:00:00Z",
    }
    assert account.received("daily_sleep") == []


async def test_documents_of_the_padding_days_outside_the_window_are_not_yielded(
    oura: Oura, fake_oura: FakeOura
) -> None:
    account = fake_oura.add_account(documents=fake.documents([date(2026, 2, 27), *DAYS, date(2026, 3, 5)]))

    items = await collect(oura, account.tokens())

    assert all(WINDOW.start <= r.recorded_at <= WINDOW.end for r in readings(items))
    assert len(readings(items)) == len(DAYS) * (fake.ITEMS_PER_DAY - 1)
    # A sleep filed under the day before the window may still end in it: sessions get a day's grace.
    sessions = [s.ended_at for s in items if isinstance(s, Session)]
    assert sessions == [at("2026-02-27T07:12:00+02:00")] + [at(f"{d}T07:12:00+02:00") for d in DAYS]


async def test_a_refresh_rotates_both_tokens_and_the_spent_refresh_token_is_refused(
    oura: Oura, fake_oura: FakeOura, account: Account
) -> None:
    old = account.tokens()

    new = await oura.refresh(old)

    assert (new["access_token"], new["refresh_token"]) == (account.access_token, account.refresh_token)
    assert new["access_token"] != old["access_token"] and new["refresh_token"] != old["refresh_token"]
    expires_at = datetime.fromisoformat(new["expires_at"])
    assert expires_at.utcoffset() == timedelta(0)
    assert abs(expires_at - datetime.now(UTC) - timedelta(days=1)) < timedelta(minutes=1)
    assert fake_oura.token_forms[-1] == {
        "grant_type": "refresh_token",
        "refresh_token": old["refresh_token"],
        "client_id": fake_oura.client_id,
        "client_secret": fake_oura.client_secret,
    }
    assert len(await collect(oura, new)) == len(DAYS) * fake.ITEMS_PER_DAY
    with pytest.raises(RefreshFailedError) as refused:
        await oura.refresh(old)
    assert old["refresh_token"] not in str(refused.value)


async def test_an_authorization_code_is_exchanged_for_our_token_shape(oura: Oura, fake_oura: FakeOura) -> None:
    account = fake_oura.add_account()

    tokens = await oura.exchange_code(account.name, "https://cb.example/oauth/oura")

    assert set(tokens) == {"access_token", "refresh_token", "expires_at"}
    assert tokens["access_token"] == account.access_token
    assert fake_oura.token_forms[-1]["redirect_uri"] == "https://cb.example/oauth/oura"


async def test_a_revoked_grant_is_a_refresh_failure_whose_message_carries_no_token(
    oura: Oura, account: Account
) -> None:
    account.revoked = True
    tokens = account.tokens()

    with pytest.raises(RefreshFailedError, match="oura answered 400: Token already used or revoked") as raised:
        await oura.refresh(tokens)

    assert tokens["refresh_token"] not in str(raised.value) and tokens["access_token"] not in str(raised.value)


async def test_rejected_client_credentials_are_permanent_but_not_the_users_fault(
    fake_oura: FakeOura, account: Account
) -> None:
    wrong = Oura(
        OAuthApp(f"{fake_oura.url}/oauth/token", fake_oura.client_id, "not-the-secret"), base_url=fake_oura.url
    )

    with pytest.raises(PermanentSyncError, match="check the client id and secret") as raised:
        await wrong.refresh(account.tokens())

    assert not isinstance(raised.value, RefreshFailedError)
    assert "not-the-secret" not in str(raised.value)


async def test_a_busy_token_endpoint_is_transient_and_spends_no_refresh_token(oura: Oura, account: Account) -> None:
    tokens = account.tokens()
    account.fail(token=True, status=503)

    with pytest.raises(TransientSyncError) as raised:
        await oura.refresh(tokens)

    assert not isinstance(raised.value, PermanentSyncError)
    assert account.refresh_token == tokens["refresh_token"]


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ({"status": 429, "retry_after": "7"}, TransientSyncError, "oura answered 429"),
        ({"status": 429}, TransientSyncError, "oura answered 429"),
        ({"status": 503}, TransientSyncError, "oura answered 503: fake fault 503"),
        ({"status": 500, "body": {"status": 500, "title": "Internal Server Error"}},
         TransientSyncError, "oura answered 500: Internal Server Error"),
        # aiohttp itself sends an idempotent GET again once when the peer hangs up: drop both.
        ({"drop": True, "count": 2}, TransientSyncError, "oura: connection failed"),
        ({"status": 401}, AccessTokenRejectedError, "oura answered 401"),
        ({"status": 403, "body": {"status": 403, "title": "Forbidden", "detail": "Missing scopes: heartrate"}},
         PermanentSyncError, "oura answered 403: Missing scopes: heartrate"),
        ({"status": 400, "body": {"detail": [{"msg": "start_date is invalid"}]}},
         PermanentSyncError, "oura answered 400: start_date is invalid"),
    ],
)  # fmt: skip
async def test_each_failure_of_a_data_request_maps_to_its_error(
    oura: Oura, account: Account, fault: dict[str, Any], error: type[Exception], message: str
) -> None:
    options = dict(fault)
    account.fail(options.pop("count", 1), **options)

    with pytest.raises(error, match=message) as raised:
        await collect(oura, account.tokens())

    assert type(raised.value) is error
    if fault.get("status") == 429:
        assert isinstance(raised.value, TransientSyncError)
        assert raised.value.retry_after == (7.0 if "retry_after" in fault else None)


async def test_a_request_slower_than_the_timeout_is_transient(fake_oura: FakeOura, account: Account) -> None:
    impatient = Oura(
        OAuthApp(f"{fake_oura.url}/oauth/token", fake_oura.client_id, fake_oura.client_secret),
        base_url=fake_oura.url,
        timeout=0.5,
    )
    account.fail(delay=2)

    with pytest.raises(TransientSyncError, match="no answer within the request timeout"):
        await collect(impatient, account.tokens())


async def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:  # a port nobody listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = Oura(OAuthApp(f"http://127.0.0.1:{port}/oauth/token", "id", "secret"), base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(TransientSyncError, match=r"oura: connection failed \(ClientConnectorError\)"):
        await collect(closed, {"access_token": "abc"})
    with pytest.raises(TransientSyncError, match="connection failed"):
        await closed.refresh({"access_token": "abc", "refresh_token": "def"})


async def test_a_peer_that_echoes_a_token_or_the_secret_cannot_leak_it_into_the_error(
    oura: Oura, fake_oura: FakeOura, account: Account
) -> None:
    tokens = account.tokens()
    account.fail(status=400, body={"detail": f"token {tokens['access_token']} is malformed"})
    account.fail(token=True, status=400, body={"error": "invalid_grant", "error_description": (
        f"{tokens['refresh_token']} from {fake_oura.client_secret} was revoked")})  # fmt: skip

    with pytest.raises(PermanentSyncError) as data_error:
        await collect(oura, tokens)
    with pytest.raises(RefreshFailedError) as refresh_error:
        await oura.refresh(tokens)

    assert str(data_error.value) == "oura answered 400: token [redacted] is malformed"
    assert str(refresh_error.value).startswith("oura answered 400: [redacted] from [redacted] was revoked")
    assert fake_oura.client_secret not in str(refresh_error.value)
