"""Log files per area (engine, stream, ui), rotated at UTC midnight, with registered secrets redacted.

``autotrader.engine`` → engine.log, ``autotrader.stream`` → stream.log, ``autotrader.ui`` →
ui.log; any other ``autotrader.*`` logger → engine.log. Optionally everything to stderr too.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import time
from pathlib import Path

ROOT = "autotrader"
AREA_FILES = {"engine": "engine.log", "stream": "stream.log", "ui": "ui.log"}
REDACTED = "***"
MIN_SECRET_LENGTH = 4  # shorter strings would blank out ordinary words and numbers
_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
_DATEFMT = "%Y-%m-%dT%H:%M:%S"

_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()
_config_lock = threading.Lock()
_installed: list[tuple[logging.Logger, logging.Handler]] = []


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every log record from now on. None, blanks and strings under 4 characters are ignored."""
    global _secrets
    if not value or len(value.strip()) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        if value not in _secrets:
            # Longest first, so a secret containing another is replaced whole.
            _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


def clear_secrets() -> None:
    """Forget every registered secret (tests)."""
    global _secrets
    with _secrets_lock:
        _secrets = ()


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class SecretFilter(logging.Filter):
    """Rewrites a record's final message, exception and stack text with secrets redacted. Never drops a record."""

    _exc_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as logging normally does
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when set, so the redacted traceback is what gets written.
            record.exc_text = self._exc_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _ExcludeAreas(logging.Filter):
    """Keeps records of areas that have their own file out of engine.log."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self._prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        return not any(name == p or name.startswith(p + ".") for p in self._prefixes)


def _formatter() -> logging.Formatter:
    formatter = logging.Formatter(_FORMAT, _DATEFMT)
    formatter.converter = time.gmtime
    return formatter


def _file_handler(path: Path) -> logging.Handler:
    handler = logging.handlers.TimedRotatingFileHandler(
        path, when="midnight", backupCount=14, utc=True, encoding="utf-8"
    )
    return handler


def _remove_installed() -> None:
    while _installed:
        logger, handler = _installed.pop()
        logger.removeHandler(handler)
        handler.close()


def configure_logging(log_dir: Path, *, level: int = logging.INFO, stderr: bool = True) -> None:
    """Send ``autotrader.*`` logs to ``log_dir`` (created if needed). Calling again replaces the earlier setup."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with _config_lock:
        _remove_installed()
        formatter = _formatter()
        secret_filter = SecretFilter()
        root = logging.getLogger(ROOT)
        root.setLevel(level)

        separate = tuple(f"{ROOT}.{area}" for area in AREA_FILES if area != "engine")
        targets: list[tuple[logging.Logger, logging.Handler]] = []
        engine_handler = _file_handler(log_dir / AREA_FILES["engine"])
        engine_handler.addFilter(_ExcludeAreas(separate))
        targets.append((root, engine_handler))
        for area, filename in AREA_FILES.items():
            if area != "engine":
                targets.append((logging.getLogger(f"{ROOT}.{area}"), _file_handler(log_dir / filename)))
        if stderr:
            targets.append((root, logging.StreamHandler(sys.stderr)))

        for logger, handler in targets:
            handler.setFormatter(formatter)
            handler.addFilter(secret_filter)
            logger.addHandler(handler)
            _installed.append((logger, handler))


def shutdown_logging() -> None:
    """Remove and close the handlers configure_logging installed."""
    with _config_lock:
        _remove_installed()


def get_logger(area: str) -> logging.Logger:
    """The logger for ``area`` (``"engine"``, ``"stream"``, ``"ui"``, or a dotted sub-area like ``"engine.orders"``)."""
    area = area.strip(".") if area else ""
    if not area:
        raise ValueError("get_logger needs an area name such as 'engine', 'stream' or 'ui'")
    if area == ROOT or area.startswith(ROOT + "."):
        return logging.getLogger(area)
    return logging.getLogger(f"{ROOT}.{area}")
