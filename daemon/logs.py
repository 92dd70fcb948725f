"""structlog set-up: one pipeline for our loggers and the stdlib ones, with secrets redacted.

Every line, whether it comes from `structlog.get_logger` or from a stdlib logger (aiohttp,
APScheduler, asyncio), passes through the same processors and a redaction step right before the
renderer, so a credential cannot reach the journal by any route.
"""

from __future__ import annotations

import io
import logging
import os
import platform
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from daemon import __version__
from daemon.secrets import Secret

REDACTED = "***"
# Credentials shorter than this are not matched by value: "abc" would blank out ordinary words.
MIN_SECRET_LENGTH = 6
SENSITIVE_KEY = re.compile(
    r"token|secret|password|api_key|authorization|access_token|client_secret", re.IGNORECASE
)
# Stdlib loggers that would otherwise bury the daemon's own lines.
QUIET_LOGGERS = {"apscheduler": logging.WARNING}
FORMATS = ("auto", "json", "console")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# syslog priorities (sd-daemon(3)): a line that starts with "<N>" is filed by journald at
# priority N, so `journalctl -p err` finds the errors. Without it every line is "info".
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
# The line an operator looks up after an upgrade or a restart says what runs.
_STARTED_EVENT = "daemon_started"

_log: FilteringBoundLogger = structlog.get_logger(__name__)


class _SecretValues:
    """The registered secret values and one compiled pattern matching any of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self.pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str | Secret]) -> None:
        """Register values; a new pattern replaces the old one in a single assignment."""
        fresh: set[str] = set()
        for value in values:
            text = value.reveal() if isinstance(value, Secret) else value
            if len(text) < MIN_SECRET_LENGTH:
                continue
            fresh.add(text)
            # A token can also appear percent-encoded in a logged URL.
            fresh.add(quote(text, safe=""))
        with self._lock:
            if fresh <= self._values:
                return
            self._values = self._values | fresh
            # Longest first so that a secret containing another is replaced whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))


_secrets = _SecretValues()


def add_secrets(values: Iterable[str | Secret]) -> None:
    """Redact these values (6 characters or longer) wherever they appear in a log line."""
    _secrets.add(values)


def redact(text: str) -> str:
    """`text` with every registered secret value masked, for output that is not a log line
    (what the one-shot commands print): the same redaction the log pipeline applies."""
    return _redact_text(text, _secrets.pattern)


def _redact_text(text: str, pattern: re.Pattern[str] | None) -> str:
    return text if pattern is None else pattern.sub(REDACTED, text)


def _redact(value: Any, pattern: re.Pattern[str] | None) -> Any:
    if isinstance(value, str):
        return _redact_text(value, pattern)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if SENSITIVE_KEY.search(str(key)) else _redact(item, pattern)
            for key, item in value.items()
        }
    if isinstance(value, tuple):
        return tuple(_redact(item, pattern) for item in value)
    if isinstance(value, list | set | frozenset):
        return [_redact(item, pattern) for item in value]
    if value is None or isinstance(value, bool | int | float) or pattern is None:
        return value
    # Anything else is rendered later with str() or repr(): check both now, while we can.
    text = str(value)
    if pattern.search(text) or pattern.search(repr(value)):
        return _redact_text(text, pattern)
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: mask sensitive keys and every registered secret value, recursively."""
    pattern = _secrets.pattern
    return {
        key: REDACTED if SENSITIVE_KEY.search(key) else _redact(value, pattern)
        for key, value in event_dict.items()
    }


def _exception_renderer(json: bool) -> Processor:
    # Runs before redaction, so the rendered traceback text is redacted like any other string.
    # (A ConsoleRenderer exception_formatter, Rich or plain, would render after redaction.)
    # Locals are never shown: they are where credentials live.
    if json:
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        return structlog.processors.ExceptionRenderer(transformer)
    return structlog.processors.format_exc_info


def _add_build(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: the start-up line names the stocksync and Python versions."""
    if event_dict.get("event") == _STARTED_EVENT:
        event_dict.setdefault("version", __version__)
        event_dict.setdefault("python", platform.python_version())
    return event_dict


def _shared_processors(json: bool) -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        _add_build,
        _exception_renderer(json),
    ]


def _renderer(json: bool, stream: TextIO) -> Processor:
    if json:
        return structlog.processors.JSONRenderer()
    colors = _is_tty(stream) and "NO_COLOR" not in os.environ
    return structlog.dev.ConsoleRenderer(colors=colors)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def is_journal(stream: TextIO) -> bool:
    """Whether `stream` is the journal's stream systemd connected (JOURNAL_STREAM names it).

    The variable is inherited by children and survives a redirection (`2> file`), so the
    stream's own device and inode must match it.
    """
    named = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = named.partition(":")
    try:
        fd = stream.fileno()
        status = os.fstat(fd)
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


class _PipelineHandler(logging.StreamHandler[TextIO]):
    """The one root handler we install; its type lets a second configure call find it.

    Writing to the journal, it starts every line with the record's syslog priority.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._journal = is_journal(stream)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self._journal:
            return text
        level = max((n for n in _SYSLOG_PRIORITY if n <= record.levelno), default=logging.DEBUG)
        prefix = f"<{_SYSLOG_PRIORITY[level]}>"
        # Each line becomes an entry of its own: a traceback's lines keep their error's priority.
        return "\n".join(prefix + line for line in text.split("\n"))


def log_level(name: str | int) -> int:
    """A logging level from its name (debug, info, warning, error) or number."""
    if isinstance(name, int):
        return name
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {name!r}") from None


def configure_logging(
    fmt: str = "auto",
    *,
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    secrets: Iterable[str | Secret] = (),
) -> None:
    """Route structlog and stdlib logging to `stream` as JSON or console lines, redacted."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    level = log_level(level)
    out = stream if stream is not None else sys.stderr
    json = fmt == "json" or (fmt == "auto" and not _is_tty(out))
    add_secrets(secrets)
    shared = _shared_processors(json)

    handler = _PipelineHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_secrets,
                _renderer(json, out),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _PipelineHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, quiet))

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Not cached, so that a second configure call (new level) reaches existing loggers.
        cache_logger_on_first_use=False,
    )


@dataclass(slots=True)
class _Outage:
    since: float
    failures: int
    message: str
    started_at: float  # wall clock (epoch seconds) of the first failure: what people read
    error_type: type[BaseException] | None  # of the latest failure (None: a message only)


@dataclass(frozen=True, slots=True)
class Outage:
    """A read-only view of a source's current outage (for the status page)."""

    started_at: float  # epoch seconds of the first failure of this outage
    failures: int
    message: str  # the latest failure's description
    error_type: type[BaseException] | None  # the latest failure's exception type, if any


def describe_error(error: BaseException | str) -> str:
    """A one-line description of an error: its type and message."""
    if isinstance(error, str):
        return error
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class HealthLog:
    """Logs ERROR once when a source starts failing and INFO once when it recovers."""

    def __init__(
        self,
        logger: FilteringBoundLogger | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._log = logger if logger is not None else _log
        self._clock = clock
        self._wall_clock = wall_clock
        self._outages: dict[str, _Outage] = {}

    def failing(self, source: str) -> bool:
        """Whether the last outcome recorded for `source` was a failure."""
        return source in self._outages

    def outage(self, source: str) -> Outage | None:
        """The current outage of `source` (None while it works), as of the latest failure."""
        outage = self._outages.get(source)
        if outage is None:
            return None
        return Outage(outage.started_at, outage.failures, outage.message, outage.error_type)

    def failed(self, source: str, error: BaseException | str) -> None:
        """Record a failure; ERROR on the first one or when the error changes, DEBUG otherwise."""
        message = describe_error(error)
        error_type = None if isinstance(error, str) else type(error)
        outage = self._outages.get(source)
        if outage is None:
            self._outages[source] = _Outage(
                since=self._clock(),
                failures=1,
                message=message,
                started_at=self._wall_clock(),
                error_type=error_type,
            )
            self._log.error("source_failed", source=source, error=message)
            return
        outage.failures += 1
        outage.error_type = error_type
        if message != outage.message:
            outage.message = message
            self._log.error("source_failed", source=source, error=message, failures=outage.failures)
        else:
            self._log.debug(
                "source_still_failing", source=source, error=message, failures=outage.failures
            )

    def succeeded(self, source: str) -> None:
        """Record a success; INFO once if the source was failing, saying for how long."""
        outage = self._outages.pop(source, None)
        if outage is None:
            return
        self._log.info(
            "source_recovered",
            source=source,
            failed_for_seconds=round(self._clock() - outage.since, 1),
            failures=outage.failures,
        )
