"""Reading settings from the environment: the one place that knows the rules.

Every layer builds frozen settings from a mapping (``os.environ`` in production, a dict in
tests) with these helpers.  A bad value raises :class:`SettingError`, which names the
variable and says what it expects; the CLI prints it and exits before anything starts.
Secrets may also be given as ``NAME_FILE`` pointing at a file that holds the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

Env = Mapping[str, str]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


class SettingError(ValueError):
    """A setting is missing or invalid.  The message never contains a secret's value."""

    def __init__(self, name: str, expected: str, got: str | None = None) -> None:
        self.name = name
        detail = "is not set" if got is None else f"got {got!r}"
        super().__init__(f"{name}: expected {expected}; {detail}")


def text(env: Env, name: str, default: str | None = None) -> str | None:
    """The stripped value of ``name``, or ``default`` when it is unset or empty."""
    value = env.get(name, "").strip()
    return value or default


def required(env: Env, name: str, expected: str) -> str:
    value = text(env, name)
    if value is None:
        raise SettingError(name, expected)
    return value


def secret(env: Env, name: str) -> str | None:
    """``name`` itself, or the contents of the file named by ``name_FILE``."""
    value = text(env, name)
    if value is not None:
        return value
    path = text(env, f"{name}_FILE")
    if path is None:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        raise SettingError(f"{name}_FILE", "a readable file", path) from exc


def integer(env: Env, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = text(env, name)
    if raw is None:
        return default
    expected = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(name, expected, raw) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise SettingError(name, expected, raw)
    return value


def choice(env: Env, name: str, default: str, options: tuple[str, ...]) -> str:
    value = text(env, name, default)
    assert value is not None
    if value not in options:
        raise SettingError(name, "one of " + ", ".join(options), value)
    return value


def url(env: Env, name: str, schemes: tuple[str, ...]) -> str | None:
    """An optional URL whose scheme is one of ``schemes``.  The value is not echoed: URLs carry passwords."""
    value = text(env, name)
    if value is None:
        return None
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        # Echo the scheme only when it looks like one: anything else may be part of a password.
        shown = f"{scheme}://…" if _SCHEME.match(scheme) else "a value that is not such a URL"
        raise SettingError(name, "a URL starting with " + " or ".join(f"{s}://" for s in schemes), shown)
    return value
