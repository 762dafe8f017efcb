"""Settings of the front end: where the web app listens and the URL people reach it by."""

from __future__ import annotations

from dataclasses import dataclass

from db import env as envlib


@dataclass(frozen=True, slots=True)
class BotSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"

    @classmethod
    def from_env(cls, env: envlib.Env, *, host: str | None = None, port: int | None = None) -> BotSettings:
        """``host``/``port`` from the command line win over HOST and PORT (PORT as Procfile platforms set it)."""
        host = host or envlib.text(env, "HOST", "127.0.0.1") or "127.0.0.1"
        port = port if port is not None else envlib.integer(env, "PORT", 8080, minimum=0, maximum=65535)
        public = envlib.url(env, "PUBLIC_URL", ("http", "https")) or f"http://{host}:{port}"
        return cls(host, port, public.rstrip("/"))
