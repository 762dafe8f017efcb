"""/score [patient] [domain]: the latest scores with their contributors, and a 30-day chart.

Always ephemeral: health data is shown only to the person who asked (DESIGN, "Health data is
minimal in chat").  The chart is a PNG kept for 30 minutes behind an unguessable URL of ours
(``/chat/charts/{token}``), which Slack's image block fetches; Discord attaches the bytes.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from bot.commands.access import disclose, subject
from bot.commands.base import CommandContext, Field, Image, Reply, UsageError
from bot.commands.chart import colour_name, line_chart
from db import chat

DOMAINS = ("sleep", "activity", "cardio", "recovery", "glycemic")
TREND_DAYS = 30


async def score(ctx: CommandContext) -> Reply:
    patient, domain = _args(ctx.invocation.args)
    async with ctx.pool.acquire() as conn:
        user_id, name = await subject(ctx, conn, patient)
        latest = await conn.fetch(
            "SELECT DISTINCT ON (domain) day, domain, score, contributors FROM health_scores"
            " WHERE user_id = $1 AND ($2::text IS NULL OR domain = $2) AND domain = ANY($3::text[])"
            " ORDER BY domain, day DESC",
            user_id,
            domain,
            list(DOMAINS),
        )
        today = date.today()
        start = today - timedelta(days=TREND_DAYS - 1)
        trend = await conn.fetch(
            "SELECT day, domain, score FROM health_scores WHERE user_id = $1 AND day >= $2"
            " AND ($3::text IS NULL OR domain = $3) AND domain = ANY($4::text[]) ORDER BY day",
            user_id,
            start,
            domain,
            list(DOMAINS),
        )
        image = None
        if trend:
            series: dict[str, list[float | None]] = {}
            for row in trend:
                values = series.setdefault(row["domain"], [None] * TREND_DAYS)
                values[(row["day"] - start).days] = row["score"]
            png = line_chart(series, TREND_DAYS)
            token = await chat.save_chart(conn, ctx.tenant_id, png)
            legend = ", ".join(f"{d} {colour_name(d)}" for d in sorted(series))
            image = Image(png, f"{ctx.public_url}/chat/charts/{token}.png", f"30-day trend: {legend}")
        await disclose(ctx, conn, "chat.scores_disclosed", subject_type="user", subject_id=user_id, ephemeral=True,
                       details={"domain": domain})  # fmt: skip
    whose = "Your" if user_id == ctx.invocation.user_id else f"{name}'s"
    title = f"{whose} scores" + (f": {domain}" if domain else "")
    if not latest:
        return Reply(title, ("No scores yet. They appear after the first day of synced data.",))
    fields = tuple(
        Field(f"{r['domain'].title()} ({r['day']:%b %d})", _value(r["score"], r["contributors"])) for r in latest
    )
    return Reply(
        title,
        fields=fields,
        image=image,
        context=image.alt if image else None,
    )


def _args(args: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(patient, domain): a word that names a domain is the domain, the other the patient."""
    if len(args) > 2:
        raise UsageError("At most a patient and a domain.")
    domains = [a.lower() for a in args if a.lower() in DOMAINS]
    others = [a for a in args if a.lower() not in DOMAINS]
    if len(domains) > 1 or len(others) > 1:
        raise UsageError(f"Give one patient and one of {', '.join(DOMAINS)}.")
    return (others[0] if others else None), (domains[0] if domains else None)


def _value(value: float, contributors: dict[str, Any]) -> str:
    """``72`` and the parts that made it, heaviest first: ``hrv 80 (40%)``."""
    parts = [(k, v) for k, v in contributors.items() if isinstance(v, dict) and v.get("weight")]
    parts.sort(key=lambda kv: -float(kv[1]["weight"]))
    shown = [f"{k.replace('_', ' ')} {float(v['score']):.0f} ({float(v['weight']):.0%})" for k, v in parts[:4]]
    partial = " (partial)" if contributors.get("partial") else ""
    return f"*{value:.0f}*{partial}" + (f" — {', '.join(shown)}" if shown else "")
