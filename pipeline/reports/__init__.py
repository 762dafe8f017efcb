"""Weekly health reports: what they show (``content``), how they look (``render``, ``charts``),
and how they reach people (``send``: email with the charts inline)."""

__all__ = ["Emailed", "RenderedReport", "ReportData", "load", "load_for_user", "render", "send_report"]

from pipeline.reports.content import ReportData, load, load_for_user
from pipeline.reports.render import RenderedReport, render
from pipeline.reports.send import Emailed, send_report
