"""Withings: the pure normaliser and status mapping, then the client against the local fake."""

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
from pipeline.providers.withings import Withings, form, normalise, unwrap
from tests.fakes import withings as fake
from tests.fakes.withings import Account, FakeWithings

AT = datetime(2026, 3, 2, 7, 45, tzinfo=UTC)
WINDOW = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))


# -- the normaliser and the body status: pure ------------------------------------------------


def test_each_measure_is_value_times_ten_to_the_unit_at_the_groups_date() -> None:
    assert normalise(fake.weigh_in(AT, 72_300)) == [Reading("weight", AT, 72.3, "kg")]
    assert normalise(fake.blood_pressure(AT)) == [
        Reading("blood_pressure_diastolic", AT, 79.0, "mmHg"),
        Reading("blood_pressure_systolic", AT, 121.0, "mmHg"),
        Reading("heart_rate", AT, 64.0, "bpm"),
    ]
    assert normalise(fake.oximeter(AT)) == [Reading("spo2", AT, 97.0, "%")]


def test_body_temperature_is_read_and_absolute_skin_temperature_is_not_taken_for_a_deviation() -> None:
    assert normalise(fake.thermometer(AT)) == [Reading("body_temperature", AT, 36.8, "°C")]


def test_goals_and_groups_that_may_belong_to_another_user_are_skipped() -> None:
    assert normalise(fake.weigh_in(AT) | {"category": 2}) == []
    assert normalise(fake.weigh_in(AT) | {"attrib": 1}) == []
    assert normalise(fake.weigh_in(AT) | {"attrib": 2}) != []  # entered by the user themself


def test_a_measure_that_is_not_a_number_becomes_nan_and_a_group_without_a_date_yields_nothing() -> None:
    (weight,) = normalise(fake.group(AT, (1, "heavy", -3)))  # type: ignore[arg-type]
    assert math.isnan(weight.value)
    assert normalise(fake.weigh_in(AT) | {"date": None}) == []


def test_the_window_becomes_the_documented_getmeas_form() -> None:
    assert form(WINDOW) == {
        "action": "getmeas",
        "meastypes": "1,9,10,11,54,71",
        "category": "1",
        "startdate": str(int(WINDOW.start.timestamp())),
        "enddate": str(int(WINDOW.end.timestamp())),
    }
    assert form(WINDOW, 200)["offset"] == "200"


@pytest.mark.parametrize(
    ("payload", "token_request", "error", "message"),
    [
        ({"status": 401, "error": "invalid_token: The access token provided is invalid"}, False,
         AccessTokenRejectedError, "withings answered status 401: invalid_token"),
        ({"status": 601, "error": "Too many request"}, False, TransientSyncError, "status 601"),
        ({"status": 522}, False, TransientSyncError, "withings answered status 522$"),
        ({"status": 2554, "error": "Not implemented"}, False, PermanentSyncError, "status 2554: Not implemented"),
        ({"status": 503, "error": "Invalid Params"}, False, PermanentSyncError, "status 503: Invalid Params"),
        ({"status": 503, "error": "Invalid Params: invalid refresh_token"}, True, RefreshFailedError,
         "invalid refresh_token; the user must reconnect"),
        ({"status": 601}, True, TransientSyncError, "status 601"),
        ({"body": {}}, False, TransientSyncError, "without a status"),
    ],
)  # fmt: skip
def test_a_non_zero_body_status_is_an_error_never_no_data(
    payload: dict[str, Any], token_request: bool, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        unwrap(payload, [], token_request=token_request)
    assert type(raised.value) is error


def test_a_status_message_that_echoes_a_token_is_scrubbed() -> None:
    with pytest.raises(AccessTokenRejectedError) as raised:
        unwrap({"status": 401, "error": "token withings-at-abc is invalid"}, ["withings-at-abc"])
    assert str(raised.value) == "withings answered status 401: token [redacted] is invalid"


# -- settings, availability ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"WITHINGS_CLIENT_ID": "abc"}, "WITHINGS_CLIENT_SECRET: expected both"),
        ({"WITHINGS_CLIENT_SECRET": "s3cret"}, "WITHINGS_CLIENT_ID: expected both"),
        ({"WITHINGS_API_BASE": "ftp://withings.example"}, "WITHINGS_API_BASE: expected a URL"),
        ({"WITHINGS_TOKEN_URL": "wbsapi.withings.net/v2/oauth2"}, "WITHINGS_TOKEN_URL: expected a URL"),
    ],
)
def test_bad_withings_settings_name_the_variable_and_never_the_secret(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingError, match=f"^{error}") as raised:
        Withings.from_env(env)
    assert "s3cret" not in str(raised.value)


async def test_withings_without_credentials_registers_but_reports_itself_unavailable() -> None:
    withings = build_providers({})["withings"]
    assert isinstance(withings, Withings) and not withings.available
    with pytest.raises(PermanentSyncError, match="Withings has no client id and secret configured"):
        [r async for r in withings.fetch({"access_token": "x"}, WINDOW, {})]


def test_the_defaults_are_withings_documented_endpoints() -> None:
    withings = Withings.from_env({"WITHINGS_CLIENT_ID": "abc", "WITHINGS_CLIENT_SECRET": "s3cret"})
    assert withings.oauth is not None and "s3cret" not in repr(withings.oauth)
    assert (withings.base_url, withings.oauth.token_url) == (
        "https://wbsapi.withings.net",
        "https://wbsapi.withings.net/v2/oauth2",
    )
    url = withings.authorize_url("https://cb.example/oauth/withings", "st4te")
    assert url.startswith("https://account.withings.com/oauth2_user/authorize2?response_type=code&client_id=abc&")
    assert "scope=user.metrics" in url and "state=st4te" in url


# -- the client against the fake Withings ----------------------------------------------------


@pytest.fixture(scope="module")
def fake_withings() -> Iterator[FakeWithings]:
    server = FakeWithings().start()
    yield server
    server.stop()


@pytest.fixture
def withings(fake_withings: FakeWithings) -> Withings:
    return Withings.from_env(fake_withings.env() | {"PROVIDER_TIMEOUT_SECONDS": "5"})


def groups() -> list[dict[str, Any]]:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    return [
        fake.weigh_in(day + timedelta(hours=7), 72_300),
        fake.blood_pressure(day + timedelta(hours=8)),
        fake.thermometer(day + timedelta(hours=9)),
        fake.oximeter(day + timedelta(hours=10)),
        fake.weigh_in(day + timedelta(days=1, hours=7), 72_100),
        fake.weigh_in(day - timedelta(days=5), 74_000),  # before the window
        fake.group(day + timedelta(hours=11), (1, 70_000, -3), category=2),  # a goal
    ]


@pytest.fixture
def account(fake_withings: FakeWithings) -> Account:
    return fake_withings.add_account(groups=groups(), page_size=2)


async def collect(withings: Withings, tokens: dict[str, Any], window: Window = WINDOW) -> list[Reading]:
    return [item async for item in withings.fetch(tokens, window, {})]


async def test_every_page_is_read_by_more_and_offset_in_canonical_units(withings: Withings, account: Account) -> None:
    readings = await collect(withings, account.tokens())

    assert sorted((r.metric, r.value) for r in readings) == [
        ("blood_pressure_diastolic", 79.0),
        ("blood_pressure_systolic", 121.0),
        ("body_temperature", 36.8),
        ("heart_rate", 64.0),
        ("spo2", 97.0),
        ("weight", 72.1),
        ("weight", 72.3),
    ]
    assert [r.query.get("offset") for r in account.requests] == [None, "2", "4"]  # five groups, two a page
    assert account.requests[0].query == form(WINDOW)


async def test_an_invalid_token_in_a_200_body_is_a_rejected_token_not_an_empty_sync(withings: Withings) -> None:
    with pytest.raises(AccessTokenRejectedError, match="withings answered status 401") as raised:
        await collect(withings, {"access_token": "withings-at-stale"})
    assert "withings-at-stale" not in str(raised.value)


async def test_a_refresh_rotates_both_tokens_and_the_spent_refresh_token_is_refused(
    withings: Withings, fake_withings: FakeWithings, account: Account
) -> None:
    old = account.tokens()

    new = await withings.refresh(old)

    assert (new["access_token"], new["refresh_token"]) == (account.access_token, account.refresh_token)
    assert new["provider_user_id"] == str(account.userid)
    assert fake_withings.token_forms[-1] == {
        "action": "requesttoken",
        "grant_type": "refresh_token",
        "refresh_token": old["refresh_token"],
        "client_id": fake_withings.client_id,
        "client_secret": fake_withings.client_secret,
    }
    assert len(await collect(withings, new)) == 7
    with pytest.raises(RefreshFailedError, match="invalid refresh_token") as refused:
        await withings.refresh(old)
    assert old["refresh_token"] not in str(refused.value)


async def test_an_authorization_code_gives_tokens_and_the_withings_user_id(
    withings: Withings, fake_withings: FakeWithings
) -> None:
    account = fake_withings.add_account()

    tokens = await withings.exchange_code(account.name, "https://cb.example/oauth/withings")

    assert tokens["access_token"] == account.access_token and tokens["provider_user_id"] == str(account.userid)
    assert fake_withings.token_forms[-1]["redirect_uri"] == "https://cb.example/oauth/withings"


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ({"status": 200, "body": {"status": 601, "body": {}, "error": "Too many request"}},
         TransientSyncError, "withings answered status 601: Too many request"),
        ({"status": 200, "body": {"status": 2554, "body": {}, "error": "Not implemented"}},
         PermanentSyncError, "status 2554"),
        ({"status": 429, "retry_after": "12"}, TransientSyncError, "withings answered 429"),
        ({"status": 502}, TransientSyncError, "withings answered 502"),
        ({"status": 200, "body": {"status": 0, "body": {"more": 0}}}, TransientSyncError, "without a measuregrps"),
    ],
)  # fmt: skip
async def test_each_failure_of_a_data_request_maps_to_its_error(
    withings: Withings, account: Account, fault: dict[str, Any], error: type[Exception], message: str
) -> None:
    account.fail(**fault)

    with pytest.raises(error, match=message) as raised:
        await collect(withings, account.tokens())

    assert type(raised.value) is error
    if "retry_after" in fault:
        assert isinstance(raised.value, TransientSyncError) and raised.value.retry_after == 12.0


async def test_a_request_slower_than_the_timeout_is_transient(fake_withings: FakeWithings, account: Account) -> None:
    impatient = Withings.from_env(fake_withings.env() | {"PROVIDER_TIMEOUT_SECONDS": "0.5"})
    account.fail(delay=2)

    with pytest.raises(TransientSyncError, match="no answer within the request timeout"):
        await collect(impatient, account.tokens())


async def test_a_busy_token_endpoint_is_transient_and_spends_no_refresh_token(
    withings: Withings, account: Account
) -> None:
    tokens = account.tokens()
    account.fail(token=True, status=200, body={"status": 601, "body": {}, "error": "Too many request"})

    with pytest.raises(TransientSyncError, match="status 601"):
        await withings.refresh(tokens)

    assert account.refresh_token == tokens["refresh_token"]


async def test_wrong_client_credentials_never_leak_the_secret(fake_withings: FakeWithings, account: Account) -> None:
    wrong = Withings.from_env(fake_withings.env() | {"WITHINGS_CLIENT_SECRET": "not-the-secret"})

    with pytest.raises(RefreshFailedError) as raised:
        await wrong.refresh(account.tokens())

    assert "not-the-secret" not in str(raised.value)
