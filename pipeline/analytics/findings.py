"""Findings: what a detector concluded about one metric on one local day, before it is an alert.

Detectors (``clinical``, ``baseline``) are pure and return ``Finding`` values; ``to_alert`` is
the one place a finding becomes a ``db.alerts.NewAlert``, so the dedupe key has one definition.
"""

from __future__ import annotations

__all__ = [
    "CATEGORIES",
    "Category",
    "Finding",
    "FindingDict",
    "KINDS",
    "Kind",
    "SEVERITY_RANK",
    "Severity",
    "as_date",
    "day_number",
    "dedupe_key",
    "to_alert",
]

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal, TypedDict, get_args

import numpy as np

from db.alerts import SEVERITIES, NewAlert

Kind = Literal["clinical", "statistical"]
Severity = Literal["info", "warning", "critical"]
Category = Literal["clinical", "statistical", "glycemic", "sync", "device"]

KINDS: tuple[Kind, ...] = get_args(Kind)
CATEGORIES: tuple[Category, ...] = get_args(Category)
# The order matters: a higher index is more severe (the alerts table has the same three).
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}


class FindingDict(TypedDict):
    metric: str
    day: str
    kind: Kind
    rule: str
    severity: Severity
    value: float
    baseline: float | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's conclusion.

    ``rule`` is a stable id ("rhr-high", "modified-z"); it is part of the dedupe key, so renaming
    one re-alerts every open condition.  ``rule_version`` changes when a rule's logic changes and
    is shown to the care team, but is not in the key.  ``value`` is what was observed (in the
    metric's unit, or a count/score for composite rules) and ``baseline`` the reference it was
    judged against: the threshold for a clinical rule, the personal median for a statistical one.
    """

    metric: str
    day: date
    kind: Kind
    rule: str
    rule_version: int
    severity: Severity
    category: Category
    value: float
    baseline: float | None
    title: str
    detail: str

    def __post_init__(self) -> None:
        # Literal types are not checked at run time; a typo here would reach the database.
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")

    @property
    def rank(self) -> int:
        """The severity as a number: 0 info, 1 warning, 2 critical."""
        return SEVERITY_RANK[self.severity]

    def as_dict(self) -> FindingDict:
        """The JSON shape (day as ISO date), for logs of ids and for API responses."""
        return {
            "metric": self.metric,
            "day": self.day.isoformat(),
            "kind": self.kind,
            "rule": self.rule,
            "severity": self.severity,
            "value": self.value,
            "baseline": self.baseline,
        }


def as_date(day: np.datetime64) -> date:
    """A ``datetime64`` day as a ``date``; raises ValueError for NaT."""
    found = day.astype("datetime64[D]").item()
    if not isinstance(found, date):
        raise ValueError(f"{day!r} is not a calendar day")
    return found


_EPOCH = date(1970, 1, 1).toordinal()


def day_number(day: date) -> int:
    """A day as days since 1970-01-01: ``DailySeries.day_numbers``' unit, and ``datetime64[D]``'s
    integer.  Date arithmetic in plain Python, where each numpy scalar conversion costs ~1 µs."""
    return day.toordinal() - _EPOCH


def dedupe_key(finding: Finding, user_id: int) -> str:
    """Unique per (rule, user, metric, local day): re-running a detector never alerts twice."""
    return f"{finding.rule}:{user_id}:{finding.metric}:{finding.day.isoformat()}"


def to_alert(finding: Finding, user_id: int) -> NewAlert:
    """The alert row for ``finding``.

    ``threshold`` carries ``finding.baseline``.  ``recorded_at`` is midnight UTC of the finding's
    *local* day: a finding is about a day, not an instant, and the day itself (not the time)
    is what the care team reads.
    """
    return NewAlert(
        user_id=user_id,
        category=finding.category,
        severity=finding.severity,
        metric=finding.metric,
        title=finding.title,
        body=f"{finding.detail} (rule {finding.rule} v{finding.rule_version}, {finding.day.isoformat()})",
        observed_value=finding.value,
        threshold=finding.baseline,
        recorded_at=datetime.combine(finding.day, time(0), tzinfo=UTC),
        dedupe_key=dedupe_key(finding, user_id),
        kind=finding.kind,
        rule=finding.rule,
        rule_version=finding.rule_version,
    )
