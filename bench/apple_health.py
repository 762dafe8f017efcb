"""Bench: Apple Health import memory, against a full ElementTree parse of the same export.

    .venv/bin/python bench/apple_health.py [--quick] [--mb N] [--database-url URL]

An export.zip is generated on disk, streaming (never whole in memory): the HealthKit DTD, then
85 days of a Watch wearer's records, heart rate every few seconds (sized to reach ``--mb``
megabytes of export.xml, 200 by default), step and energy samples from the iPhone and the Watch
every 10 minutes, a night of sleep stages, a workout every other day, and daily resting heart
rate, HRV, SpO2, respiratory rate and weight.  Every record lies inside the import window, so
every one is parsed, converted and stored.

Ours is the real path, in a child process of its own: an ``import`` sync run of an
``apple_health`` connection (``pipeline.sync.run_sync``: the provider streams export.xml out of
the zip through expat a MiB at a time, batches of 1,000 are upserted into PostgreSQL).  The
figure is that process's peak RSS (``ru_maxrss``), beside its RSS when idle after its imports
(the interpreter, numpy, asyncpg) and the export's size; rows/s is readings and sessions stored
per second of the run.  The baseline, in another child process of the same run, is what a naive
importer does first: ``xml.etree.ElementTree.parse`` of the same export.xml out of the same zip,
its peak RSS measured the same way (it stores nothing, so its figure is a floor).

PostgreSQL comes from ``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, else from the embedded
server in a temporary directory.  The run happens in a fresh ``cb_bench_<hex>`` database that is
dropped at the end; the export is written to a temporary directory and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# `python bench/apple_health.py` puts bench/ on sys.path, not the checkout: add the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import postgres  # noqa: E402

from db import connections, sync_runs, tenants  # noqa: E402
from db import pool as db_pool  # noqa: E402
from db.migrate import migrate  # noqa: E402
from db.sealing import KEYS_VARIABLE as KEYS  # noqa: E402
from db.sealing import Keyring  # noqa: E402
from tests.fakes.apple_health import DTD  # noqa: E402

MEMBER = "apple_health_export/export.xml"
DAYS = 85
FULL_MB, QUICK_MB = 200, 4
# The peak RSS a bounded import must stay under, whatever the export's size.
TARGET_MB = 256
MB = 1024**2
NOTES = [
    "Peak RSS is the whole importing process: the interpreter and its imports (the idle row), the parse"
    " of one MiB of XML and the sync's batches of 1,000. It barely moves between the small export and"
    " the large one; ElementTree's grows with the file.",
    "The generated export repeats itself, so it zips far better than a real one. The import reads the"
    " zip as a stream, so its memory does not depend on how well the file compressed.",
]

HEAD = (
    DTD
    + """<HealthData locale="en_US">
 <ExportDate value="{now}"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1980-04-02"
  HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>
"""
)
DEVICE = (
    "&lt;&lt;HKDevice: 0x283f2c1e0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,2&gt;"
)
Q = "HKQuantityTypeIdentifier"
RECORD = (
    ' <Record type="{type}" sourceName="{source}" sourceVersion="10.1" device="' + DEVICE + '" unit="{unit}"'
    ' creationDate="{end}" startDate="{start}" endDate="{end}" value="{value}"/>\n'
)
HEART_RATE = (
    f' <Record type="{Q}HeartRate" sourceName="Apple Watch" sourceVersion="10.1" device="{DEVICE}"'
    ' unit="count/min" creationDate="{at}" startDate="{at}" endDate="{at}" value="{value}">\n'
    '  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>\n </Record>\n'
)
ZONE = "+0100"
HR_BYTES = len(HEART_RATE.format(at="2026-01-01 00:00:00 +0100", value="72"))


def stamp(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} {ZONE}"


def day_records(day: datetime, hr_every: int, index: int) -> str:
    """One day of the export as text; ``day`` is local midnight (naive, +01:00 implied)."""
    parts: list[str] = []
    for second in range(0, 86_400, hr_every):
        at = day + timedelta(seconds=second)
        parts.append(HEART_RATE.format(at=stamp(at), value=58 + (second // hr_every + index) % 60))
    for slot in range(8 * 6, 22 * 6):  # 08:00 to 22:00, every 10 minutes
        start, end = day + timedelta(minutes=10 * slot), day + timedelta(minutes=10 * slot + 9)
        for source in ("iPhone", "Apple Watch"):
            parts.append(RECORD.format(type=Q + "StepCount", source=source, unit="count",
                                       start=stamp(start), end=stamp(end), value=40 + slot % 90))  # fmt: skip
        parts.append(RECORD.format(type=Q + "ActiveEnergyBurned", source="Apple Watch", unit="kJ",
                                   start=stamp(start), end=stamp(end), value=f"{20 + slot % 30}.5"))  # fmt: skip
    bed = day - timedelta(minutes=70)  # the night before, 22:50
    for stage, minutes in (
        ("AsleepCore", 95),
        ("AsleepDeep", 55),
        ("Awake", 6),
        ("AsleepREM", 50),
        ("AsleepCore", 230),
    ):
        parts.append(RECORD.format(type="HKCategoryTypeIdentifierSleepAnalysis", source="Apple Watch", unit="",
                                   start=stamp(bed), end=stamp(bed + timedelta(minutes=minutes)),
                                   value=f"HKCategoryValueSleepAnalysis{stage}").replace(' unit=""', ""))  # fmt: skip
        bed += timedelta(minutes=minutes)
    morning = stamp(day + timedelta(hours=7, minutes=30))
    for kind, unit, value in (("RestingHeartRate", "count/min", 55 + index % 7), ("HeartRateVariabilitySDNN", "ms", 48),
                              ("OxygenSaturation", "%", "0.97"), ("RespiratoryRate", "count/min", "14.5"),
                              ("BodyMass", "lb", "154.3")):  # fmt: skip
        parts.append(RECORD.format(type=Q + kind, source="Apple Watch", unit=unit, start=morning, end=morning,
                                   value=value))  # fmt: skip
    if index % 2 == 0:
        start, end = stamp(day + timedelta(hours=18)), stamp(day + timedelta(hours=18, minutes=40))
        span = f'startDate="{start}" endDate="{end}"'
        parts.append(
            f' <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="40" durationUnit="min"'
            f' sourceName="Apple Watch" sourceVersion="10.1" creationDate="{end}" {span}>\n'
            f'  <WorkoutStatistics type="{Q}ActiveEnergyBurned" {span} sum="410" unit="kcal"/>\n'
            f'  <WorkoutStatistics type="{Q}DistanceWalkingRunning" {span} sum="7.1" unit="km"/>\n'
            " </Workout>\n"
        )
    return "".join(parts)


def generate(path: Path, megabytes: int) -> int:
    """Write an export.zip whose export.xml is at least ``megabytes`` MiB; returns that size."""
    # Heart rate fills the size: the other records of a day come to about 100 kB.
    per_day = megabytes * MB / DAYS - 100_000
    hr_every = max(1, int(86_400 * HR_BYTES / max(per_day, HR_BYTES)))
    today = datetime.now(UTC).astimezone().replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    written = 0
    archive = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
    with archive, archive.open(MEMBER, "w", force_zip64=True) as out:
        head = HEAD.format(now=stamp(today)).encode()
        out.write(head)
        written += len(head)
        index = 0
        # Days counted back from yesterday, so every record is in the past; more if still short.
        while written < megabytes * MB or index < DAYS:
            chunk = day_records(today - timedelta(days=DAYS - index % DAYS), hr_every, index).encode()
            out.write(chunk)
            written += len(chunk)
            index += 1
            if index % DAYS == 0 and written < megabytes * MB:
                hr_every = max(1, hr_every // 2)  # rare: denser heart rate on a second pass
        out.write(b"</HealthData>\n")
        written += len(b"</HealthData>\n")
    return written


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# -- the two child processes ---------------------------------------------------------------------


def child_baseline(zip_path: str) -> None:
    """A naive importer's first step: the whole tree in memory."""
    import xml.etree.ElementTree as ET

    idle = peak_rss_mb()
    began = time.monotonic()
    with zipfile.ZipFile(zip_path) as archive, archive.open(MEMBER) as xml:
        tree = ET.parse(xml)
    records = sum(1 for _ in tree.getroot().iter("Record"))
    print(json.dumps({"idle_mb": idle, "peak_mb": peak_rss_mb(), "seconds": time.monotonic() - began,
                      "records": records}))  # fmt: skip


async def child_import(zip_path: str, database_url: str, connection_id: int) -> None:
    """Ours: one import run of the connection, exactly as the sync worker runs it."""
    from pipeline.providers import PROVIDERS
    from pipeline.providers.apple_health import AppleHealth
    from pipeline.settings import PipelineSettings
    from pipeline.sync import run_sync

    PROVIDERS["apple_health"] = AppleHealth(Path(zip_path).parent)
    pool = await db_pool.create_pool(database_url, max_size=2)
    try:
        async with pool.acquire() as conn:
            run_id = await sync_runs.create(conn, connection_id, "import")
        idle = peak_rss_mb()
        began = time.monotonic()
        keyring = Keyring.parse(os.environ[KEYS])
        outcome = await run_sync(pool, keyring, PipelineSettings(redis_url=None), run_id)
        seconds = time.monotonic() - began
    finally:
        await pool.close()
    assert outcome is not None and outcome.status == "completed", outcome
    print(json.dumps({"idle_mb": idle, "peak_mb": peak_rss_mb(), "seconds": seconds, "received": outcome.received,
                      "written": outcome.counts.written, "invalid": outcome.invalid}))  # fmt: skip


def in_child(*args: str, keys: str = "") -> dict[str, float]:
    # The sealing key travels in the environment, never on a command line others can read.
    env = os.environ | {KEYS: keys}
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


# -- the run ------------------------------------------------------------------------------------


async def measure(server_url: str, args: argparse.Namespace) -> str:
    name = f"cb_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    database_url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    keys = Keyring.new_entry("bench")
    try:
        with tempfile.TemporaryDirectory(prefix="cb-apple-") as scratch:
            zip_path, small_path = Path(scratch) / "export.zip", Path(scratch) / "small.zip"
            began = time.monotonic()
            xml_bytes = generate(zip_path, args.mb)
            generated = time.monotonic() - began
            small_bytes = generate(small_path, QUICK_MB)
            conn = await db_pool.connect(database_url)
            try:
                await migrate(conn)
                version = await conn.fetchval("SHOW server_version")
                tenant_id = await tenants.ensure_tenant(conn, "bench", "Bench")
                ids = []
                for path in (zip_path, small_path):
                    user_id = await tenants.ensure_user(conn, tenant_id, path.stem, "Apple Bench")
                    ids.append(await connections.upsert(
                        conn, Keyring.parse(keys), user_id=user_id, provider="apple_health", tokens={},
                        settings={"export": path.name},
                    ))  # fmt: skip
            finally:
                await conn.close()
            ours = in_child("--child-import", str(zip_path), database_url, str(ids[0]), keys=keys)
            base = in_child("--child-baseline", str(zip_path))
            # The same import of an export 1/50 the size: a bounded import peaks at the same RSS.
            small = in_child("--child-import", str(small_path), database_url, str(ids[1]), keys=keys)
            small["xml_mb"] = small_bytes / MB
            zip_bytes = zip_path.stat().st_size
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    return report(args, version, xml_bytes, zip_bytes, generated, ours, base, small)


def report(
    args: argparse.Namespace,
    version: str,
    xml_bytes: int,
    zip_bytes: int,
    generated: float,
    ours: dict[str, float],
    base: dict[str, float],
    small: dict[str, float],
) -> str:
    rate = ours["written"] / ours["seconds"]
    verdict = "PASS" if ours["peak_mb"] <= TARGET_MB else "MISS"
    lines = [
        f"date      {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine   nproc {os.cpu_count()}, {platform.processor() or platform.machine()},"
        f" load average {os.getloadavg()[0]:.2f}",
        f"software  Python {platform.python_version()}, PostgreSQL {version}",
        f"export    export.xml {xml_bytes / MB:,.1f} MiB ({zip_bytes / MB:,.1f} MiB zipped), {base['records']:,.0f}"
        f" records over {DAYS} days; generated in {generated:.1f} s",
        f"ours      peak RSS {ours['peak_mb']:,.1f} MiB (idle {ours['idle_mb']:,.1f} MiB); {ours['received']:,.0f}"
        f" received, {ours['written']:,.0f} stored, {ours['invalid']:,.0f} invalid in {ours['seconds']:.1f} s"
        f" = {rate:,.0f} rows/s",
        f"baseline  ElementTree.parse peak RSS {base['peak_mb']:,.1f} MiB (idle {base['idle_mb']:,.1f} MiB)"
        f" in {base['seconds']:.1f} s",
        f"small     peak RSS {small['peak_mb']:,.1f} MiB importing a {small['xml_mb']:,.1f} MiB export.xml"
        f" ({small['written']:,.0f} stored)",
        f"ratio     baseline/ours peak RSS = {base['peak_mb'] / ours['peak_mb']:.1f}x;"
        f" ours = {ours['peak_mb'] * MB / xml_bytes:.2f}x the export.xml size",
        f"target    {verdict} peak RSS ≤ {TARGET_MB} MiB for a {xml_bytes / MB:,.0f} MiB export",
    ]
    rows = [
        {"case": f"peak RSS, {xml_bytes / MB:,.0f} MiB export.xml", "baseline": f"{base['peak_mb']:,.0f} MiB",
         "ours": f"{ours['peak_mb']:,.0f} MiB", "ratio": f"{base['peak_mb'] / ours['peak_mb']:.1f}x",
         "target": f"≤ {TARGET_MB} MiB", "result": verdict},
        {"case": f"peak RSS, {small['xml_mb']:,.0f} MiB export.xml", "baseline": "",
         "ours": f"{small['peak_mb']:,.0f} MiB", "ratio": "", "target": "", "result": ""},
        {"case": "RSS of the idle process", "baseline": f"{base['idle_mb']:,.0f} MiB",
         "ours": f"{ours['idle_mb']:,.0f} MiB", "ratio": "", "target": "", "result": ""},
        {"case": "import throughput (stored rows/s)", "baseline": "", "ours": f"{rate:,.0f} rows/s",
         "ratio": "", "target": "none set", "result": ""},
    ]  # fmt: skip
    result = {
        "bench": "apple_health",
        "title": "Apple Health import memory",
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; PostgreSQL {version}",
        "size": f"export.xml {xml_bytes / MB:,.0f} MiB ({zip_bytes / MB:,.0f} MiB zipped), {base['records']:,.0f}"
        f" records; {ours['written']:,.0f} readings and sessions stored",
        "rows": rows,
        "notes": NOTES,
    }
    return "\n".join([*lines, "RESULT " + json.dumps(result, ensure_ascii=False)])


async def main(args: argparse.Namespace) -> None:
    with postgres(args.database_url) as url:
        print(await measure(url, args))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--database-url", help="an existing server (needs CREATE DATABASE); default: embedded")
    add("--mb", type=int, help=f"export.xml size in MiB (default {FULL_MB}, {QUICK_MB} with --quick)")
    add("--quick", action="store_true", help="a small run that checks the bench still works")
    args = parser.parse_args(argv)
    args.mb = args.mb or (QUICK_MB if args.quick else FULL_MB)
    return args


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-baseline":
        child_baseline(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-import":
        asyncio.run(child_import(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        asyncio.run(main(parse()))
