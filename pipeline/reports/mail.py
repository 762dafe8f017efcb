"""The report's email: the email channel's SMTP session and TLS rules, with the report's message.

An alert's email is multipart/alternative (text, HTML).  A report's HTML refers to its charts
by ``cid:`` URL, so its HTML part becomes multipart/related with each PNG inline, under the
Content-ID the HTML names: mail clients show them without fetching anything.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import formatdate

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
        cfg, payload = self.config, message.payload
        mail = EmailMessage()
        mail["Subject"] = payload["subject"]
        mail["From"] = cfg.sender
        mail["To"] = ", ".join(cfg.to)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        # Stable per report and destination, so a receiving system can drop the copy a retry sends.
        digest = hashlib.sha256("\n".join((cfg.sender, *cfg.to)).encode()).hexdigest()[:16]
        mail["Message-ID"] = f"<report-{payload['report_id']}.{digest}@{cfg.sender.rpartition('@')[2]}>"
        mail[REPORT_HEADER] = str(payload["report_id"])
        mail.set_content(payload["text"])
        mail.add_alternative(payload["html"], subtype="html")
        html_part = mail.get_body(("html",))
        assert html_part is not None
        for cid, png in payload["images"].items():
            name = cid.partition("@")[0] + ".png"
            html_part.add_related(png, "image", "png", cid=f"<{cid}>", filename=name, disposition="inline")
        return mail
