"""The benches still run: their quick mode, end to end, on a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Servers

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_the_upsert_bench_runs_its_baseline_and_prints_the_ratio(servers: Servers) -> None:
    result = subprocess.run(
        [sys.executable, "bench/upsert.py", "--quick", "--database-url", servers.database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ratios = re.findall(
        r"^(first load|replay, unchanged|replay, 10% changed)\s+ours\s.*\s(\d+\.\d+)x\s", result.stdout, re.M
    )
    assert [scenario for scenario, _ in ratios] == ["first load", "replay, unchanged", "replay, 10% changed"]
    assert re.search(r"stale after the 10%-changed replay: baseline 2,160 of 2,160 .*; ours 0$", result.stdout, re.M)


@pytest.mark.timeout(300)
def test_the_analytics_bench_measures_ours_beside_per_user_spearmanr(servers: Servers) -> None:
    result = subprocess.run(
        [sys.executable, "bench/analytics.py", "--quick", "--database-url", servers.database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^data\s+50 users × 30 metrics × 90 days", result.stdout, re.M)
    assert re.search(r"^ratio\s+analyse / per-user spearmanr = \d+\.\d+x", result.stdout, re.M)
    assert re.search(r"^total\s+.* \(target ≤ 30 s\): (PASS|MISS)$", result.stdout, re.M)


@pytest.mark.timeout(300)
def test_the_ingest_bench_runs_the_seed_the_ceiling_and_ours_and_judges_each_target(servers: Servers) -> None:
    result = subprocess.run(
        [sys.executable, "bench/ingest.py", "--quick", "--database-url", servers.database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^first load\s+ours\s+.*\d+\.\d+x", result.stdout, re.M)
    assert len(re.findall(r"^\s+(PASS|MISS)\s+ours", result.stdout, re.M)) == 4
