"""CGM metrics and glucose events (reference: health-analytics §1).

The consensus metrics (Battelino 2019, ADA Standards Table 6.2) counted as "% of readings", the
derived indices (GMI, GRI, CV), the wear check (≥ 14 days, ≥ 70 % active) and the 2023 consensus
hypo/hyperglycaemia events (Battelino 2023, *Lancet Diabetes Endocrinol* 11:42).  Pure: no I/O.

Conventions shared by every function here:

- Readings are sorted by time.  A NaT time or a non-finite glucose is not a reading and is dropped;
  of readings sharing a timestamp, the first one given is kept.
- A reading stands for one sampling interval.  So k consecutive readings last k·interval (iglu: 3
  readings at 5 min make the 15 minutes of an event), and the span covered is last − first +
  interval (§7 V7: 14 days at 5 min is 4,032 readings).
- Readings up to 2 × interval apart are consecutive.  A longer gap is a sensor gap: it breaks
  every run and closes any open event.
"""

from __future__ import annotations

__all__ = [
    "MGDL_PER_MMOL",
    "CgmMetrics",
    "EventLevel",
    "GlucoseEvent",
    "cgm_metrics",
    "eag_mgdl",
    "glucose_events",
    "gmi_mmol_mol",
    "gmi_percent",
]

import math
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import numpy.typing as npt

from pipeline.analytics.series import median_of

Times = npt.NDArray[np.datetime64]
Glucose = npt.NDArray[np.float64]
_Offsets = npt.NDArray[np.int64]
_Mask = npt.NDArray[np.bool_]

EventLevel = Literal["hypo_l1", "hypo_l2", "hyper_l1", "hyper_l2"]

# mg/dL per mmol/L of glucose: the conventional factor used by clinical unit converters.  The
# reference note does not give one; glucose's molar mass (180.156 g/mol) gives 18.0156, which is
# 0.015 % away and far inside any sensor's error.  It maps the consensus bands onto the mmol/L
# values in the 2019 consensus table (54 → 3.0, 70 → 3.9, 180 → 10.0, 250 → 13.9).
MGDL_PER_MMOL = 18.0182

# Consensus bands in mg/dL (Battelino 2019, Diabetes Care 42:1593; ADA Standards Table 6.2).
# Boundaries are strict (reference §1.2): in range is 70 ≤ g ≤ 180, low is g < 70, high is g > 180.
VERY_LOW = 54.0
LOW = 70.0
HIGH = 180.0
VERY_HIGH = 250.0

# Wear needed before the metrics mean anything: 14 days with ≥ 70 % of the expected readings
# (ADA Standards Table 6.2; Danne 2017, Diabetes Care 40:1631, Table 1).
MIN_DAYS = 14.0
MIN_ACTIVE_PERCENT = 70.0

_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 1440 * _US_PER_MINUTE
# Battelino 2023: an event starts after ≥ 15 consecutive minutes beyond its threshold, and ends
# after ≥ 15 consecutive minutes back.
_EVENT_US = 15 * _US_PER_MINUTE
# Our convention: one missed reading (a gap of two intervals) keeps a run going; anything
# longer is a sensor gap.  iglu instead interpolates over gaps of up to 45 minutes (§1.4).
_MAX_GAP_INTERVALS = 2


def gmi_percent(mean_mgdl: float) -> float:
    """Glucose management indicator, in %, from mean glucose in mg/dL (Bergenstal 2018, Diabetes Care 41:2275)."""
    return 3.31 + 0.02392 * mean_mgdl


def gmi_mmol_mol(mean_mmol_l: float) -> float:
    """GMI in IFCC mmol/mol, from mean glucose in mmol/L (Bergenstal 2018: their own fit, not a unit change)."""
    return 12.71 + 4.70587 * mean_mmol_l


def eag_mgdl(a1c_percent: float) -> float:
    """Estimated average glucose in mg/dL for an A1C in % (ADAG, Nathan 2008, Diabetes Care 31:1473)."""
    return 28.7 * a1c_percent - 46.7


@dataclass(frozen=True, slots=True)
class CgmMetrics:
    """One person's CGM summary.  Percentages are 0–100 and count readings ("% of readings", ADA).

    ``tbr_70`` includes ``tbr_54`` and ``tar_180`` includes ``tar_250``, as in the consensus table.
    ``sd`` is the sample SD (ddof = 1, as iglu); with a single reading it and ``cv`` are NaN.
    Event counts follow ``glucose_events``: each level is counted on its own, so an L2 event is
    also inside an L1 event.
    """

    readings: int
    days: float
    active_percent: float
    sufficient: bool
    mean: float
    sd: float
    cv: float
    gmi: float
    gri: float
    tir: float
    tbr_70: float
    tbr_54: float
    tar_180: float
    tar_250: float
    hypo_l1_events: int
    hypo_l2_events: int
    hyper_l1_events: int
    hyper_l2_events: int

    def as_dict(self) -> dict[str, float | int | bool]:
        """Every field, by name, in declaration order."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True, slots=True)
class GlucoseEvent:
    """One event: ``start`` and ``end`` are the times of its first and last readings beyond the
    threshold (inclusive, in the caller's datetime64 unit).  ``extreme`` is the lowest glucose
    (hypo) or the highest (hyper) between them."""

    level: EventLevel
    start: np.datetime64
    end: np.datetime64
    extreme: float


@dataclass(frozen=True, slots=True)
class _Level:
    name: EventLevel
    threshold: float
    below: bool

    def beyond(self, mgdl: Glucose) -> _Mask:
        # Strict, like the bands: a reading exactly at the threshold counts as back (Battelino 2023:
        # a hypo ends at ≥ 70, a hyper at ≤ 180).
        return mgdl < self.threshold if self.below else mgdl > self.threshold


# In this order, events that start together are listed.
_LEVELS = (
    _Level("hypo_l1", LOW, below=True),
    _Level("hypo_l2", VERY_LOW, below=True),
    _Level("hyper_l1", HIGH, below=False),
    _Level("hyper_l2", VERY_HIGH, below=False),
)


@dataclass(frozen=True, slots=True)
class _Readings:
    times: Times  # sorted, unique, in the caller's unit
    offsets: _Offsets  # microseconds since the first reading
    mgdl: Glucose
    interval: int  # microseconds; 0 only for a lone reading with no interval given


def cgm_metrics(times: Times, mgdl: Glucose, interval_minutes: float | None = None) -> CgmMetrics | None:
    """The consensus CGM metrics of these readings, or None when there are no readings.

    ``times`` may be in any datetime64 unit (UTC) and any order.  ``interval_minutes`` is the
    sensor's sampling interval; when None it is the median gap (5 min for Dexcom, 15 for Libre).
    ``days`` is the span covered, ``active_percent`` the readings over the readings expected in
    that span (at most 100), and ``sufficient`` means ≥ 14 days and ≥ 70 % active.
    Raises ValueError when the arrays do not match or the interval is not positive.
    """
    data = _prepare(times, mgdl, interval_minutes)
    if data is None:
        return None
    g, n, interval = data.mgdl, int(data.mgdl.size), data.interval
    elapsed = int(data.offsets[-1])
    # Slots of one interval from the first reading to the last, both included (V7: 4,032 in 14 days).
    expected = elapsed / interval + 1 if interval else 1.0
    days = (elapsed + interval) / _US_PER_DAY
    active = min(100.0, 100.0 * n / expected)

    very_low, low = int(np.count_nonzero(g < VERY_LOW)), int(np.count_nonzero(g < LOW))
    high, very_high = int(np.count_nonzero(g > HIGH)), int(np.count_nonzero(g > VERY_HIGH))
    # GRI (Klonoff 2023, J Diabetes Sci Technol, doi:10.1177/19322968221085273) weighs the four
    # exclusive bands: VLow < 54, Low 54–<70, VHigh > 250, High > 180–250; capped at 100.
    gri = min(100.0, 100.0 * (3.0 * very_low + 2.4 * (low - very_low) + 1.6 * very_high + 0.8 * (high - very_high)) / n)

    mean = float(g.mean())
    # Sample SD (ddof = 1) as iglu does; the reference (§1.3, V5) says to fix ddof once.  Worked
    # out as np.std does it, the same float, without its ~30 µs of checks on a short series.
    deviation = g - g.sum() / n
    sd = math.sqrt(float(np.add.reduce(deviation * deviation)) / (n - 1)) if n > 1 else math.nan
    counts = [len(_episodes(data.offsets, level.beyond(g), interval)) for level in _LEVELS]
    return CgmMetrics(
        readings=n,
        days=days,
        active_percent=active,
        sufficient=days >= MIN_DAYS and active >= MIN_ACTIVE_PERCENT,
        mean=mean,
        sd=sd,
        cv=100.0 * sd / mean if mean else math.nan,
        gmi=gmi_percent(mean),
        gri=gri,
        tir=100.0 * (n - low - high) / n,
        tbr_70=100.0 * low / n,
        tbr_54=100.0 * very_low / n,
        tar_180=100.0 * high / n,
        tar_250=100.0 * very_high / n,
        hypo_l1_events=counts[0],
        hypo_l2_events=counts[1],
        hyper_l1_events=counts[2],
        hyper_l2_events=counts[3],
    )


def glucose_events(times: Times, mgdl: Glucose, interval_minutes: float | None = None) -> list[GlucoseEvent]:
    """Hypo- and hyperglycaemia events by the 2023 consensus rule, ordered by start, then level.

    An event starts with ≥ 15 consecutive minutes below 70 (hypo_l1) or 54 (hypo_l2), or above 180
    (hyper_l1) or 250 (hyper_l2).  It ends when glucose is back (≥ resp. ≤ the threshold) for
    ≥ 15 consecutive minutes, at a sensor gap, or at the end of the data; a shorter return inside
    an event is part of it.  Each level is counted on its own, so an L2 event lies inside an L1
    event and appears in both: each count then answers "how often below X" like the nested
    consensus bands (TBR < 70 includes < 54), and iglu counts the same way by default.
    Input contract and errors as ``cgm_metrics``; no readings give no events.
    """
    data = _prepare(times, mgdl, interval_minutes)
    if data is None:
        return []
    found: list[tuple[int, int, GlucoseEvent]] = []
    for rank, level in enumerate(_LEVELS):
        pick = np.min if level.below else np.max
        for first, last in _episodes(data.offsets, level.beyond(data.mgdl), data.interval):
            extreme = float(pick(data.mgdl[first : last + 1]))
            event = GlucoseEvent(level.name, data.times[first], data.times[last], extreme)
            found.append((int(data.offsets[first]), rank, event))
    found.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in found]


def _prepare(times: Times, mgdl: Glucose, interval_minutes: float | None) -> _Readings | None:
    """Sorted, de-duplicated readings with offsets and the interval; None when none are left."""
    t = np.asarray(times)
    g = np.asarray(mgdl, dtype=np.float64)
    if t.dtype.kind != "M":
        raise ValueError(f"times must be datetime64, not {t.dtype}")
    if t.ndim != 1 or t.shape != g.shape:
        raise ValueError("times and mgdl must be 1-D arrays of the same length")
    if interval_minutes is not None and not interval_minutes > 0:  # `not >` also rejects NaN
        raise ValueError(f"interval_minutes must be positive, not {interval_minutes}")
    keep = ~np.isnat(t) & np.isfinite(g)
    t, g = t[keep], g[keep]
    if t.size == 0:
        return None
    if not (t[1:] > t[:-1]).all():  # as a sensor's export and the database give them: in order, once each
        # A stable sort keeps the given order among equal timestamps, so "first given" wins below.
        order = np.argsort(t, kind="stable")
        t, g = t[order], g[order]
        first = np.concatenate(([True], t[1:] != t[:-1]))
        t, g = t[first], g[first]
    # Offsets from the first reading, not from the epoch, so no unit can overflow int64 here.
    offsets = (t - t[0]).astype("timedelta64[us]").astype(np.int64)
    if interval_minutes is not None:
        interval = max(1, round(interval_minutes * _US_PER_MINUTE))
    elif t.size > 1:
        # The median ignores sensor gaps and the odd early or late reading.
        interval = max(1, round(median_of(np.diff(offsets).astype(np.float64))))
    else:
        interval = 0
    return _Readings(t, offsets, g, interval)


def _episodes(offsets: _Offsets, beyond: _Mask, interval: int) -> list[tuple[int, int]]:
    """First and last reading index of each event of one level, in time order.

    The readings split into runs: maximal gap-free stretches all beyond the threshold or all back.
    A run lasts when it covers ≥ 15 minutes.  Sensor gaps and lasting runs back cut the series into
    chunks, and a chunk holds at most one event: from its first lasting run beyond to its last
    reading beyond.  Working on runs and chunks keeps this vectorised, with no per-reading loop.
    """
    if not beyond.any():  # most levels on most days: a dozen array operations saved
        return []
    gap = np.diff(offsets) > _MAX_GAP_INTERVALS * interval
    after_gap = np.concatenate(([True], gap))
    changed = np.concatenate(([True], beyond[1:] != beyond[:-1]))
    starts = np.flatnonzero(after_gap | changed)
    ends = np.append(starts[1:] - 1, offsets.size - 1)
    run_beyond = beyond[starts]
    lasting = offsets[ends] - offsets[starts] + interval >= _EVENT_US
    chunk = np.cumsum(after_gap[starts] | (lasting & ~run_beyond))
    openers = np.flatnonzero(run_beyond & lasting)
    if openers.size == 0:
        return []
    openers = openers[np.concatenate(([True], np.diff(chunk[openers]) > 0))]  # the first in each chunk
    excursions = np.flatnonzero(run_beyond)
    closers = excursions[np.searchsorted(chunk[excursions], chunk[openers], side="right") - 1]
    return list(zip(starts[openers].tolist(), ends[closers].tolist(), strict=True))
