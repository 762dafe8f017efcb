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
    "SleepNight",
    "ValuedScore",
    "band_points",
    "bp_category_of",
    "cardio",
    "clip01",
    "compute_scores",
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
from collections.abc import Mapping
from datetime import date

from pipeline.analytics.scores.activity import mvpa_points, score_activity, steps_points, steps_target, weekly_mvpa
from pipeline.analytics.scores.base import Composite, Score, ValuedScore, _blend, _input, _Part, _r, _score, clip01
from pipeline.analytics.scores.cardio import BP_POINTS, bp_category_of, cardio, rhr_points, score_cardio
from pipeline.analytics.scores.recovery import (
    BASELINE_DAYS,
    MIN_BASELINE_DAYS,
    RECOVERY_WEIGHTS,
    SCALE_FLOOR,
    _recovery,
    phi,
    recovery_band,
    robust_z,
    score_recovery,
)
from pipeline.analytics.scores.sleep import (
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
    tonight = _tonight(daily, day, age)
    found = {
        "sleep": _sleep_of(day, tonight),
        "activity": score_activity(daily, day, age, moderate_minutes, vigorous_minutes),
        "cardio": score_cardio(daily, day, bp_category),
        "recovery": _recovery(daily, day, age, lambda: tonight),
        "glycemic": score_glycemic(day, gri),
    }
    return found | {"overall": score_overall(day, found)}
