"""WHOOP: the pure normaliser, then the client against the local fake WHOOP API v2."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from db.env import SettingError
from db.metrics import Reading
from db.sessions import Session
from pipeline.errors import AccessTokenRejectedError, PermanentSyncError, RefreshFailedError, TransientSyncError
from pipeline.providers import Window, build_providers
from pipeline.providers.http import OAuthApp
from pipeline.providers.whoop import Whoop, normalise, query
from pipeline.vocabulary import UNITS, session_problem
from tests.fakes import whoop as fake
from tests.fakes.whoop import Account, FakeWhoop

DAY = date(2026, 3, 2)
DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
WINDOW = Window(datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))
WOKE = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)


def metrics(items: list[Reading | Session]) -> dict[str, float]:
    return {item.metric: item.value for item in items if isinstance(item, Reading)}


# -- the normaliser: pure --------------------------------------------------------------------


def test_a_scored_night_is_a_session_with_stage_minutes_and_readings_at_wake_time() -> None:
    items = normalise("sleep", fake.sleep(DAY))

    session = items[0]
    assert session == Session(
        "sleep",
        WOKE - timedelta(hours=8),
        WOKE,
        None,
        {"deep_min": 100.0, "rem_min": 110.0, "light_min": 240.0, "awake_min": 30.0},
    )
    assert session_problem(session, WINDOW.start, WINDOW.end) is None
    assert all(r.recorded_at == WOKE and r.unit == UNITS[r.metric] for r in items[1:] if isinstance(r, Reading))
    assert metrics(items) == {
        "sleep_duration": 450.0,  # light + slow wave + REM; awake time is not sleep
        "sleep_deep": 100.0,
        "sleep_rem": 110.0,
        "sleep_efficiency": 93.75,
        "respiratory_rate": 15.5,
    }


def test_a_nap_is_a_session_but_gives_no_nightly_readings() -> None:
    items = normalise("sleep", fake.sleep(DAY, nap=True))
    assert [type(i) for i in items] == [Session]


@pytest.mark.parametrize("collection", ["sleep", "recovery", "cycle", "workout"])
@pytest.mark.parametrize("state", ["PENDING_SCORE", "UNSCORABLE"])
def test_a_record_that_is_not_scored_yields_nothing(collection: str, state: str) -> None:
    doc = getattr(fake, collection)(DAY, score_state=state)
    assert normalise(collection, doc) == []


def test_a_recovery_is_dated_at_the_end_of_its_sleep_and_skin_temperature_is_not_a_deviation() -> None:
    items = normalise("recovery", fake.recovery(DAY), WOKE)

    assert metrics(items) == {
        "recovery_score": 44.0,
        "resting_heart_rate": 64.0,
        "hrv_rmssd": 31.813562,
        "spo2": 95.6875,
    }
    assert {r.recorded_at for r in items if isinstance(r, Reading)} == {WOKE}
    assert "skin_temp_deviation" not in metrics(items) and "body_temperature" not in metrics(items)


def test_a_recovery_whose_sleep_was_not_read_is_dated_when_it_was_scored() -> None:
    (first, *_) = normalise("recovery", fake.recovery(DAY))
    assert isinstance(first, Reading) and first.recorded_at == datetime(2026, 3, 2, 7, tzinfo=UTC)


def test_a_calibrating_users_recovery_score_is_left_out_but_the_measurements_kept() -> None:
    items = normalise("recovery", fake.recovery(DAY, user_calibrating=True), WOKE)
    assert set(metrics(items)) == {"resting_heart_rate", "hrv_rmssd", "spo2"}


def test_a_cycle_gives_its_strain_at_its_start_and_not_its_total_energy_as_active_energy() -> None:
    assert normalise("cycle", fake.cycle(DAY)) == [
        Reading("strain", datetime(2026, 3, 1, 22, 30, tzinfo=UTC), 12.5, "score")
    ]


def test_a_workout_is_a_session_with_kilojoules_in_kcal_distance_and_heart_rates() -> None:
    (session,) = normalise("workout", fake.workout(DAY))

    assert isinstance(session, Session) and session.activity == "running"
    assert session.duration == timedelta(minutes=45)
    assert session.details == {
        "energy_kcal": pytest.approx(1569.34 / 4.184),
        "distance_m": 1772.77,
        "avg_heart_rate_bpm": 123.0,
        "max_heart_rate_bpm": 146.0,
    }
    assert session_problem(session, WINDOW.start, WINDOW.end) is None


def test_a_workout_without_a_sport_name_falls_back_to_its_sport_id_and_a_null_distance_is_left_out() -> None:
    (session,) = normalise("workout", fake.workout(DAY, sport_name=None, distance_meter=None))
    assert isinstance(session, Session) and session.activity == "sport 0"
    assert "distance_m" not in session.details


@pytest.mark.parametrize(
    ("collection", "doc", "kept"),
    [
        ("recovery", fake.recovery(DAY, spo2_percentage=None, hrv_rmssd_milli=None), {"recovery_score",
                                                                                       "resting_heart_rate"}),
        ("sleep", fake.sleep(DAY, respiratory_rate=None, stages={"total_rem_sleep_time_milli": None}),
         {"sleep_deep", "sleep_efficiency"}),
        ("cycle", fake.cycle(DAY, strain=None), set()),
    ],
)  # fmt: skip
def test_null_fields_yield_nothing_rather_than_a_zero(collection: str, doc: dict[str, Any], kept: set[str]) -> None:
    assert set(metrics(normalise(collection, doc, WOKE))) == kept


def test_a_field_that_is_not_a_number_becomes_nan_so_the_sync_counts_it_invalid() -> None:
    found = metrics(normalise("recovery", fake.recovery(DAY, resting_heart_rate="sixty"), WOKE))
    assert math.isnan(found["resting_heart_rate"]) and found["recovery_score"] == 44.0


def test_a_record_without_a_usable_time_yields_nothing() -> None:
    assert normalise("sleep", fake.sleep(DAY) | {"end": "soon"}) == []
    assert normalise("cycle", fake.cycle(DAY) | {"start": None}) == []


def test_the_window_becomes_documented_parameters_reaching_back_a_day_for_last_nights_sleep() -> None:
    assert query(WINDOW) == {"start": "2026-02-27T00:00:00.000Z", "end": "2026-03-04T00:00:00.000Z", "limit": "25"}


# -- settings, availability ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"WHOOP_CLIENT_ID": "abc"}, "WHOOP_CLIENT_SECRET: expected both"),
        ({"WHOOP_CLIENT_SECRET": "s3cret"}, "WHOOP_CLIENT_ID: expected both"),
        ({"WHOOP_API_BASE": "ftp://whoop.example"}, "WHOOP_API_BASE: expected a URL"),
        ({"WHOOP_TOKEN_URL": "api.prod.whoop.com/oauth"}, "WHOOP_TOKEN_URL: expected a URL"),
    ],
)
def test_bad_whoop_settings_name_the_variable_and_never_the_secret(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingError, match=f"^{error}") as raised:
        Whoop.from_env(env)
    assert "s3cret" not in str(raised.value)


async def test_whoop_without_credentials_registers_but_reports_itself_unavailable() -> None:
    whoop = build_providers({})["whoop"]
    assert isinstance(whoop, Whoop)
    assert (whoop.available, whoop.unavailable_reason) == (False, "WHOOP has no client id and secret configured")
    with pytest.raises(PermanentSyncError, match="no client id and secret"):
        [r async for r in whoop.fetch({"access_token": "x"}, WINDOW, {})]


def test_the_defaults_are_whoops_documented_endpoints_and_scopes() -> None:
    whoop = Whoop.from_env({"WHOOP_CLIENT_ID": "abc", "WHOOP_CLIENT_SECRET": "s3cret"})
    assert whoop.oauth is not None and "s3cret" not in repr(whoop.oauth)
    assert (whoop.base_url, whoop.oauth.token_url) == (
        "https://api.prod.whoop.com/developer",
        "https://api.prod.whoop.com/oauth/oauth2/token",
    )
    url = whoop.authorize_url("https://cb.example/oauth/whoop", "st4te-long")
    assert url.startswith("https://api.prod.whoop.com/oauth/oauth2/auth?response_type=code&client_id=abc&")
    assert "scope=read:recovery+read:cycles+read:sleep+read:workout+read:profile+offline" in url
    assert "state=st4te-long" in url
    with pytest.raises(PermanentSyncError, match="at least 8 characters"):
        whoop.authorize_url("https://cb.example/oauth/whoop", "short")


# -- the client against the fake WHOOP -------------------------------------------------------


@pytest.fixture(scope="module")
def fake_whoop() -> Iterator[FakeWhoop]:
    server = FakeWhoop().start()
    yield server
    server.stop()


@pytest.fixture
def whoop(fake_whoop: FakeWhoop) -> Whoop:
    return Whoop.from_env(fake_whoop.env() | {"PROVIDER_TIMEOUT_SECONDS": "5"})


@pytest.fixture
def account(fake_whoop: FakeWhoop) -> Account:
    return fake_whoop.add_account(records=fake.records(DAYS), page_size=2)


async def collect(whoop: Whoop, tokens: dict[str, Any], window: Window = WINDOW) -> list[Reading | Session]:
    return [item async for item in whoop.fetch(tokens, window, {})]


async def test_every_page_of_every_collection_is_read_in_canonical_units(whoop: Whoop, account: Account) -> None:
    items = await collect(whoop, account.tokens())

    assert len(items) == len(DAYS) * fake.ITEMS_PER_DAY
    found = [i for i in items if isinstance(i, Reading)]
    assert {(r.metric, r.unit) for r in found} == {(m, UNITS[m]) for m in Whoop.metrics}
    assert sorted(s.kind for s in items if isinstance(s, Session)) == ["sleep"] * 3 + ["workout"] * 3
    # Recoveries are dated at the end of the sleep they follow, read earlier in the same fetch.
    assert sorted(r.recorded_at for r in found if r.metric == "recovery_score") == [
        datetime(d.year, d.month, d.day, 6, 30, tzinfo=UTC) for d in DAYS
    ]
    for collection in ("recovery", "cycle", "sleep", "workout"):
        pages = account.received(collection)
        assert len(pages) == 2, collection
        assert "nextToken" not in pages[0].query and "nextToken" in pages[1].query


async def test_the_window_reaches_whoop_as_documented_query_parameters(whoop: Whoop, account: Account) -> None:
    await collect(whoop, account.tokens())

    for collection in ("recovery", "cycle", "sleep", "workout"):
        assert account.received(collection)[0].query == {
            "start": "2026-02-27T00:00:00.000Z",
            "end": "2026-03-04T00:00:00.000Z",
            "limit": "25",
        }


async def test_unscored_records_and_readings_outside_the_window_are_not_yielded(
    whoop: Whoop, fake_whoop: FakeWhoop
) -> None:
    records = fake.records([date(2026, 3, 1), DAY])
    records["sleep"].append(fake.sleep(date(2026, 3, 3), score_state="PENDING_SCORE"))
    account = fake_whoop.add_account(records=records)
    window = Window(datetime(2026, 3, 1, 12, tzinfo=UTC), WINDOW.end)

    items = await collect(whoop, account.tokens(), window)

    assert all(window.start <= r.recorded_at <= window.end for r in items if isinstance(r, Reading))
    assert {r.recorded_at for r in items if isinstance(r, Reading) and r.metric == "sleep_duration"} == {WOKE}
    # The night ending on the morning of Mar 1 is still a session (a day's grace); Mar 3 is unscored.
    sleeps = [s.ended_at.date() for s in items if isinstance(s, Session) and s.kind == "sleep"]
    assert sorted(sleeps) == [date(2026, 3, 1), DAY]


async def test_the_profile_gives_the_whoop_user_id_webhooks_carry(whoop: Whoop, account: Account) -> None:
    assert await whoop.provider_user_id(account.tokens()) == str(account.user_id)


async def test_a_refresh_asks_for_offline_and_rotates_both_tokens(
    whoop: Whoop, fake_whoop: FakeWhoop, account: Account
) -> None:
    old = account.tokens()

    new = await whoop.refresh(old)

    assert (new["access_token"], new["refresh_token"]) == (account.access_token, account.refresh_token)
    assert new["refresh_token"] != old["refresh_token"]
    assert fake_whoop.token_forms[-1] == {
        "grant_type": "refresh_token",
        "refresh_token": old["refresh_token"],
        "scope": "offline",
        "client_id": fake_whoop.client_id,
        "client_secret": fake_whoop.client_secret,
    }
    assert len(await collect(whoop, new)) == len(DAYS) * fake.ITEMS_PER_DAY
    with pytest.raises(RefreshFailedError, match="whoop answered 400") as refused:
        await whoop.refresh(old)
    assert old["refresh_token"] not in str(refused.value)


async def test_an_authorization_code_is_exchanged_for_our_token_shape(whoop: Whoop, fake_whoop: FakeWhoop) -> None:
    account = fake_whoop.add_account()

    tokens = await whoop.exchange_code(account.name, "https://cb.example/oauth/whoop")

    assert set(tokens) == {"access_token", "refresh_token", "expires_at"}
    assert fake_whoop.token_forms[-1]["redirect_uri"] == "https://cb.example/oauth/whoop"


async def test_rejected_client_credentials_are_permanent_and_the_secret_stays_hidden(
    fake_whoop: FakeWhoop, account: Account
) -> None:
    wrong = Whoop(OAuthApp(f"{fake_whoop.url}/oauth/oauth2/token", fake_whoop.client_id, "not-the-secret"))

    with pytest.raises(PermanentSyncError, match="check the client id and secret") as raised:
        await wrong.refresh(account.tokens())

    assert not isinstance(raised.value, RefreshFailedError) and "not-the-secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("fault", "error", "message", "wait"),
    [
        ({"status": 429, "retry_after": "7"}, TransientSyncError, "whoop answered 429", 7.0),
        # WHOOP documents X-RateLimit-Reset rather than Retry-After: the fake sends 42.
        ({"status": 429}, TransientSyncError, "whoop answered 429: rate limit reached", 42.0),
        ({"status": 503}, TransientSyncError, "whoop answered 503", None),
        ({"drop": True, "count": 2}, TransientSyncError, "whoop: connection failed", None),
        ({"status": 401}, AccessTokenRejectedError, "whoop answered 401", None),
        ({"status": 400, "body": {"message": "limit must be between 1 and 25"}},
         PermanentSyncError, "whoop answered 400: limit must be between 1 and 25", None),
    ],
)  # fmt: skip
async def test_each_failure_of_a_data_request_maps_to_its_error(
    whoop: Whoop, account: Account, fault: dict[str, Any], error: type[Exception], message: str, wait: float | None
) -> None:
    options = dict(fault)
    account.fail(options.pop("count", 1), **options)

    with pytest.raises(error, match=message) as raised:
        await collect(whoop, account.tokens())

    assert type(raised.value) is error
    if isinstance(raised.value, TransientSyncError):
        assert raised.value.retry_after == wait


async def test_a_request_slower_than_the_timeout_is_transient(fake_whoop: FakeWhoop, account: Account) -> None:
    impatient = Whoop.from_env(fake_whoop.env() | {"PROVIDER_TIMEOUT_SECONDS": "0.5"})
    account.fail(delay=2)

    with pytest.raises(TransientSyncError, match="no answer within the request timeout"):
        await collect(impatient, account.tokens())


async def test_a_token_that_whoop_no_longer_knows_is_rejected_and_the_message_carries_no_token(
    whoop: Whoop, account: Account
) -> None:
    tokens = account.tokens() | {"access_token": "whoop-at-stale"}

    with pytest.raises(AccessTokenRejectedError) as raised:
        await collect(whoop, tokens)

    assert "whoop-at-stale" not in str(raised.value)
