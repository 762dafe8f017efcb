"""``carebeacon analyze`` on CSV files: the published vectors through the same code path as the
actor, and clear errors for files it cannot use."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

CAREBEACON = str(Path(sys.executable).with_name("carebeacon"))
START = datetime(2026, 10, 1, 7, tzinfo=UTC)


def analyze(tmp_path: Path, rows: list[tuple[str, str, float]], *args: str) -> tuple[dict[str, Any], str]:
    path = tmp_path / "readings.csv"
    path.write_text("metric,recorded_at,value\n" + "".join(f"{m},{t},{v}\n" for m, t, v in rows))
    result = subprocess.run(
        [CAREBEACON, "analyze", "--input", str(path), "--json", *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def daily(metric: str, values: list[float]) -> list[tuple[str, str, float]]:
    return [(metric, (START + timedelta(days=i)).isoformat(), v) for i, v in enumerate(values)]


def test_gmi_of_a_steady_154_mg_dl_fortnight_is_7_0_percent(tmp_path: Path) -> None:
    rows = [("glucose", (START + timedelta(minutes=5 * i)).isoformat(), 154.0) for i in range(14 * 288)]

    body, _ = analyze(tmp_path, rows)

    cgm = body["cgm"]
    assert cgm["readings"] == 4032 and cgm["sufficient"] is True
    assert cgm["gmi"] == pytest.approx(6.99368, abs=1e-5) and round(cgm["gmi"], 1) == 7.0
    assert (cgm["tir"], cgm["tbr_70"], cgm["tar_180"]) == (100.0, 0.0, 0.0)


def test_a_resting_heart_rate_of_68_over_a_59_baseline_is_a_statistical_anomaly_with_m_6_07(tmp_path: Path) -> None:
    baseline = [58, 59, 57, 60, 58, 61, 59, 58, 60, 57, 59, 58, 60, 59]

    body, _ = analyze(tmp_path, daily("resting_heart_rate", [*baseline, 68]))

    found = [a for a in body["anomalies"] if a["kind"] == "statistical"]
    assert [(a["metric"], a["day"], a["value"], a["baseline"]) for a in found] == [
        ("resting_heart_rate", "2026-10-15", 68, 59)
    ]


@pytest.mark.parametrize(
    ("metric", "value", "rule"),
    [
        ("resting_heart_rate", 101, "rhr-high"),
        ("resting_heart_rate", 49, "rhr-low"),
        ("body_temperature", 38.0, "fever"),
        ("glucose", 53, "glucose-hypo-l2"),
        ("glucose", 251, "glucose-hyper-l2"),
    ],
)
def test_single_rule_vectors_fire_from_a_csv(tmp_path: Path, metric: str, value: float, rule: str) -> None:
    body, _ = analyze(tmp_path, daily(metric, [value]))

    assert [a["rule"] for a in body["anomalies"]] == [rule]


@pytest.mark.parametrize(
    ("metric", "value"), [("resting_heart_rate", 100), ("resting_heart_rate", 50), ("body_temperature", 37.9)]
)
def test_values_at_the_limit_do_not_fire(tmp_path: Path, metric: str, value: float) -> None:
    body, _ = analyze(tmp_path, daily(metric, [value]))

    assert body["anomalies"] == []


def test_spearman_iq_against_tv_hours_is_minus_0_1758(tmp_path: Path) -> None:
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]

    body, _ = analyze(tmp_path, daily("steps", iq) + daily("sleep_duration", tv), "--min-pairs", "10")

    same_day = [c for c in body["correlations"] if c["lag_days"] == 0]
    assert len(same_day) == 1 and same_day[0]["n"] == 10
    assert same_day[0]["spearman"] == pytest.approx(-0.175758, abs=1e-6)
    assert same_day[0]["p"] == pytest.approx(0.6272, abs=1e-4)


def test_every_key_the_analysts_rely_on_is_there(tmp_path: Path) -> None:
    body, _ = analyze(tmp_path, daily("resting_heart_rate", [60, 61]))

    assert set(body) == {"cgm", "daily", "scores", "anomalies", "correlations"}
    assert body["daily"][0] == {
        "metric": "resting_heart_rate",
        "day": "2026-10-01",
        "avg": 60.0,
        "min": 60.0,
        "max": 60.0,
        "count": 1,
        "avg_7d": 60.0,
        "avg_30d": 60.0,
    }
    assert body["scores"]["cardio"]["value"] == 97.5 and body["scores"]["overall"]["value"] is None


def test_unusable_rows_are_skipped_and_counted_and_the_rest_analysed(tmp_path: Path) -> None:
    rows = [*daily("resting_heart_rate", [60]), ("mood", START.isoformat(), 3), ("spo2", "yesterday", 97)]

    body, stderr = analyze(tmp_path, rows)

    assert "skipped 2 row(s); analysed 1" in stderr
    assert "line 3: unknown metric 'mood'" in stderr and "line 4: unreadable timestamp or value" in stderr
    assert len(body["daily"]) == 1


def test_a_file_with_no_usable_reading_gives_an_empty_analysis(tmp_path: Path) -> None:
    body, stderr = analyze(tmp_path, [("mood", START.isoformat(), 3)])

    assert "skipped 1 row(s); analysed 0" in stderr
    assert body == {"cgm": None, "daily": [], "scores": {}, "anomalies": [], "correlations": []}


@pytest.mark.parametrize(
    ("content", "args", "says"),
    [
        ("when,value\n", [], "the CSV header lacks metric, recorded_at"),
        ("metric,recorded_at,value\n", ["--timezone", "Mars/Olympus"], "is not an IANA time zone"),
        ("metric,recorded_at,value\n", ["--min-pairs", "2"], "--min-pairs must be at least 4"),
    ],
)
def test_a_file_that_cannot_be_analysed_is_a_clear_error(
    tmp_path: Path, content: str, args: list[str], says: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)

    result = subprocess.run([CAREBEACON, "analyze", "--input", str(path), *args], capture_output=True, text=True)

    assert result.returncode == 2
    assert says in result.stderr


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [CAREBEACON, "analyze", "--input", str(tmp_path / "nope.csv")], capture_output=True, text=True
    )

    assert result.returncode == 2 and "cannot read" in result.stderr
