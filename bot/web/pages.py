"""The browser pages: one HTML template, every value escaped, and all of the pages' wording.

``page`` takes plain text only and escapes each piece itself, so no caller can put markup
(or a vendor's ``error_description``, or a ``state`` from the query) into a page unescaped.
The seed's callback page reflected its query into HTML; this one cannot.
"""

from __future__ import annotations

import html
from string import Template

from aiohttp import web

# No script, no external resource, no framing, no form posting elsewhere; the callback URL
# carries a code and a state, so no Referer leaves it and nothing caches it.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# A vendor's error text shown to the user is cut to this: enough to report, not a payload.
SHOWN = 200

TEMPLATE = Template(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · CareBeacon</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 34rem; margin: 4rem auto; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.4rem; }
.detail { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<main>
<h1>$title</h1>
$body
</main>
</body>
</html>
"""
)


def page(title: str, *paragraphs: str, detail: str | None = None, status: int = 200) -> web.Response:
    """An HTML page of ``title`` and ``paragraphs`` (plain text, escaped here); ``detail`` is a
    smaller last line, for a provider's own words."""
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if detail:
        body += f'\n<p class="detail">{html.escape(detail[:SHOWN])}</p>'
    text = TEMPLATE.substitute(title=html.escape(title), body=body)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)


# -- the pages --------------------------------------------------------------------------------

ASK_AGAIN = "Ask for a new link where you got this one (in chat: /connect), and open it within 15 minutes."


def link_invalid() -> web.Response:
    return page("This link no longer works", "It has expired or has already been used.", ASK_AGAIN, status=400)


def unknown_provider() -> web.Response:
    return page("Unknown service", "CareBeacon does not connect to this service.", status=404)


def provider_unavailable(name: str) -> web.Response:
    return page(
        f"{name} is not available",
        f"This CareBeacon server is not set up to connect {name}. Please tell your care team.",
        status=503,
    )


def state_invalid(name: str) -> web.Response:
    return page(
        f"Could not finish connecting {name}",
        "This sign-in has expired, was already used, or was not started here.",
        ASK_AGAIN,
        status=400,
    )


def denied(name: str) -> web.Response:
    return page(
        f"{name} was not connected",
        f"You chose not to share your {name} data. Nothing was connected, and you can close this page.",
        "If you change your mind, ask for a new link.",
    )


def provider_error(name: str, error: str, description: str | None) -> web.Response:
    said = f"{name} said: {error}" + (f" ({description})" if description else "")
    return page(
        f"Could not connect {name}", f"{name} did not complete the sign-in.", ASK_AGAIN, detail=said, status=400
    )


def exchange_failed(name: str) -> web.Response:
    return page(
        f"Could not connect {name}",
        f"{name} did not accept the sign-in when CareBeacon tried to finish it.",
        ASK_AGAIN,
        status=502,
    )


def connected(name: str) -> web.Response:
    return page(
        f"{name} is connected",
        f"CareBeacon is fetching your {name} data now; it will appear within a few minutes.",
        "You can close this page.",
    )


def confirm_connect(
    name: str, token: str, form_token: str, provider_origin: str | None, intro: str | None = None
) -> web.Response:
    """The page a connect link opens.  Nothing is spent until its button posts the form back, so
    a chat app fetching the link for a preview cannot use it up.  The form may post only here,
    and the redirect that answers it may lead only to the provider (``form-action`` covers both;
    None: no redirect, the answer is a page of ours)."""
    intro = intro or f"CareBeacon will take you to {name} to sign in and allow it to share your {name} data."
    body = (
        f"<p>{html.escape(intro)}</p>\n"
        '<form method="post" action="/connect/start">\n'
        f'<input type="hidden" name="token" value="{html.escape(token)}">\n'
        f'<input type="hidden" name="form_token" value="{html.escape(form_token)}">\n'
        f'<button type="submit">{html.escape(f"Continue to {name}")}</button>\n'
        "</form>\n"
        f'<p class="detail">{html.escape("Nothing happens until you press the button.")}</p>'
    )
    text = TEMPLATE.substitute(title=html.escape(f"Connect {name}"), body=body)
    allowed = f"'self' {provider_origin}" if provider_origin else "'self'"
    policy = HEADERS["Content-Security-Policy"].replace("form-action 'none'", f"form-action {allowed}")
    headers = HEADERS | {"Content-Security-Policy": policy}
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers=headers)


JUNCTION_INTRO = (
    "CareBeacon will open Junction Link, where you choose the devices (a FreeStyle Libre, a watch, a ring)"
    " whose data you share with your care team."
)


def junction_link(name: str, url: str) -> web.Response:
    """After the button: the Junction Link page to go on to (a link, not a redirect: its host is
    Junction's to choose, and a redirect would need it in ``form-action`` beforehand)."""
    body = (
        f"<p>{html.escape(f'Your {name} connection is ready. Choose your devices in Junction Link:')}</p>\n"
        f'<p><a href="{html.escape(url)}">{html.escape("Open Junction Link")}</a></p>\n'
        f'<p class="detail">{html.escape("The link works once. Your data appears here after Junction reads it.")}</p>'
    )
    text = TEMPLATE.substitute(title=html.escape(f"Connect {name}"), body=body)
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers=HEADERS)


def form_not_ours() -> web.Response:
    return page(
        "Could not confirm this link",
        "The confirmation did not come from the page your link opens.",
        "Open your link again and press the button there.",
        status=403,
    )
