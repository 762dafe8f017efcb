"""A weekly report as HTML (every value escaped) and plain text, with its charts as PNG images.

Pure: data in, ``RenderedReport`` out.  Charts are referenced as ``cid:`` URLs for an email
(multipart/related) or embedded as ``data:`` URLs for a file that opens on its own.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from db.reports import TREND_DAYS
from pipeline.reports.charts import sparkline, stacked_bar
from pipeline.reports.content import ReportData

Image = Callable[[str, bytes, str], str]  # (name, PNG, alt text) → the <img> tag
SECTIONS = ("scores", "alerts", "correlations", "cgm", "metrics")
CID_DOMAIN = "carebeacon"
# Very low, low, in range, high, very high: the consensus colours of an AGP report.
RANGE_COLOURS = ((153, 27, 27), (239, 68, 68), (34, 197, 94), (250, 204, 21), (234, 88, 12))
TREND_STEADY = 2.0  # points of score: a smaller change reads as steady


@dataclass(frozen=True, slots=True)
class RenderedReport:
    subject: str
    html: str
    text: str
    images: dict[str, bytes] = field(default_factory=dict)  # content id → PNG


def render(data: ReportData, *, audience: str = "care_team", images: Literal["cid", "data"] = "cid") -> RenderedReport:
    """The report for ``audience`` ("care_team" or "patient": only the greeting differs)."""
    report, summary, details = data.report, data.summary, data.details
    period = f"{report.start:%d %b %Y} – {report.end:%d %b %Y}"
    title = "Your week" if audience == "patient" else f"Weekly health report: {report.patient}"
    charts: dict[str, bytes] = {}

    def img(name: str, png: bytes, alt: str) -> str:
        cid = f"{name}@{CID_DOMAIN}"
        charts[cid] = png
        src = f"cid:{cid}" if images == "cid" else "data:image/png;base64," + base64.b64encode(png).decode()
        return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" width="280">'

    text: list[str] = [title, period, ""]
    parts = [
        _scores(report.start, report.end, summary, details, img, text),
        _alerts(details["alerts"], text),
        _correlations(details["correlations"], text),
        _cgm(details["cgm"], img, text),
        _metrics(summary.get("metrics", {}), text),
    ]
    body = "".join(parts)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        "<body style='font-family:sans-serif;max-width:640px'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(period)}</p>{body}"
        "<p style='color:#666'>CareBeacon weekly report. Scores are 0–100; higher is better.</p>"
        "</body></html>\n"
    )
    subject = " ".join(f"{title} ({period})".split())[:250]
    return RenderedReport(subject, page, "\n".join(text) + "\n", charts)


def _scores(start: date, end: date, summary: Any, details: Any, img: Image, text: list[str]) -> str:
    series: dict[str, list[list[Any]]] = details["score_series"]
    domains = sorted(set(series) | set(summary.get("scores", {})))
    text.append("Scores")
    if not domains:
        text.append("  No scores this week.")
        return "<section id='scores'><h2>Scores</h2><p>No scores this week.</p></section>"
    rows = []
    for domain in domains:
        by_day = {date.fromisoformat(day): score for day, score in series.get(domain, [])}
        days = [end - timedelta(days=n) for n in range(TREND_DAYS - 1, -1, -1)]
        this_week = [s for d, s in by_day.items() if start <= d <= end]
        last_week = [s for d, s in by_day.items() if start - timedelta(days=7) <= d < start]
        latest = summary.get("scores", {}).get(domain, {}).get("score")
        trend = _trend(this_week, last_week)
        chart = img(
            f"score-{domain}", sparkline([by_day.get(d) for d in days]), f"{domain} score, last {TREND_DAYS} days"
        )
        rows.append(
            f"<tr><th align='left'>{html.escape(domain.title())}</th><td>{_num(latest)}</td>"
            f"<td>{html.escape(trend)}</td><td>{chart}</td></tr>"
        )
        text.append(f"  {domain.title()}: {_num(latest)} ({trend})")
    head = "<tr><th></th><th>Latest</th><th>Trend (week on week)</th><th>Last 4 weeks</th></tr>"
    return f"<section id='scores'><h2>Scores</h2><table>{head}{''.join(rows)}</table></section>"


def _trend(this_week: list[float], last_week: list[float]) -> str:
    if not this_week:
        return "no score this week"
    mean = sum(this_week) / len(this_week)
    if not last_week:
        return f"week average {mean:.0f}; nothing to compare with"
    change = mean - sum(last_week) / len(last_week)
    if abs(change) < TREND_STEADY:
        return f"steady at {mean:.0f}"
    return f"{'up' if change > 0 else 'down'} {abs(change):.0f} to {mean:.0f}"


def _alerts(alerts: list[dict[str, Any]], text: list[str]) -> str:
    text += ["", "Alerts this week"]
    if not alerts:
        text.append("  None.")
        return "<section id='alerts'><h2>Alerts this week</h2><p>No alerts this week.</p></section>"
    items = []
    for alert in alerts:
        when = alert["created_at"][:16].replace("T", " ")
        items.append(
            f"<li><strong>{html.escape(alert['severity'])}</strong> {html.escape(alert['title'])}"
            f" <span style='color:#666'>({html.escape(when)} UTC)</span></li>"
        )
        text.append(f"  [{alert['severity']}] {alert['title']} ({when} UTC)")
    return f"<section id='alerts'><h2>Alerts this week</h2><ul>{''.join(items)}</ul></section>"


def _correlations(found: list[dict[str, Any]], text: list[str]) -> str:
    text += ["", "Patterns"]
    if not found:
        text.append("  No notable patterns in the last 90 days.")
        return "<section id='correlations'><h2>Patterns</h2><p>No notable patterns in the last 90 days.</p></section>"
    text += [f"  {c['description']}" for c in found]
    items = "".join(f"<li>{html.escape(c['description'])}</li>" for c in found)
    return f"<section id='correlations'><h2>Patterns</h2><ul>{items}</ul></section>"


def _cgm(cgm: dict[str, Any] | None, img: Image, text: list[str]) -> str:
    if cgm is None:
        return ""  # no CGM worn: no section
    m = cgm["metrics"]
    ranges = [
        ("Very low (<54 mg/dL)", m.get("tbr_54", 0.0)),
        ("Low (54–69)", m.get("tbr_70", 0.0) - m.get("tbr_54", 0.0)),
        ("In range (70–180)", m.get("tir", 0.0)),
        ("High (181–250)", m.get("tar_180", 0.0) - m.get("tar_250", 0.0)),
        ("Very high (>250)", m.get("tar_250", 0.0)),
    ]
    bar = img("cgm-ranges", stacked_bar([(share, c) for (_, share), c in zip(ranges, RANGE_COLOURS, strict=True)]),
              "time in glucose ranges")  # fmt: skip
    rows = [(label, f"{share:.1f} %") for label, share in ranges]
    rows += [("Mean glucose", f"{_num(m.get('mean'))} mg/dL"), ("GMI", f"{_num(m.get('gmi'), 1)} %"),
             ("Variability (CV)", f"{_num(m.get('cv'), 1)} %")]  # fmt: skip
    if not m.get("sufficient", True):
        rows.append(("Note", "less than 14 days or 70 % of readings: read these with care"))
    cells = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    text += ["", f"Glucose (CGM, {cgm['days']} days to {cgm['period_end']})", *(f"  {k}: {v}" for k, v in rows)]
    return (
        f"<section id='cgm'><h2>Glucose (CGM, {int(cgm['days'])} days)</h2><p>{bar}</p><table>{cells}</table></section>"
    )


def _metrics(metrics: dict[str, dict[str, Any]], text: list[str]) -> str:
    text += ["", "Readings this week"]
    if not metrics:
        text.append("  None.")
        return "<section id='metrics'><h2>Readings this week</h2><p>No readings this week.</p></section>"
    head = "<tr><th></th><th>Average</th><th>Lowest</th><th>Highest</th><th>Days</th></tr>"
    rows = []
    for name, m in sorted(metrics.items()):
        label = name.replace("_", " ")
        rows.append(
            f"<tr><th align='left'>{html.escape(label)}</th><td>{_num(m['avg'], 1)}</td><td>{_num(m['min'], 1)}</td>"
            f"<td>{_num(m['max'], 1)}</td><td>{int(m['days'])}</td></tr>"
        )
        text.append(f"  {label}: average {_num(m['avg'], 1)}, {_num(m['min'], 1)} to {_num(m['max'], 1)}")
    return f"<section id='metrics'><h2>Readings this week</h2><table>{head}{''.join(rows)}</table></section>"


def _num(value: Any, digits: int = 0) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–"
    return f"{value:.{digits}f}"
