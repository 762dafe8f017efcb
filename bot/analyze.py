"""``carebeacon analyze``: every analytics engine on a CSV of readings, no database needed.

Columns: ``metric,recorded_at,value[,unit]`` in the canonical vocabulary (glucose in mg/dL).
A timestamp without an offset is read as local time in ``--timezone``.  Rows that cannot be
used are skipped and counted on standard error; the rest are analysed.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from db.metrics import Reading
from pipeline.analytics.analysis import analyse
from pipeline.vocabulary import UNITS, problem

REQUIRED = ("metric", "recorded_at", "value")


class InputError(Exception):
    """The file as a whole cannot be analysed (missing, no header, bad zone)."""


@dataclass(frozen=True, slots=True)
class Parsed:
    readings: list[Reading]
    skipped: list[str]


def parse_csv(handle: TextIO, timezone: str) -> Parsed:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"--timezone: {timezone!r} is not an IANA time zone") from None
    reader = csv.DictReader(handle)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"the CSV header lacks {', '.join(missing)} (expected metric,recorded_at,value[,unit])")
    readings: list[Reading] = []
    skipped: list[str] = []
    for line, row in enumerate(reader, start=2):
        try:
            at = datetime.fromisoformat(row["recorded_at"].strip())
            reading = Reading(
                row["metric"].strip(),
                at if at.tzinfo else at.replace(tzinfo=zone),
                float(row["value"]),
                (row.get("unit") or "").strip() or UNITS.get(row["metric"].strip(), ""),
            )
        except (ValueError, TypeError, AttributeError):
            skipped.append(f"line {line}: unreadable timestamp or value")
            continue
        reason = problem(reading, datetime.min.replace(tzinfo=zone), datetime.max.replace(tzinfo=zone))
        if reason is not None:
            skipped.append(f"line {line}: {reason}")
            continue
        readings.append(reading)
    return Parsed(readings, skipped)


def run(
    path: Path,
    timezone: str,
    age: int | None,
    min_pairs: int = 14,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    try:
        with path.open(newline="") as handle:
            parsed = parse_csv(handle, timezone)
    except OSError as exc:
        print(f"carebeacon analyze: cannot read {path}: {exc.strerror}", file=err)
        return 2
    except InputError as exc:
        print(f"carebeacon analyze: {exc}", file=err)
        return 2
    for reason in _first(parsed.skipped, 20):
        print(f"skipped {reason}", file=err)
    if parsed.skipped:
        print(f"skipped {len(parsed.skipped)} row(s); analysed {len(parsed.readings)}", file=err)
    first_day = min((r.recorded_at.astimezone(ZoneInfo(timezone)).date() for r in parsed.readings), default=None)
    result = analyse(parsed.readings, timezone, check_from=first_day, age=age, min_pairs=min_pairs)
    body: dict[str, Any] = (
        result.as_json() if result else {"cgm": None, "daily": [], "scores": {}, "anomalies": [], "correlations": []}
    )
    json.dump(body, out, indent=2, default=str)
    out.write("\n")
    return 0


def _first(items: Iterable[str], count: int) -> list[str]:
    return list(items)[:count]
