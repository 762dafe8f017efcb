"""``correlate_daily_many``: the engine over a stack of users gives each user exactly what
``correlate_daily`` gives, whether the user goes in a stack or alone."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analytics.correlations import correlate_daily
from pipeline.analytics.correlations.stack import STACK, correlate_daily_many
from pipeline.analytics.series import DailySeries

END = np.datetime64("2026-11-01")


def user(seed: int, metrics: int, *, gaps: str) -> dict[str, DailySeries]:
    """90 days of ``metrics`` metrics, some related, some rounded (ties); ``gaps`` is "none",
    "shared" (every metric misses the same days, as with one device) or "own"."""
    rng = np.random.default_rng(seed)
    days = END - 89 + np.arange(90)
    shared = rng.random(90) < 0.85
    base = rng.normal(size=90)
    found = {}
    for m in range(metrics):
        values = 0.6 * np.roll(base, m % 3) + rng.normal(size=90)
        if m % 3 == 0:
            values = np.round(values)
        if seed % 4 == 0 and m == metrics - 1:
            values = np.full(90, 5.0)  # a constant metric: ρ and r are undefined, so NaN, not tested
        keep = {"none": np.ones(90, bool), "shared": shared, "own": rng.random(90) < 0.8}[gaps]
        found[f"metric_{m:02d}"] = DailySeries(days[keep], values[keep])
    return found


@pytest.mark.parametrize("max_q", [None, 0.05])
def test_every_user_gets_what_correlate_daily_gives_it_alone(max_q: float | None) -> None:
    users = [
        *(user(i, 12, gaps="none") for i in range(STACK + 3)),  # more than one stack
        *(user(100 + i, 12, gaps="shared") for i in range(5)),
        *(user(200 + i, 7, gaps="shared") for i in range(3)),  # another shape
        *(user(300 + i, 12, gaps="own") for i in range(3)),  # alone
        user(400, 1, gaps="none"),  # nothing to pair
        {},
    ]
    windows = [(daily, END - 89, END) for daily in users]

    found = correlate_daily_many(windows, max_q=max_q)

    expected = [correlate_daily(daily, start, end, max_q=max_q) for daily, start, end in windows]
    assert found == expected
    assert sum(map(len, found)) > (100 if max_q else 10_000)  # the comparison is not of empty lists
