"""Dexcom: the pure normaliser, then the client against the local fake Dexcom API v3."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from db.env import SettingError
from db.metrics import Reading
from pipeline.errors import AccessTokenRejectedError, PermanentSyncError, RefreshFailedError, TransientSyncError
from pipeline.providers import Window, build_providers
from pipeline.providers.dexcom import Dexcom, normalise, queries
from tests.fakes import dexcom as fake
from tests.fakes.dexcom import Account, FakeDexcom

AT = datetime(2026, 3, 2, 8, 5, tzinfo=UTC)
WINDOW = Window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))


# -- the normaliser: pure --------------------------------------------------------------------


def test_a_receiver_egv_is_glucose_in_mg_dl_at_its_system_time_taken_as_utc() -> None:
    assert normalise(fake.egv(AT, 112)) == [Reading("glucose", AT, 112.0, "mg/dL")]


def test_an_app_egv_keeps_its_offset() -> None:
    assert normalise(fake.egv(AT, 98, app=True)) == [Reading("glucose", AT, 98.0, "mg/dL")]


def test_mmol_per_litre_is_converted_to_mg_dl() -> None:
    (reading,) = normalise(fake.egv(AT, 5.5, unit="mmol/L"))
    assert reading.value == pytest.approx(99.088) and reading.unit == "mg/dL"


@pytest.mark.parametrize(("status", "value"), [("low", 40.0), ("high", 400.0)])
def test_a_low_or_high_egv_without_a_value_is_clamped_to_the_sensor_range(status: str, value: float) -> None:
    assert normalise(fake.egv(AT, None, status=status)) == [Reading("glucose", AT, value, "mg/dL")]


def test_a_low_egv_with_a_value_keeps_that_value() -> None:
    assert normalise(fake.egv(AT, 39, status="low")) == [Reading("glucose", AT, 39.0, "mg/dL")]


def test_an_egv_with_neither_value_nor_a_range_status_yields_nothing_rather_than_a_zero() -> None:
    assert normalise(fake.egv(AT, None, status="ok")) == []
    assert normalise(fake.egv(AT, None, status="unknown")) == []


@pytest.mark.parametrize("record", [fake.egv(AT, "high"), fake.egv(AT, 112, unit="unknown")])
def test_a_value_that_cannot_be_read_as_mg_dl_becomes_nan_so_the_sync_counts_it(record: dict[str, Any]) -> None:
    (reading,) = normalise(record)
    assert math.isnan(reading.value)


def test_a_record_without_a_usable_time_yields_nothing() -> None:
    assert normalise(fake.egv(AT) | {"systemTime": None}) == []
    assert normalise(fake.egv(AT) | {"systemTime": "yesterday"}) == []


def test_a_window_over_30_days_is_read_in_chunks_in_utc_without_an_offset() -> None:
    window = Window(datetime(2026, 1, 1, 1, 30, tzinfo=UTC), datetime(2026, 2, 15, tzinfo=UTC))
    assert list(queries(window)) == [
        {"startDate": "2026-01-01T01:30:00", "endDate": "2026-01-31T01:30:00"},
        {"startDate": "2026-01-31T01:30:00", "endDate": "2026-02-15T00:00:00"},
    ]


# -- settings, availability ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"DEXCOM_CLIENT_ID": "abc"}, "DEXCOM_CLIENT_SECRET: expected both"),
        ({"DEXCOM_CLIENT_SECRET": "s3cret"}, "DEXCOM_CLIENT_ID: expected both"),
        ({"DEXCOM_ENVIRONMENT": "staging"}, "DEXCOM_ENVIRONMENT: expected one of production, eu, jp, sandbox"),
        ({"DEXCOM_API_BASE": "ftp://dexcom.example"}, "DEXCOM_API_BASE: expected a URL"),
    ],
)
def test_bad_dexcom_settings_name_the_variable_and_never_the_secret(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingError, match=f"^{error}") as raised:
        Dexcom.from_env(env)
    assert "s3cret" not in str(raised.value)


async def test_dexcom_without_credentials_registers_but_reports_itself_unavailable() -> None:
    dexcom = build_providers({})["dexcom"]
    assert isinstance(dexcom, Dexcom) and not dexcom.available
    with pytest.raises(PermanentSyncError, match="Dexcom has no client id and secret configured"):
        [r async for r in dexcom.fetch({"access_token": "x"}, WINDOW, {})]


@pytest.mark.parametrize(
    ("environment", "base"),
    [("production", "https://api.dexcom.com"), ("sandbox", "https://sandbox-api.dexcom.com"),
     ("eu", "https://api.dexcom.eu")],
)  # fmt: skip
def test_each_environment_uses_its_documented_base_for_data_tokens_and_login(environment: str, base: str) -> None:
    dexcom = Dexcom.from_env(
        {"DEXCOM_CLIENT_ID": "abc", "DEXCOM_CLIENT_SECRET": "s3cret", "DEXCOM_ENVIRONMENT": environment}
    )
    assert dexcom.oauth is not None
    assert (dexcom.base_url, dexcom.oauth.token_url) == (base, f"{base}/v2/oauth2/token")
    url = dexcom.authorize_url("https://cb.example/oauth/dexcom", "st4te")
    assert url.startswith(f"{base}/v2/oauth2/login?client_id=abc&redirect_uri=https://cb.example/oauth/dexcom&")
    assert "response_type=code" in url and "scope=offline_access" in url and "state=st4te" in url


# -- the client against the fake Dexcom ------------------------------------------------------


@pytest.fixture(scope="module")
def fake_dexcom() -> Iterator[FakeDexcom]:
    server = FakeDexcom().start()
    yield server
    server.stop()


@pytest.fixture
def dexcom(fake_dexcom: FakeDexcom) -> Dexcom:
    return Dexcom.from_env(fake_dexcom.env() | {"PROVIDER_TIMEOUT_SECONDS": "5"})


@pytest.fixture
def account(fake_dexcom: FakeDexcom) -> Account:
    return fake_dexcom.add_account(records=fake.every_five_minutes(datetime(2026, 3, 1, 22, tzinfo=UTC), 28))


async def collect(dexcom: Dexcom, tokens: dict[str, Any], window: Window = WINDOW) -> list[Reading]:
    return [item async for item in dexcom.fetch(tokens, window, {})]


async def test_every_egv_in_the_window_arrives_at_five_minute_spacing(dexcom: Dexcom, account: Account) -> None:
    readings = await collect(dexcom, account.tokens())

    assert len(readings) == 24 * 12 + 1  # both ends of the window included
    assert {(r.metric, r.unit) for r in readings} == {("glucose", "mg/dL")}
    times = [r.recorded_at for r in readings]
    assert times[0] == WINDOW.start and {b - a for a, b in zip(times, times[1:], strict=False)} == {
        timedelta(minutes=5)
    }
    assert account.requests[-1].query == {"startDate": "2026-03-02T00:00:00", "endDate": "2026-03-03T00:00:00"}


async def test_a_long_window_is_asked_for_in_30_day_chunks_dexcom_accepts(dexcom: Dexcom, account: Account) -> None:
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))

    readings = await collect(dexcom, account.tokens(), window)

    assert len(readings) == 26 * 12 + 1  # the reading on a chunk boundary comes once
    assert len({r.recorded_at for r in readings}) == len(readings)
    assert [r.query for r in account.requests] == [
        {"startDate": "2026-01-01T00:00:00", "endDate": "2026-01-31T00:00:00"},
        {"startDate": "2026-01-31T00:00:00", "endDate": "2026-03-02T00:00:00"},
        {"startDate": "2026-03-02T00:00:00", "endDate": "2026-03-03T00:00:00"},
    ]


async def test_a_malformed_egv_is_passed_on_as_nan_while_the_rest_are_kept(
    dexcom: Dexcom, fake_dexcom: FakeDexcom
) -> None:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    records = [
        fake.egv(start, 120),
        fake.egv(start + timedelta(minutes=5), "??"),
        fake.egv(start + timedelta(minutes=10), None, status="low"),
    ]
    account = fake_dexcom.add_account(records=records)

    values = [r.value for r in await collect(dexcom, account.tokens())]

    assert values[0] == 120.0 and math.isnan(values[1]) and values[2] == 40.0


async def test_a_refresh_rotates_both_tokens_and_the_spent_refresh_token_is_refused(
    dexcom: Dexcom, fake_dexcom: FakeDexcom, account: Account
) -> None:
    old = account.tokens()

    new = await dexcom.refresh(old)

    assert (new["access_token"], new["refresh_token"]) == (account.access_token, account.refresh_token)
    assert new["refresh_token"] != old["refresh_token"]
    assert fake_dexcom.token_forms[-1] == {
        "grant_type": "refresh_token",
        "refresh_token": old["refresh_token"],
        "client_id": fake_dexcom.client_id,
        "client_secret": fake_dexcom.client_secret,
    }
    assert len(await collect(dexcom, new)) == 24 * 12 + 1
    with pytest.raises(RefreshFailedError, match="dexcom answered 400: Invalid refresh token") as refused:
        await dexcom.refresh(old)
    assert old["refresh_token"] not in str(refused.value)


async def test_an_authorization_code_is_exchanged_with_the_exact_redirect_uri(
    dexcom: Dexcom, fake_dexcom: FakeDexcom
) -> None:
    account = fake_dexcom.add_account()

    tokens = await dexcom.exchange_code(account.name, "https://cb.example/oauth/dexcom")

    assert tokens["access_token"] == account.access_token and set(tokens) == {
        "access_token",
        "refresh_token",
        "expires_at",
    }
    assert fake_dexcom.token_forms[-1]["redirect_uri"] == "https://cb.example/oauth/dexcom"


async def test_a_busy_token_endpoint_is_transient_and_spends_no_refresh_token(dexcom: Dexcom, account: Account) -> None:
    tokens = account.tokens()
    account.fail(token=True, status=503)

    with pytest.raises(TransientSyncError):
        await dexcom.refresh(tokens)

    assert account.refresh_token == tokens["refresh_token"]


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ({"status": 429, "retry_after": "30"}, TransientSyncError, "dexcom answered 429"),
        ({"status": 500}, TransientSyncError, "dexcom answered 500"),
        ({"drop": True, "count": 2}, TransientSyncError, "dexcom: connection failed"),
        ({"status": 401}, AccessTokenRejectedError, "dexcom answered 401"),
        ({"status": 400, "body": {"message": "The maximum time window is 30 days"}},
         PermanentSyncError, "dexcom answered 400: The maximum time window is 30 days"),
    ],
)  # fmt: skip
async def test_each_failure_of_a_data_request_maps_to_its_error(
    dexcom: Dexcom, account: Account, fault: dict[str, Any], error: type[Exception], message: str
) -> None:
    options = dict(fault)
    account.fail(options.pop("count", 1), **options)

    with pytest.raises(error, match=message) as raised:
        await collect(dexcom, account.tokens())

    assert type(raised.value) is error
    if "retry_after" in fault:
        assert isinstance(raised.value, TransientSyncError) and raised.value.retry_after == 30.0


async def test_a_request_slower_than_the_timeout_is_transient(fake_dexcom: FakeDexcom, account: Account) -> None:
    impatient = Dexcom.from_env(fake_dexcom.env() | {"PROVIDER_TIMEOUT_SECONDS": "0.5"})
    account.fail(delay=2)

    with pytest.raises(TransientSyncError, match="no answer within the request timeout"):
        await collect(impatient, account.tokens())


async def test_an_unknown_access_token_is_rejected_without_echoing_it(dexcom: Dexcom, account: Account) -> None:
    with pytest.raises(AccessTokenRejectedError, match="dexcom answered 401") as raised:
        await collect(dexcom, {"access_token": "dexcom-at-stale"})
    assert "dexcom-at-stale" not in str(raised.value)
