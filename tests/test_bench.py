"""The benches still run: their quick mode, end to end, on a real server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import all as bench_all
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
    # The actor's writes are counted, and its one-run-a-message path is measured beside the batches.
    assert re.search(r"^store\s+\d+\.\d+ s across workers", result.stdout, re.M)
    single = r"^one a call, 10 more users: fetch \d+\.\d+, analyse \d+\.\d+, store \d+\.\d+ ms/user$"
    assert re.search(single, result.stdout, re.M)
    found = bench_all.parse_result(result.stdout)
    assert found is not None and found["bench"] == "analytics" and len(found["rows"]) == 4


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


# A Redis database of the fan-out bench's own (see tests/conftest.py for the numbers taken).
FANOUT_REDIS_DB = 14


@pytest.mark.timeout(120)
def test_the_fanout_bench_delivers_through_real_workers_and_prints_the_ratio_to_apprise(servers: Servers) -> None:
    result = subprocess.run(
        [sys.executable, "bench/fanout.py", "--quick", "--database-url", servers.database_url,
         "--redis-url", servers.redis(FANOUT_REDIS_DB)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"^apprise\s+300 in .*; failed 0, missing 0, duplicates 0$", result.stdout, re.M)
    assert re.search(r"^ours -p 1 300 in .* \d+\.\d+x Apprise ", result.stdout, re.M)
    assert re.search(r"^\s+lost 0: .*; log rows: delivered 300$", result.stdout, re.M)
    assert re.search(r"^target\s+(PASS|MISS) ours ≥ 1,000 deliveries/s", result.stdout, re.M)
    found = bench_all.parse_result(result.stdout)
    assert found is not None and found["bench"] == "fanout" and found["rows"][-1]["result"] == "PASS"


# The admin bench only reads the broker's keys (the Queues page), in a database number of its own.
ADMIN_REDIS_DB = 12


@pytest.mark.timeout(300)
def test_the_admin_bench_times_every_console_page_against_its_target(servers: Servers) -> None:
    result = subprocess.run(
        [sys.executable, "bench/admin.py", "--quick", "--database-url", servers.database_url,
         "--redis-url", servers.redis(ADMIN_REDIS_DB)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"^data\s+10,000 metric rows, 1,000 sync runs", result.stdout, re.M)
    verdicts = re.findall(
        r"^(\w[\w ,+]*?)\s+\d+\.\d ms\s+\d+\.\d ms\s+300 ms\s+\d+\.\d\dx\s+(PASS|MISS)$", result.stdout, re.M
    )
    assert [page for page, _ in verdicts][:2] == ["queues", "sync runs"] and len(verdicts) == 12
    assert re.search(r"^overall\s+every page p95 < 300 ms: (PASS|MISS)$", result.stdout, re.M)


# The slash bench's app holds a broker (for /readyz and /sync): a Redis database number of its own.
SLASH_REDIS_DB = 11


@pytest.mark.timeout(120)
def test_the_slash_bench_acks_signed_commands_open_loop_beside_a_bare_bolt_app(servers: Servers) -> None:
    result = subprocess.run(
        [sys.executable, "bench/slash.py", "--quick", "--database-url", servers.database_url,
         "--redis-url", servers.redis(SLASH_REDIS_DB)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"^load\s+/help at 50/s for 3 s per phase, open loop \(150 requests;", result.stdout, re.M)
    latencies = r"\s+(?:\d+\.\d ms\s+){3}\d+ ms\s+"
    assert re.search(rf"^bare idle{latencies}0\s+load ", result.stdout, re.M)
    # Every signed command was acked in time, and every one was answered (in its ack, when idle).
    assert re.search(rf"^ours idle{latencies}0\s+load .*; answered 150/150 \(\d+ in the ack\);", result.stdout, re.M)
    assert re.search(r"^ratio\s+ours/bare p99 idle: \d+\.\d\dx", result.stdout, re.M)
    assert len(re.findall(r"^target\s+(PASS|MISS) ", result.stdout, re.M)) == 3
    found = bench_all.parse_result(result.stdout)
    # The idle phases only: the ack latencies, the p99 ratio, and the errors (none).
    assert found is not None and found["bench"] == "slash" and len(found["rows"]) == 3
    assert found["rows"][-1]["ours"] == "0"


# The end-to-end bench's workers take a Redis database number of their own.
E2E_REDIS_DB = 15


@pytest.mark.timeout(120)
def test_the_e2e_bench_runs_the_pipeline_and_its_ceiling_through_the_procfile_workers(servers: Servers) -> None:
    result = subprocess.run(
        [sys.executable, "bench/e2e.py", "--quick", "--database-url", servers.database_url,
         "--redis-url", servers.redis(E2E_REDIS_DB)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"^layout\s+Procfile, one process each: sync -t 5, .*analytics -t 3", result.stdout, re.M)
    for phase in ("pipeline", "ceiling"):
        phase_line = rf"^{phase}\s+[\d,]+ users in \d+ round\(s\) of 50, .* users/min; .* p95 "
        assert re.search(phase_line, result.stdout, re.M)
    # Every run analysed, every warning delivered once, in both phases.
    # Both phases raised the injected anomaly's alerts and delivered them, whatever the hour.
    delivered = re.findall(r"^\s+alerts [\d,]+ .*, delivered ([\d,]+); lost 0: ", result.stdout, re.M)
    assert len(delivered) == 2 and all(int(n.replace(",", "")) > 0 for n in delivered)
    sink = r"^sink\s+console file: 0 delivered alert\(s\) missing, 0 duplicate line\(s\)$"
    assert re.search(sink, result.stdout, re.M)
    assert re.search(r"^ratio\s+pipeline / ceiling = \d+\.\d\d$", result.stdout, re.M)
    assert len(re.findall(r"^target\s+(PASS|MISS) ", result.stdout, re.M)) == 2
    found = bench_all.parse_result(result.stdout)
    assert found is not None and found["bench"] == "e2e" and len(found["rows"]) == 4


# The front-door bench's web process and sync worker take a Redis database number of their own.
FRONTDOOR_REDIS_DB = 7


@pytest.mark.timeout(180)
def test_the_frontdoor_bench_loads_ingest_and_whoop_pushes_open_loop_and_finds_every_reading_stored(
    servers: Servers,
) -> None:
    result = subprocess.run(
        [sys.executable, "bench/frontdoor.py", "--quick", "--database-url", servers.database_url,
         "--redis-url", servers.redis(FRONTDOOR_REDIS_DB)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"^load\s+50/s for 3 s per phase, open loop \(150 requests;", result.stdout, re.M)
    latencies = r"\s+(?:\d+\.\d ms\s+){3}\d+ ms\s+"
    for phase in ("bare", "ingest", "webhook"):
        assert re.search(rf"^{phase}{latencies}0\s+load ", result.stdout, re.M), phase
    assert len(re.findall(r"^ratio\s+(ingest|webhook)/bare p99: \d+\.\d\dx", result.stdout, re.M)) == 2
    assert re.search(r"^throughput ingest: \d+ batches/s stored \(caught up \d+ s after the phase\), 50/s offered$",
                     result.stdout, re.M)  # fmt: skip
    # 200 batches of 10 (warm-up included), each reading a row of its own; every pushed account's
    # week of recoveries (4 readings a day) stored by the sync worker, no sync run failed.
    assert re.search(r"^stored\s+ingest: 2,000 rows of 2,000 readings accepted in 200 answers", result.stdout, re.M)
    stored = r"^stored\s+whoop: 1,400 rows of 1,400 expected \(50 accounts pushed, 0 short\); sync runs: (.*);"
    whoop = re.search(stored, result.stdout, re.M)
    assert whoop is not None and "failed" not in whoop.group(1), result.stdout
    assert re.search(r"^target\s+PASS every accepted reading stored \(lost 0\)$", result.stdout, re.M)
    found = bench_all.parse_result(result.stdout)
    assert found is not None and found["bench"] == "frontdoor" and len(found["rows"]) == 5


def canned_run(name: str, stdout: str, returncode: int = 0) -> bench_all.Run:
    return bench_all.Run(name, [sys.executable, f"bench/{name}.py", "--quick"], returncode, 12.3, stdout,
                         bench_all.parse_result(stdout) if returncode == 0 else None)  # fmt: skip


def test_bench_all_renders_one_table_per_bench_from_result_lines_and_reports_the_ones_without() -> None:
    measured = {
        "bench": "upsert", "title": "Idempotent metric upsert", "date": "2026-11-22 14:00 UTC",
        "machine": "nproc 2, a CPU", "size": "21,600 rows", "notes": ["a note"],
        "rows": [{"case": "first load", "baseline": "0.64 s", "ours": "0.41 s", "ratio": "1.58x",
                  "target": "≥ 1x", "result": "PASS"},
                 {"case": "a | pipe", "baseline": "", "ours": "1", "ratio": "", "target": "", "result": "MISS"}],
    }  # fmt: skip
    runs = [
        canned_run("upsert", "some output\nRESULT " + json.dumps(measured) + "\n"),
        canned_run("fanout", "ours -p 1 300 in 1.0 s\n"),
        canned_run("slash", "Traceback: boom\n", returncode=1),
    ]
    doc = bench_all.render(runs, quick=True, now=datetime(2026, 11, 22, 15, tzinfo=UTC))
    assert doc.startswith("# Benchmarks\n") and "> **Quick run:**" in doc and "2026-11-22 15:00 UTC" in doc
    assert "| [Idempotent metric upsert](#idempotent-metric-upsert) | 1 of 2 met | 12 s |" in doc
    assert doc.count("| not measured |") == 2
    assert "| Case | Baseline | Ours | Ratio | Target | Result |" in doc
    assert "| first load | 0.64 s | 0.41 s | 1.58x | ≥ 1x | **PASS** |" in doc
    assert "| a \\| pipe | – | 1 | – | – | **MISS** |" in doc
    assert "**Machine.** nproc 2, a CPU." in doc and "- a note" in doc
    # The method comes from the bench's docstring, without the paragraph on servers.
    assert "Baseline is what the seed did" in doc and "CAREBEACON_BENCH_DATABASE_URL" not in doc
    assert "`bench/fanout.py` printed no RESULT line" in doc and "ours -p 1 300 in 1.0 s" in doc
    assert "`bench/slash.py` failed (exit status 1)" in doc and "Traceback: boom" in doc
    assert "**How to reproduce:** `.venv/bin/python bench/upsert.py [--quick]" in doc


def test_bench_all_keep_others_replaces_only_the_sections_of_the_benches_run() -> None:
    measured = {"bench": "upsert", "title": "Idempotent metric upsert", "rows": [{"case": "new figure"}]}
    existing = (
        "# Benchmarks\n\nWritten by hand.\n\n## Idempotent metric upsert\n\nold figure\n\n"
        "## Bulk ingest\n\nkept as it was\n"
    )
    merged = bench_all.merge(existing, [canned_run("upsert", "RESULT " + json.dumps(measured))])
    assert merged.startswith("# Benchmarks\n\nWritten by hand.\n\n## Idempotent metric upsert\n")
    assert "| new figure |" in merged and "old figure" not in merged
    assert merged.count("## Idempotent metric upsert") == 1 and merged.endswith("## Bulk ingest\n\nkept as it was\n")
    added = bench_all.merge(existing, [canned_run("fanout", "no result\n")])
    assert "old figure" in added and added.rstrip().splitlines()[-1].startswith("**How to reproduce:**")
    assert "`bench/fanout.py` printed no RESULT line" in added


@pytest.mark.timeout(120)
def test_bench_all_runs_the_benches_it_is_given_and_writes_the_document_where_told(
    servers: Servers, tmp_path: Path
) -> None:
    out = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "bench/all.py", "--quick", "--only", "upsert", "--out", str(out),
         "--database-url", servers.database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = out.read_text()
    assert "## Idempotent metric upsert" in doc and "| stale rows after the 10%-changed replay | 2,160 | 0 |" in doc
    assert "## E2E throughput" not in doc


@pytest.mark.timeout(300)
def test_the_apple_health_bench_imports_an_export_and_measures_it_beside_a_full_elementtree_parse(
    servers: Servers,
) -> None:
    result = subprocess.run(
        [sys.executable, "bench/apple_health.py", "--quick", "--database-url", servers.database_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^export\s+export\.xml \d+\.\d MiB .*, [\d,]+ records over 85 days", result.stdout, re.M)
    assert re.search(r"^ours\s+peak RSS [\d,.]+ MiB .*; ([\d,]+) received, \1 stored, 0 invalid", result.stdout, re.M)
    assert re.search(r"^baseline\s+ElementTree\.parse peak RSS [\d,.]+ MiB", result.stdout, re.M)
    assert re.search(r"^target\s+(PASS|MISS) peak RSS ≤ 256 MiB", result.stdout, re.M)
    found = bench_all.parse_result(result.stdout)
    assert found is not None and found["bench"] == "apple_health" and len(found["rows"]) == 4
