"""Slack settings, read once at boot.  Absent signing secret or credentials: the front end is off."""

from __future__ import annotations

from dataclasses import dataclass, field

from db import env as envlib

SCOPES = ("commands", "chat:write", "chat:write.public")
OIDC_SCOPES = ("openid",)
API_URL, AUTHORIZE_URL = "https://slack.com/api/", "https://slack.com"


@dataclass(frozen=True, slots=True)
class SlackSettings:
    """SLACK_SIGNING_SECRET, and either SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID +
    SLACK_CLIENT_SECRET (OAuth install, many workspaces; also Sign in with Slack for linking).
    SLACK_API_URL points the Web API elsewhere (tests); SLACK_AUTHORIZE_URL likewise for the
    browser redirects.  Secrets also accept NAME_FILE.

    SLACK_SOCKET_MODE=true receives everything over Socket Mode (a WebSocket we open, for hosts
    with no public URL) with the app-level token SLACK_APP_TOKEN (``xapp-…``); the signing
    secret is then not needed, and /slack/events is not served without it."""

    signing_secret: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    bot_token: str | None = field(default=None, repr=False)
    api_url: str = API_URL
    authorize_url: str = AUTHORIZE_URL
    app_token: str | None = field(default=None, repr=False)
    socket_mode: bool = False

    @classmethod
    def from_env(cls, env: envlib.Env) -> SlackSettings:
        """Raises SettingError naming the variable (a client id without its secret, say)."""
        client_id, client_secret = envlib.text(env, "SLACK_CLIENT_ID"), envlib.secret(env, "SLACK_CLIENT_SECRET")
        if (client_id is None) != (client_secret is None):
            missing = "SLACK_CLIENT_SECRET" if client_secret is None else "SLACK_CLIENT_ID"
            raise envlib.SettingError(missing, "to be set with its pair (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET)")
        api = envlib.url(env, "SLACK_API_URL", ("https", "http")) or API_URL
        authorize = envlib.url(env, "SLACK_AUTHORIZE_URL", ("https", "http")) or AUTHORIZE_URL
        socket_mode = envlib.choice(env, "SLACK_SOCKET_MODE", "false", ("true", "false")) == "true"
        app_token = envlib.secret(env, "SLACK_APP_TOKEN")
        if app_token is not None and not app_token.startswith("xapp-"):
            raise envlib.SettingError("SLACK_APP_TOKEN", "an app-level token (xapp-…)", "another kind of token")
        if socket_mode and app_token is None:
            raise envlib.SettingError("SLACK_APP_TOKEN", "an app-level token (xapp-…) with SLACK_SOCKET_MODE=true")
        return cls(
            envlib.secret(env, "SLACK_SIGNING_SECRET"),
            client_id,
            client_secret,
            envlib.secret(env, "SLACK_BOT_TOKEN"),
            api.rstrip("/") + "/",
            authorize.rstrip("/"),
            app_token,
            socket_mode,
        )

    @property
    def oauth(self) -> bool:
        return self.client_id is not None and self.client_secret is not None

    @property
    def off_reason(self) -> str | None:
        """Why the Slack front end is off, or None when it is on."""
        if self.signing_secret is None and not self.socket_mode:
            return "SLACK_SIGNING_SECRET is not set"
        if self.bot_token is None and not self.oauth:
            return "neither SLACK_BOT_TOKEN nor SLACK_CLIENT_ID/SLACK_CLIENT_SECRET is set"
        return None
