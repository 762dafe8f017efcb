"""The activity domain: Activity = 0.5·Steps + 0.5·MVPA (§4.2)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from pipeline.analytics.scores.base import Score, _blend, _input, _maybe, _on, _Part, _score
from pipeline.analytics.series import DailyData, DailySeries


def steps_points(steps: float, age: int | None = None) -> float:
    """Steps = 100·min(1, steps/T), T = 8,000 under 60 (or age unknown) and 7,000 at 60+ (Paluch 2022)."""
    return 100 * min(1.0, steps / steps_target(age))


def steps_target(age: int | None) -> int:
    return 7000 if age is not None and age >= 60 else 8000


def mvpa_points(weekly_minutes: float) -> float:
    """MVPA = 100·min(1, (moderate + 2·vigorous over the trailing 7 days)/150), WHO 2020."""
    return 100 * min(1.0, weekly_minutes / 150)


def weekly_mvpa(day: date, moderate: DailySeries | None, vigorous: DailySeries | None) -> float | None:
    """Moderate + 2·vigorous minutes over the 7 days ending ``day``, or None unless each of those
    days has moderate or vigorous minutes.  On a day with only one of the two, the other counts as
    0.  A day with neither is a gap, not a 0: summing fewer days would understate the week, and
    scaling them up would invent minutes."""
    if moderate is None and vigorous is None:
        return None  # every day is a gap; the check below says so for ~10 µs of numpy calls
    start, end = np.datetime64(day - timedelta(days=6), "D"), np.datetime64(day, "D")
    empty = np.full(7, np.nan)
    mod = empty if moderate is None else moderate.on_grid(start, end)
    vig = empty if vigorous is None else vigorous.on_grid(start, end)
    if not bool(np.all(~np.isnan(mod) | ~np.isnan(vig))):
        return None
    return float(np.nansum(mod) + 2 * np.nansum(vig))


def score_activity(
    daily: DailyData,
    day: date,
    age: int | None = None,
    moderate: DailySeries | None = None,
    vigorous: DailySeries | None = None,
) -> Score:
    """Activity = 0.5·Steps + 0.5·MVPA (§4.2).  One part alone counts with weight 1 (partial);
    None with neither ``steps`` on ``day`` nor a complete 7-day MVPA window."""
    return _activity(day, _on(daily, "steps", day), weekly_mvpa(day, moderate, vigorous), age)


def _activity(day: date, steps: float | None, mvpa: float | None, age: int | None) -> Score:
    """``score_activity`` from the day's steps and the week's MVPA minutes (None when missing)."""
    value, contributors = _blend(
        {
            "steps": _Part(
                0.5,
                None if steps is None else steps_points(steps, age),
                _input(steps, "count") | {"target": steps_target(age)},
            ),
            "mvpa": _Part(0.5, _maybe(mvpa_points, mvpa), _input(mvpa, "min/week") | {"target": 150}),
        }
    )
    reason = f"needs steps on {day}, or moderate/vigorous minutes on each of the 7 days ending {day}"
    return _score("activity", day, value, contributors, reason)
