"""Settings of the admin console: the deployment's admin password, and whether cookies are Secure."""

from __future__ import annotations

from dataclasses import dataclass, field

from db import env as envlib


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """``password`` None turns password login off (there is no default password); admin-key
    login always works.  ``secure_cookies`` follows PUBLIC_URL's scheme."""

    password: str | None = field(default=None, repr=False)
    secure_cookies: bool = False

    @classmethod
    def from_env(cls, env: envlib.Env, *, public_url: str) -> AdminSettings:
        password = envlib.secret(env, "ADMIN_PASSWORD")
        if password is not None and len(password) < 12:
            raise envlib.SettingError("ADMIN_PASSWORD", "at least 12 characters", "a shorter value")
        return cls(password=password, secure_cookies=public_url.startswith("https://"))
