"""Personal-baseline detectors (reference: health-analytics §3; the stack of §3.5, steps 2–4).

Each patient is compared with their own recent past, never with a population:

- **Modified z** (Iglewicz & Hoaglin 1993; NIST e-Handbook §1.3.5.17): M = 0.6745·(x − median)/MAD
  over the 28 days before the day, flagged when |M| > 3.5 in the direction that matters (§3.5).
- **Sustained shift** (Alavi et al. 2022, NightSignal): resting HR ≥ 4 bpm over the baseline median
  on two consecutive nights.
- **Escalation** (Apple Vitals' rule, §3.3–3.4): two or more nightly signals abnormal on one night.
- ``ewma``: the NIST §6.3.2.4 chart, for callers that want small sustained shifts.

Wearable illness detectors are screening flags, not diagnoses (realistic AUROC ≈ 0.55, Nestor et
al. 2021), so a single statistical signal is "info", persistence or concordance raises it to
"warning", and "critical" is left to the clinical rules.  Pure: no I/O, no clock.
"""

from __future__ import annotations

__all__ = [
    "Baseline",
    "BaselineRules",
    "ESCALATE_AT",
    "MIN_VALID_DAYS",
    "RULE_VERSION",
    "SHIFT_BPM",
    "WATCHED",
    "WINDOW_DAYS",
    "Watch",
    "Z_LIMIT",
    "baseline_findings",
    "ewma",
    "modified_z",
    "robust_baseline",
]

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from pipeline.analytics.findings import Finding, as_date, day_number
from pipeline.analytics.series import DailyData, DailySeries, Values, median_of
from pipeline.vocabulary import UNITS

RULE_VERSION: Final = 1
WINDOW_DAYS: Final = 28  # Mishra et al. 2020 used the previous 28 days (§3.4)
MIN_VALID_DAYS: Final = 14  # ours (§3.2): no statistical alert before 14 valid days in the window
Z_LIMIT: Final = 3.5  # Iglewicz–Hoaglin
MAD_Z: Final = 0.6745  # M = 0.6745·(x − median)/MAD, with the raw MAD
MEANAD_SIGMA: Final = 1.253314  # √(π/2): σ ≈ 1.253314 × mean absolute deviation for normal data
SHIFT_BPM: Final = 4.0  # NightSignal red alert: ≥ 4 bpm over the baseline median, two nights running
ESCALATE_AT: Final = 2  # Apple Vitals: two or more nightly metrics out of range
# Step-like metrics: the same weekday over 8 weeks, needing 4 of them (§3.2: "the same weekday's
# median over ≥ 4 weeks").  28 days hold only 4 such days, so one missed day would silence the rule.
WEEKDAY_WEEKS: Final = 8
MIN_WEEKDAY_VALUES: Final = 4
ONE_DAY = np.timedelta64(1, "D")


@dataclass(frozen=True, slots=True)
class Watch:
    """How one metric is watched: which way is abnormal, on which scale, against which days."""

    direction: Literal["up", "down"]
    log: bool = False  # judge ln(value): RMSSD is right-skewed (§3.1)
    weekday: bool = False  # compare with the same weekday only (§3.2)
    nightly: bool = True  # counts towards the same-night escalation


WATCHED: dict[str, Watch] = {
    "resting_heart_rate": Watch("up"),
    "hrv_rmssd": Watch("down", log=True),
    "skin_temp_deviation": Watch("up"),
    "respiratory_rate": Watch("up"),
    "spo2": Watch("down"),
    # Activity falls when people are ill; a busy day is not a finding.
    "steps": Watch("down", weekday=True, nightly=False),
    "active_energy": Watch("down", weekday=True, nightly=False),
}


@dataclass(frozen=True, slots=True)
class Baseline:
    """Median and σ-equivalent scale of a reference sample, so M = (x − median)/scale.

    ``scale`` is MAD/0.6745; when MAD is 0 (over half the values equal, common for integer
    metrics) it falls back to 1.253314 × mean absolute deviation from the median (the IBM SPSS
    convention, ``fallback`` True); when that is 0 too, every value is equal, M is undefined and
    ``scale`` is NaN: no statistical alert, never ±inf.
    """

    median: float
    scale: float
    n: int
    fallback: bool


def robust_baseline(reference: npt.ArrayLike) -> Baseline:
    """The baseline of ``reference`` (finite values only; raises ValueError when empty)."""
    values = np.asarray(reference, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("a baseline needs at least one finite value")
    median = median_of(values)
    deviation = np.abs(values - median)
    mad = median_of(deviation)
    if mad > 0:
        return Baseline(median, mad / MAD_Z, int(values.size), fallback=False)
    mean_ad = float(deviation.mean())
    scale = MEANAD_SIGMA * mean_ad if mean_ad > 0 else float("nan")
    return Baseline(median, scale, int(values.size), fallback=True)


def modified_z(x: npt.ArrayLike, reference: npt.ArrayLike | None = None) -> Values:
    """M for each ``x`` against ``reference`` (default: ``x`` itself, as in §7 V13).  NaN where undefined."""
    values = np.asarray(x, dtype=float)
    base = robust_baseline(values if reference is None else reference)
    return (values - base.median) / base.scale


def ewma(x: npt.ArrayLike, lam: float, L: float, mu0: float, sigma: float) -> tuple[Values, Values, int | None]:
    """EWMA chart, upper side (NIST e-Handbook §6.3.2.4).

    z_t = λ·x_t + (1 − λ)·z_{t−1} with z_0 = μ0, and UCL_t = μ0 + L·σ·√(λ/(2 − λ)·[1 − (1 − λ)^{2t}])
    for t = 1…n.  Returns (z, ucl, first): ``first`` is the **0-based** index of the first z_t > UCL_t,
    or None.  The reference counts t from 1, so its "first signal at t = 8" (§7 V15) is index 7.
    For a downward shift pass −x and −μ0.  Raises ValueError unless 0 < λ ≤ 1 and σ > 0.
    """
    if not 0 < lam <= 1 or not sigma > 0:
        raise ValueError("ewma needs 0 < lam <= 1 and sigma > 0")
    values = np.asarray(x, dtype=float)
    # The recursion is a plain loop: a closed form needs (1 − λ)^−t, which overflows on long series,
    # and scipy.signal.lfilter would cost a 1 s import for what takes microseconds on daily data.
    z = np.empty_like(values)
    level = mu0
    for i, value in enumerate(values):
        level = lam * float(value) + (1 - lam) * level
        z[i] = level
    t = np.arange(1, values.size + 1)
    ucl = mu0 + L * sigma * np.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * t)))
    above = np.flatnonzero(z > ucl)
    return z, ucl, int(above[0]) if above.size else None


def baseline_findings(
    daily: DailyData, day: np.datetime64, flagged_days: Mapping[str, set[np.datetime64]] | None = None
) -> list[Finding]:
    """Statistical findings for local ``day``: modified-z per watched metric, the sustained RHR
    shift, and one escalation finding when ≥ 2 nightly signals are abnormal.

    ``flagged_days[metric]`` are days already flagged for that metric; they never enter its
    baseline (§3.2, as the Stanford CuSum does).  A metric with no value on ``day``, fewer than
    14 valid days in the 28 before it, or an undefined scale is skipped.  Every value must be a
    whole day's (the caller leaves out today's activity totals while the day is still running).
    Pure.  ``BaselineRules`` judges several days of the same data for less.
    """
    return BaselineRules(daily).findings(day, flagged_days)


class BaselineRules:
    """``baseline_findings`` for any day of one patient's whole days.

    Each watched metric is laid out once as a list with a slot per day, so a day's windows are
    list slices: the rules judge a few days of the same series, and building each window from a
    day → value dict per day cost more than the statistics on it.
    """

    def __init__(self, daily: DailyData) -> None:
        self._grids = {
            metric: _Grid.of(series, watch)
            for metric, watch in WATCHED.items()
            if (series := daily.get(metric)) is not None and len(series)
        }

    def findings(
        self, day: np.datetime64, flagged_days: Mapping[str, set[np.datetime64]] | None = None
    ) -> list[Finding]:
        """What ``baseline_findings`` finds on ``day``, given the days already flagged."""
        when = as_date(day)
        number = day_number(when)
        flagged = flagged_days or {}
        found: list[Finding] = []
        for metric, grid in self._grids.items():
            hit = _outlier(metric, WATCHED[metric], grid, number, when, _numbers(flagged.get(metric)))
            if hit is not None:
                found.append(hit)
        rhr = self._grids.get("resting_heart_rate")
        if rhr is not None:
            shift = _sustained(rhr, number, when, _numbers(flagged.get("resting_heart_rate")))
            if shift is not None:
                found.append(shift)
        abnormal = sorted({f.metric for f in found if WATCHED[f.metric].nightly})
        if len(abnormal) >= ESCALATE_AT:
            found.append(
                Finding(
                    metric="nightly_signals",
                    day=when,
                    kind="statistical",
                    rule="multi-signal",
                    rule_version=RULE_VERSION,
                    severity="warning",
                    category="statistical",
                    value=float(len(abnormal)),
                    baseline=float(ESCALATE_AT),
                    title=f"{len(abnormal)} signals outside this patient's normal range on the same night",
                    detail=f"Abnormal on the same night: {', '.join(abnormal)}.",
                )
            )
        return found


@dataclass(slots=True)  # not frozen: built 7 times a user, and a frozen init costs ~1 µs more
class _Grid:
    """One series with a slot per day from its first day (day number ``first``) to its last:
    ``values`` holds each day's value, NaN on a day without one, and ``judged`` the same on the
    scale the metric is judged on (ln for log metrics, NaN where that is undefined)."""

    first: int
    values: list[float]
    judged: list[float]

    @classmethod
    def of(cls, series: DailySeries, watch: Watch) -> _Grid:
        numbers = series.day_numbers()
        first, last = int(numbers[0]), int(numbers[-1])
        grid = series.values
        if last - first + 1 != grid.size:  # a day is missing
            grid = np.full(last - first + 1, np.nan)
            grid[numbers - first] = series.values
        values = grid.tolist()
        # ln of the whole series at once: elementwise, the same floats as ln of each window.
        return cls(first, values, _scale(grid, watch).tolist() if watch.log else values)

    def window(self, start: int, stop: int, step: int, excluded: frozenset[int]) -> list[float]:
        """The finite judged values on days ``start``, ``start + step``, … before ``stop`` (day
        numbers), minus ``excluded``, in day order."""
        start, stop = start - self.first, max(stop - self.first, 0)
        start = start if start >= 0 else start % step  # the first day of the stride inside the grid
        found = self.judged[start:stop:step]
        if excluded:
            days = range(start + self.first, stop + self.first, step)
            return [v for d, v in zip(days, found, strict=False) if d not in excluded and math.isfinite(v)]
        # A finite sum means every value is finite (a NaN or ±inf makes any sum NaN or ±inf): one
        # pass in C instead of a test per value, on windows that are nearly always all finite.
        return found if math.isfinite(sum(found)) else [v for v in found if math.isfinite(v)]

    def on(self, day: int) -> tuple[float, float]:
        """(value, judged value) on day number ``day``; NaN for both without one."""
        i = day - self.first
        return (self.values[i], self.judged[i]) if 0 <= i < len(self.values) else (math.nan, math.nan)


def _outlier(metric: str, watch: Watch, grid: _Grid, day: int, when: date, excluded: frozenset[int]) -> Finding | None:
    # No value on the day reads as NaN: not finite, so no finding, as for a non-finite value.
    observed, x = grid.on(day)
    if not math.isfinite(x):
        return None
    window = grid.window(day - WINDOW_DAYS, day, 1, excluded)
    if len(window) < MIN_VALID_DAYS:
        return None
    reference = window
    if watch.weekday:
        reference = grid.window(day - WEEKDAY_WEEKS * 7, day, 7, excluded)
        if len(reference) < MIN_WEEKDAY_VALUES:
            return None
    sign = 1.0 if watch.direction == "up" else -1.0
    ordered = sorted(reference)
    centre = _middle(ordered)
    # On the normal side of the median M is ≤ 0, or NaN, whatever the scale; on the other side
    # nearly every day is well inside the limit.  Either way no finding, and most days never
    # work out the deviations.
    if sign * (x - centre) <= 0 or _surely_within(x, centre, ordered):
        return None
    scale, fallback = _spread(reference, centre)
    m = (x - centre) / scale
    if not math.isfinite(m) or sign * m <= Z_LIMIT:
        return None
    unit = UNITS.get(metric, "")
    median = float(np.exp(centre)) if watch.log else centre
    notes = [f"{'same-weekday ' if watch.weekday else ''}median {median:g} {unit} over {len(reference)} days"]
    if watch.log:
        notes.append("judged on ln(RMSSD)")
    if fallback:
        notes.append("MAD was 0, so the scale is 1.253314 × mean absolute deviation")
    return Finding(
        metric=metric,
        day=when,
        kind="statistical",
        rule="modified-z",
        rule_version=RULE_VERSION,
        severity="info",
        category="statistical",
        value=observed,
        baseline=median,
        title=f"{metric.replace('_', ' ').capitalize()} unusually {'high' if sign > 0 else 'low'} for this patient",
        detail=f"{metric} {observed:g} {unit}: modified z {m:.2f} beyond {sign * Z_LIMIT:+g} ({'; '.join(notes)}).",
    )


def _sustained(rhr: _Grid, day: int, when: date, excluded: frozenset[int]) -> Finding | None:
    """NightSignal: tonight and last night both ≥ 4 bpm over the median of the 28 days before last
    night, so the first elevated night never dilutes the baseline the second is judged against."""
    tonight, last_night = rhr.on(day)[0], rhr.on(day - 1)[0]
    # A missing night reads as NaN, and a NaN night never rises 4 bpm: either way, no finding.
    if math.isnan(tonight) or math.isnan(last_night):
        return None
    reference = rhr.window(day - (WINDOW_DAYS + 1), day - 1, 1, excluded)
    if len(reference) < MIN_VALID_DAYS:
        return None
    median = _median(reference)
    # Rounding to 1e-6 moves a rise by far less than 1e-3: a night further below 4 bpm than that
    # is decided without it.
    if min(last_night, tonight) - median < SHIFT_BPM - 1e-3:
        return None
    rises = np.round(np.array([last_night, tonight]) - median, 6)  # float noise never decides 4.0
    if not (rises >= SHIFT_BPM).all():
        return None
    return Finding(
        metric="resting_heart_rate",
        day=when,
        kind="statistical",
        rule="rhr-sustained",
        rule_version=RULE_VERSION,
        severity="warning",
        category="statistical",
        value=tonight,
        baseline=median,
        title=f"Resting heart rate {SHIFT_BPM:g}+ bpm above this patient's baseline two nights running",
        detail=(
            f"resting_heart_rate {last_night:g} then {tonight:g} bpm: +{rises[0]:g} and +{rises[1]:g} over the "
            f"median {median:g} bpm of {len(reference)} days."
        ),
    )


def _robust(values: list[float]) -> Baseline:
    """``robust_baseline`` of finite values, in plain floats: the same arithmetic, so the same
    numbers, without a numpy call per step (the mean of the fallback keeps numpy's summation)."""
    median = _median(values)
    scale, fallback = _spread(values, median)
    return Baseline(median, scale, len(values), fallback)


def _spread(values: list[float], median: float) -> tuple[float, bool]:
    """``Baseline.scale`` and ``Baseline.fallback`` of ``values`` around their ``median``."""
    deviation = [abs(v - median) for v in values]
    mad = _median(deviation)
    if mad > 0:
        return mad / MAD_Z, False
    mean_ad = float(np.array(deviation).mean())
    return (MEANAD_SIGMA * mean_ad if mean_ad > 0 else float("nan")), True


def _surely_within(x: float, median: float, ordered: list[float]) -> bool:
    """Whether |M| ≤ Z_LIMIT for ``x``, judged from a lower bound on the MAD of ``ordered``
    (sorted, finite) that costs about half as much as the MAD itself.

    At least k = ⌈n/2⌉ values lie within MAD of the median (n odd: the MAD is the middle
    deviation; n even: the mean of the middle two, so at least the lower one).  The values in an
    interval are consecutive once sorted, so some k consecutive values span at most 2·MAD: half
    the shortest span of k consecutive values is at most the MAD.  The slack of 1e-9 dwarfs the
    rounding of every float involved, so a True here is never a finding once the MAD is known.
    """
    k = (len(ordered) + 1) // 2
    shortest: float = min(map(operator.sub, ordered[k - 1 :], ordered[: len(ordered) - k + 1]))
    return abs(x - median) * MAD_Z <= Z_LIMIT * shortest / 2 * (1 - 1e-9)


def _median(values: list[float]) -> float:
    """``median_of`` on plain floats."""
    return _middle(sorted(values))


def _middle(ordered: list[float]) -> float:
    """``median_of`` of sorted plain floats: the middle value, or (a + b)/2 of the middle two, + 0.0."""
    half = len(ordered) // 2
    middle = ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2
    return middle + 0.0


def _scale(values: Values, watch: Watch) -> Values:
    """ln for log-scale metrics (a non-positive value is invalid: NaN); unchanged otherwise."""
    if not watch.log:
        return values
    positive = values > 0
    if positive.all():  # the usual case, in one call
        return np.log(values)
    return np.where(positive, np.log(np.where(positive, values, 1.0)), np.nan)


def _numbers(days: set[np.datetime64] | None) -> frozenset[int]:
    return frozenset(day_number(as_date(day)) for day in days) if days else frozenset()
