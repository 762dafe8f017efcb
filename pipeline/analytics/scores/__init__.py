"""Health scores per domain and local day: the transparent formulas of health-analytics §4.2.

Every domain reports its contributors: each part's input, sub-score and weight.  A domain without
its minimum input gets ``value=None`` and a ``reason`` naming what is missing.  It never gets a
default number: the seed's formula gave 70/"C" to a user with no data (vitasync-inventory §5.2).

When some optional parts are missing, the domain renormalises the weights of the parts it has.
The missing parts stay in the contributors with weight 0, and ``contributors["partial"]`` is true.
docs/scores.md gives each formula, a worked example and each domain's minimum input.

One module per domain (``sleep``, ``activity``, ``cardio``, ``recovery``) on shared types and
blending (``base``); glycemic and overall are a few lines each and live here.
"""

from __future__ import annotations

__all__ = [
    "BASELINE_DAYS",
    "BP_POINTS",
    "Composite",
    "DOMAINS",
    "MIN_BASELINE_DAYS",
    "RECOVERY_WEIGHTS",
    "SCALE_FLOOR",
    "Score",
    "ScoreInput",
    "SleepNight",
    "ValuedScore",
    "band_points",
    "bp_category_of",
    "cardio",
    "clip01",
    "compute_scores",
    "compute_scores_many",
    "duration_points",
    "efficiency_points",
    "latency_points",
    "mvpa_points",
    "nightly_scores",
    "phi",
    "recovery_band",
    "rhr_points",
    "robust_z",
    "score_activity",
    "score_cardio",
    "score_glycemic",
    "score_overall",
    "score_recovery",
    "score_sleep",
    "sleep_score",
    "sleep_scores",
    "steps_points",
    "steps_target",
    "waso_points",
    "weekly_mvpa",
]

import math
from collections.abc import Mapping, Sequence
from datetime import date
from functools import partial
from typing import NamedTuple

import numpy as np

from pipeline.analytics.findings import day_number
from pipeline.analytics.scores import batch
from pipeline.analytics.scores.activity import (
    _activity,
    mvpa_points,
    score_activity,
    steps_points,
    steps_target,
    weekly_mvpa,
)
from pipeline.analytics.scores.base import Composite, Score, ValuedScore, _blend, _input, _Part, _r, _score, clip01
from pipeline.analytics.scores.cardio import (
    BP_POINTS,
    _cardio,
    bp_category_of,
    cardio,
    rhr_points,
    score_cardio,
)
from pipeline.analytics.scores.recovery import (
    BASELINE_DAYS,
    MIN_BASELINE_DAYS,
    RECOVERY_WEIGHTS,
    SCALE_FLOOR,
    Baseline,
    Inputs,
    _recovery,
    _recovery_of,
    phi,
    recovery_band,
    robust_z,
    score_recovery,
)
from pipeline.analytics.scores.sleep import (
    _NIGHT_METRICS,
    SleepNight,
    _sleep_of,
    _tonight,
    band_points,
    duration_points,
    efficiency_points,
    latency_points,
    nightly_scores,
    score_sleep,
    sleep_score,
    sleep_scores,
    waso_points,
)
from pipeline.analytics.series import DailyData, DailySeries

DOMAINS = ("sleep", "activity", "cardio", "recovery", "glycemic", "overall")


def score_glycemic(day: date, gri: float | None) -> Score:
    """Glycemic = 100 − GRI (§0, §1.3), the GRI capped at 100 as defined; None without a GRI.
    Raises ValueError for a GRI that is negative or not finite."""
    if gri is None:
        return Score("glycemic", day, None, {}, f"needs a glycemia risk index (GRI) from CGM data for {day}")
    if not (math.isfinite(gri) and gri >= 0):
        raise ValueError("gri must be a finite number ≥ 0")
    points = 100 - min(gri, 100.0)
    contributors = {"gri": _input(gri, "GRI") | {"score": _r(points), "weight": 1.0, "nominal_weight": 1.0}}
    return Score("glycemic", day, round(points, 1), contributors | {"partial": False})


def score_overall(day: date, domains: Mapping[str, Score]) -> Score:
    """Overall = equal-weight mean of the domains that have values (their rounded values), needing
    at least 3 of them (§4.2).  Every domain is listed, a missing one with its reason."""
    parts = {
        name: _Part(1 / len(domains), score.value, {} if score.reason is None else {"reason": score.reason})
        for name, score in domains.items()
    }
    value, contributors = _blend(parts)
    have = [name for name, score in domains.items() if score.value is not None]
    reason = f"needs 3 domains with values on {day} (has {len(have)}: {', '.join(have) or 'none'})"
    return _score("overall", day, value if len(have) >= 3 else None, contributors, reason)


class ScoreInput(NamedTuple):
    """One user's arguments to ``compute_scores``, for ``compute_scores_many``."""

    daily: DailyData
    day: date
    age: int | None = None
    gri: float | None = None
    moderate_minutes: DailySeries | None = None
    vigorous_minutes: DailySeries | None = None
    bp_category: str | None = None


def compute_scores(
    daily: DailyData,
    day: date,
    *,
    age: int | None = None,
    gri: float | None = None,
    moderate_minutes: DailySeries | None = None,
    vigorous_minutes: DailySeries | None = None,
    bp_category: str | None = None,
) -> dict[str, Score]:
    """Every domain of DOMAINS for local ``day``, in that order, each with a value or a reason.

    ``daily`` holds the canonical metrics per local day; history before ``day`` is used by the
    recovery baseline and the 7-day MVPA window.  ``gri`` comes from the CGM engine.
    Raises ValueError for an unknown ``bp_category`` or an invalid ``gri``.
    """
    user = ScoreInput(daily, day, age, gri, moderate_minutes, vigorous_minutes, bp_category)
    return compute_scores_many([user])[0]


# The metrics read on each user's day, and over the baseline window for recovery.
_DAY_METRICS = (
    *_NIGHT_METRICS,
    "steps",
    "resting_heart_rate",
    "hrv_rmssd",
    "blood_pressure_systolic",
    "blood_pressure_diastolic",
)


def compute_scores_many(users: Sequence[ScoreInput]) -> list[dict[str, Score]]:
    """``compute_scores`` of each user, in order, with the day's values and the recovery baselines
    of all of them read and computed together as arrays (``batch``): the same scores.

    Raises what ``compute_scores`` raises for the first user it raises for.
    """
    if not users:
        return []
    ends = np.array([day_number(user.day) for user in users], dtype=np.int64)
    grids = batch.grids([user.daily for user in users], ends, _DAY_METRICS)
    nights = batch.sleep_grids(grids)
    alone = batch.unusual(nights).tolist()
    on_day = {metric: _present(values[:, batch.TODAY].tolist()) for metric, values in grids.items()}
    hrv_days = batch.hrv_baselines(grids["hrv_rmssd"])
    rhr_days = batch.baselines(grids["resting_heart_rate"][:, : batch.TODAY], SCALE_FLOOR["rhr"])
    sleep_days = batch.nightly_baselines(nights, [user.age for user in users])
    found = []
    for i, user in enumerate(users):
        if alone[i]:
            found.append(_scores_of(user))
            continue
        day, age = user.day, user.age
        duration, *others = (on_day[metric][i] for metric in _NIGHT_METRICS)
        tonight = None if duration is None else sleep_score(SleepNight(duration, *others), age)
        night = None if tonight is None or sleep_days.days[i] < MIN_BASELINE_DAYS else tonight.value
        hrv = on_day["hrv_rmssd"][i]
        scores = {
            "sleep": _sleep_of(day, tonight),
            "activity": _activity(
                day, on_day["steps"][i], weekly_mvpa(day, user.moderate_minutes, user.vigorous_minutes), age
            ),
            "cardio": _cardio(
                day,
                on_day["resting_heart_rate"][i],
                on_day["blood_pressure_systolic"][i],
                on_day["blood_pressure_diastolic"][i],
                user.bp_category,
            ),
            "recovery": _recovery_of(
                day,
                hrv if hrv is not None and hrv > 0 else None,
                on_day["resting_heart_rate"][i],
                (hrv_days.days[i], rhr_days.days[i]),
                partial(_recovery_inputs, hrv_days, rhr_days, sleep_days, i, night),
            ),
            "glycemic": score_glycemic(day, user.gri),
        }
        found.append(scores | {"overall": score_overall(day, scores)})
    return found


def _present(values: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def _recovery_inputs(
    hrv_days: batch.Baselines,
    rhr_days: batch.Baselines,
    sleep_days: batch.Baselines,
    i: int,
    night: float | None,
    hrv: float,
    rhr: float,
) -> Inputs:
    """User ``i``'s recovery parts, from the batch's baselines."""
    found: Inputs = {
        "hrv": (math.log(hrv), Baseline(hrv_days.days[i], hrv_days.median[i], hrv_days.scale[i]), "ln ms"),
        "rhr": (rhr, Baseline(rhr_days.days[i], rhr_days.median[i], rhr_days.scale[i]), "bpm"),
    }
    if night is not None:
        found["sleep"] = (night, Baseline(sleep_days.days[i], sleep_days.median[i], sleep_days.scale[i]), "points")
    return found


def _scores_of(user: ScoreInput) -> dict[str, Score]:
    """``compute_scores`` of one user with the per-user functions: for a user with a night the
    batch does not score (``batch.unusual``), so the error raised is SleepNight's own."""
    daily, day, age = user.daily, user.day, user.age
    tonight = _tonight(daily, day, age)
    found = {
        "sleep": _sleep_of(day, tonight),
        "activity": score_activity(daily, day, age, user.moderate_minutes, user.vigorous_minutes),
        "cardio": score_cardio(daily, day, user.bp_category),
        "recovery": _recovery(daily, day, age, lambda: tonight),
        "glycemic": score_glycemic(day, user.gri),
    }
    return found | {"overall": score_overall(day, found)}
