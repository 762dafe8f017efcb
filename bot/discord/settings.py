"""Discord settings, read once at boot.  Absent key, application id or bot token: the front end is off."""

from __future__ import annotations

from dataclasses import dataclass, field

from db import env as envlib

API_URL = "https://discord.com/api/v10"
AUTHORIZE_URL = "https://discord.com/oauth2/authorize"


@dataclass(frozen=True, slots=True)
class DiscordSettings:
    """DISCORD_PUBLIC_KEY (hex Ed25519 key from the Developer Portal), DISCORD_APPLICATION_ID and
    DISCORD_BOT_TOKEN turn the front end on.  DISCORD_CLIENT_SECRET adds account linking with
    Discord OAuth2 ``identify`` (the client id is the application id).  DISCORD_API_URL and
    DISCORD_AUTHORIZE_URL point Discord elsewhere (tests).  Secrets also accept NAME_FILE."""

    public_key: str | None = None
    application_id: str | None = None
    bot_token: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    api_url: str = API_URL
    authorize_url: str = AUTHORIZE_URL

    @classmethod
    def from_env(cls, env: envlib.Env) -> DiscordSettings:
        """Raises SettingError naming the variable (a key that is not 64 hex digits, say)."""
        key = envlib.text(env, "DISCORD_PUBLIC_KEY")
        if key is not None and not _is_key(key):
            raise envlib.SettingError("DISCORD_PUBLIC_KEY", "64 hex digits (the app's Ed25519 public key)", key)
        app_id = envlib.text(env, "DISCORD_APPLICATION_ID")
        if app_id is not None and not app_id.isdigit():
            raise envlib.SettingError("DISCORD_APPLICATION_ID", "the application's id (a snowflake: digits)", app_id)
        api = envlib.url(env, "DISCORD_API_URL", ("https", "http")) or API_URL
        authorize = envlib.url(env, "DISCORD_AUTHORIZE_URL", ("https", "http")) or AUTHORIZE_URL
        return cls(
            key,
            app_id,
            envlib.secret(env, "DISCORD_BOT_TOKEN"),
            envlib.secret(env, "DISCORD_CLIENT_SECRET"),
            api.rstrip("/"),
            authorize,
        )

    @property
    def off_reason(self) -> str | None:
        """Why the Discord front end is off, or None when it is on."""
        missing = [
            name
            for name, value in (
                ("DISCORD_PUBLIC_KEY", self.public_key),
                ("DISCORD_APPLICATION_ID", self.application_id),
                ("DISCORD_BOT_TOKEN", self.bot_token),
            )
            if value is None
        ]
        return f"{', '.join(missing)} not set" if missing else None

    @property
    def oauth(self) -> bool:
        """Whether account linking can prove a Discord identity (OAuth2 ``identify``)."""
        return self.application_id is not None and self.client_secret is not None


def _is_key(value: str) -> bool:
    try:
        return len(bytes.fromhex(value)) == 32
    except ValueError:
        return False
