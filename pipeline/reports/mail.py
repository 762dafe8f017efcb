"""The report's email: the email channel's SMTP session and TLS rules, with the report's message.

An alert's email is multipart/alternative (text, HTML).  A report's HTML refers to its charts
by ``cid:`` URL, so its HTML part becomes multipart/related with each PNG inline, under the
Content-ID the HTML names: mail clients show them without fetching anything.
"""

from __future__ import annotations

from email.message import EmailMessage

from channels import Rendered
from channels.email import Email
from pipeline.reports.render import RenderedReport

REPORT_HEADER = "X-CareBeacon-Report"


def as_rendered(report_id: int, report: RenderedReport) -> Rendered:
    payload = {"report_id": report_id, "subject": report.subject, "text": report.text, "html": report.html,
               "images": report.images}  # fmt: skip
    return Rendered(report.subject, report.text, "info", payload)


class ReportEmail(Email):
    """Sends ``as_rendered`` messages; everything else (config, TLS, errors) is the email channel's."""

    def _compose(self, message: Rendered) -> EmailMessage:
        report_id = str(message.payload["report_id"])
        mail = self._mail(message, f"report-{report_id}", {REPORT_HEADER: report_id})
        html_part = mail.get_body(("html",))
        assert html_part is not None
        for cid, png in message.payload["images"].items():
            name = cid.partition("@")[0] + ".png"
            html_part.add_related(png, "image", "png", cid=f"<{cid}>", filename=name, disposition="inline")
        return mail
