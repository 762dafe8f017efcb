"""Run every bench in bench/ and write docs/benchmarks.md from what they measured, in one run.

    .venv/bin/python bench/all.py [--quick] [--only NAME,...] [--keep-others] [--out PATH]
        [--database-url URL] [--redis-url URL]

Each bench runs as a subprocess, one after the other (they would skew each other), at its
default size, or its ``--quick`` size with ``--quick`` (a smoke run: the document then says so at
the top).  A bench ends its output with one line ``RESULT {json}``:

    {"bench": "upsert", "title": "Idempotent metric upsert", "date": "2026-11-22 14:00 UTC",
     "machine": "nproc 2, …", "size": "270,000 rows …",
     "rows": [{"case": …, "baseline": …, "ours": …, "ratio": …, "target": …, "result": "PASS"}]}

All values are display strings; an optional "notes" list adds bullets.  The document gets one
section per bench: the method (the paragraphs of the bench's docstring after its usage line, up to
where its servers come from), the table of rows, the date, the size, the machine, and how to
reproduce (the docstring's usage line and the exact command run here).  A bench that fails, or
prints no RESULT line, gets its exit status and the tail of its output instead, so one broken
bench never hides the others.  With ``--keep-others`` only the sections of the benches run are
replaced (or added at the end) in the existing document, and the rest of it is kept.

PostgreSQL comes from ``--database-url`` or CAREBEACON_BENCH_DATABASE_URL, and Redis from
``--redis-url`` or CAREBEACON_BENCH_REDIS_URL (a database number of the benches' own); each is
passed on to every bench that takes it, and a bench without one starts its embedded server.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# The order they run in: the short ones first, so a broken setup shows early.
BENCHES = ("upsert", "ingest", "analytics", "apple_health", "admin", "fanout", "slash", "frontdoor", "e2e")
TAKES_REDIS = frozenset({"admin", "fanout", "slash", "frontdoor", "e2e"})
COLUMNS = ("case", "baseline", "ours", "ratio", "target", "result")
HEADINGS = ("Case", "Baseline", "Ours", "Ratio", "Target", "Result")
TAIL_LINES = 25

Result = dict[str, Any]


@dataclass(frozen=True)
class Run:
    name: str
    command: list[str]
    returncode: int
    seconds: float
    output: str  # stdout, then stderr
    result: Result | None


def parse_result(stdout: str) -> Result | None:
    """The last ``RESULT {json}`` line of a bench's output, or None (none, or not valid JSON)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            try:
                found = json.loads(line.removeprefix("RESULT "))
            except json.JSONDecodeError:
                return None
            return found if isinstance(found, dict) and isinstance(found.get("rows"), list) else None
    return None


def command(name: str, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, f"bench/{name}.py"]
    if args.quick:
        cmd.append("--quick")
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    if args.redis_url and name in TAKES_REDIS:
        cmd += ["--redis-url", args.redis_url]
    return cmd


def run(name: str, args: argparse.Namespace) -> Run:
    cmd = command(name, args)
    print(f"# {name}: {' '.join(shown(cmd))}", file=sys.stderr, flush=True)
    began = time.monotonic()
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: a bench then stops the workers it started and drops its database.
            bench.terminate()
            try:
                stdout, stderr = bench.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                bench.kill()
                stdout, stderr = bench.communicate()
            stderr += f"\ntimed out after {args.timeout:g} s"
        code = bench.returncode
    seconds = time.monotonic() - began
    result = parse_result(stdout) if code == 0 else None
    print(f"# {name}: exit {code} in {seconds:.0f} s, {'a' if result else 'no'} RESULT line", file=sys.stderr)
    return Run(name, cmd, code, seconds, stdout + ("\n" + stderr if stderr.strip() else ""), result)


def shown(cmd: list[str]) -> list[str]:
    """The command as a reader would type it: the venv's python, no credentials in URLs."""
    out = [".venv/bin/python" if part == sys.executable else part for part in cmd]
    return [_no_password(part) for part in out]


def _no_password(part: str) -> str:
    if "://" in part and "@" in part.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = part.split("://", 1)
        userinfo, host = rest.split("@", 1)
        return f"{scheme}://{userinfo.split(':', 1)[0]}@{host}"
    return part


# -- the document -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Docstring:
    title: str
    usage: str
    method: list[str]  # Markdown paragraphs


def read_docstring(name: str) -> Docstring:
    """The bench's module docstring, split into its title, usage line and method paragraphs; the
    paragraph on where PostgreSQL and Redis come from is left to bench/README.md."""
    path = HERE / f"{name}.py"
    text = ast.get_docstring(ast.parse(path.read_text())) if path.exists() else None
    paragraphs = [p for p in (text or "").split("\n\n") if p.strip()]
    title = paragraphs[0].strip().removeprefix("Bench: ") if paragraphs else name
    usage = ""
    if len(paragraphs) > 1 and paragraphs[1].startswith(" "):
        usage = " ".join(paragraphs[1].split())
        paragraphs = paragraphs[2:]
    else:
        paragraphs = paragraphs[1:]
    # Where the servers come from is the same for every bench: bench/README.md says it once.
    kept = [p.split("PostgreSQL comes from", 1)[0] for p in paragraphs]
    method = [_markdown(p) for p in kept if p.strip()]
    return Docstring(title, usage, method)


def _markdown(paragraph: str) -> str:
    """Unwrap a docstring paragraph; ``* `` bullets stay one per line."""
    items: list[str] = []
    for line in paragraph.strip().splitlines():
        line = line.strip()
        if line.startswith(("* ", "- ")) or not items:
            items.append(line)
        else:
            items[-1] += " " + line
    return "\n".join(items)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ") or "–"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(HEADINGS) + " |", "|" + "---|" * len(HEADINGS)]
    for row in rows:
        cells = [_cell(row.get(key)) for key in COLUMNS]
        if row.get("result") in ("PASS", "MISS"):
            cells[-1] = f"**{row['result']}**"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def section(r: Run) -> list[str]:
    doc = read_docstring(r.name)
    title = (r.result or {}).get("title") or doc.title
    lines = [f"## {title}", ""]
    for paragraph in doc.method:
        lines += [paragraph, ""]
    if r.result is None:
        why = "printed no RESULT line" if r.returncode == 0 else f"failed (exit status {r.returncode})"
        tail = r.output.strip().splitlines()[-TAIL_LINES:]
        lines += [f"**Not measured:** `bench/{r.name}.py` {why}. The end of its output:", "", "```", *tail, "```", ""]
    else:
        res = r.result
        lines += [
            f"**Measured** on {res.get('date', '?')}: {res.get('size', '')}.",
            "",
            *table(res["rows"]),
            "",
            f"**Machine.** {res.get('machine', '?')}.",
            "",
        ]
        lines += [f"- {note}" for note in res.get("notes", [])] + ([""] if res.get("notes") else [])
    usage = f"`{doc.usage}`; this run: " if doc.usage else ""
    lines += [
        f"**How to reproduce:** {usage}`{' '.join(shown(r.command))}` ({r.seconds:.0f} s here).",
        "",
    ]
    return lines


def render(runs: list[Run], quick: bool, now: datetime | None = None) -> str:
    """docs/benchmarks.md for these runs."""
    when = f"{(now or datetime.now(UTC)):%Y-%m-%d %H:%M} UTC"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `bench/all.py` from one run that ended {when}; do not edit by hand, run it again:",
        f"`.venv/bin/python bench/all.py{' --quick' if quick else ''}`. How the benches work is in `bench/README.md`.",
        "Each bench measures its baseline in the same run, on the same data, and reports the ratio, because",
        "absolute numbers on a shared 2-core box move by ±15% or more from run to run.",
        "",
    ]
    if quick:
        lines += [
            "> **Quick run:** every bench ran at its smoke-test size. These figures only show that the benches",
            "> work; they are not measurements.",
            "",
        ]
    lines += ["| Bench | Targets | Took |", "|---|---|---|"]
    for r in runs:
        title = (r.result or {}).get("title") or read_docstring(r.name).title
        if r.result is None:
            verdict = "not measured"
        else:
            results = [row.get("result") for row in r.result["rows"]]
            passed, judged = results.count("PASS"), sum(1 for x in results if x in ("PASS", "MISS"))
            verdict = f"{passed} of {judged} met" if judged else "none set"
        lines.append(f"| [{title}](#{_anchor(title)}) | {verdict} | {r.seconds:.0f} s |")
    lines.append("")
    for r in runs:
        lines += section(r)
    return "\n".join(lines).rstrip() + "\n"


def merge(existing: str, runs: list[Run]) -> str:
    """``existing`` with the section of each run replaced (the one under the same ``## `` heading),
    or added at the end when it has none; every other section, and the top, kept as they are."""
    doc = existing.rstrip() + "\n"
    for r in runs:
        lines = section(r)
        heading = lines[0] + "\n"
        new = "\n".join(lines).rstrip() + "\n"
        start = ("\n" + doc).find("\n" + heading)  # where the heading starts in doc
        if start < 0:
            doc += "\n" + new
            continue
        end = doc.find("\n## ", start + len(heading))
        doc = doc[:start] + new + (doc[end:] if end >= 0 else "")
    return doc


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every bench at its smoke-test size")
    parser.add_argument("--only", help=f"a comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="default docs/benchmarks.md")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per bench (default: none)")
    parser.add_argument(
        "--keep-others",
        action="store_true",
        help="replace only the sections of the benches run in --out (or add them), keeping the rest of it",
    )
    parser.add_argument("--database-url", default=os.environ.get("CAREBEACON_BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("CAREBEACON_BENCH_REDIS_URL"))
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(BENCHES)
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}; known: {', '.join(BENCHES)}")
    args.benches = [name for name in BENCHES if name in chosen]
    return args


def main() -> int:
    args = parse()
    runs = [run(name, args) for name in args.benches]
    if args.keep_others and args.out.exists():
        args.out.write_text(merge(args.out.read_text(), runs))
    else:
        args.out.write_text(render(runs, args.quick))
    print(f"wrote {args.out}: {sum(r.result is not None for r in runs)} of {len(runs)} bench(es) measured")
    return 0 if all(r.result is not None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
