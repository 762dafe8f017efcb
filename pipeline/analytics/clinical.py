"""Clinical threshold rules on single readings (reference: health-analytics §2).

Each rule fires at most once per patient, metric and day: the dedupe key says so, so
re-running analytics over the same readings never raises a second alert.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from db.alerts import NewAlert
from db.metrics import Reading


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    id: str
    metric: str
    compare: Callable[[float, float], bool]
    threshold: float
    severity: str
    title: str

    def check(self, user_id: int, reading: Reading) -> NewAlert | None:
        if reading.metric != self.metric or not self.compare(reading.value, self.threshold):
            return None
        day = reading.recorded_at.date().isoformat()
        return NewAlert(
            user_id=user_id,
            category="clinical",
            severity=self.severity,
            metric=self.metric,
            title=self.title,
            body=f"{self.metric} {reading.value:g} {reading.unit} on {day} (threshold {self.threshold:g})",
            observed_value=reading.value,
            threshold=self.threshold,
            recorded_at=reading.recorded_at,
            dedupe_key=f"clinical:{self.id}:{user_id}:{day}",
        )


RULES: tuple[ThresholdRule, ...] = (
    # AHA: a resting rate above 100 bpm is tachycardia.
    ThresholdRule("rhr-high", "resting_heart_rate", operator.gt, 100, "warning", "Resting heart rate above 100 bpm"),
    # Below Apple's lowest low-rate setting; 40-50 bpm is common in trained athletes.
    ThresholdRule("rhr-low", "resting_heart_rate", operator.lt, 40, "warning", "Resting heart rate below 40 bpm"),
    # BTS: below 90 % is below every adult target range, COPD's 88-92 % included at its top.
    ThresholdRule("spo2-low", "spo2", operator.lt, 90, "critical", "Blood oxygen below 90 %"),
)


def evaluate(user_id: int, readings: Iterable[Reading]) -> list[NewAlert]:
    found: dict[str, NewAlert] = {}
    for reading in readings:
        for rule in RULES:
            alert = rule.check(user_id, reading)
            if alert is not None:
                found.setdefault(alert.dedupe_key, alert)
    return list(found.values())
