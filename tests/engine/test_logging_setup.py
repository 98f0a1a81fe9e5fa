"""Log routing, rotation settings, secret redaction and idempotence, with real files in tmp_path."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path
from typing import Iterator

import pytest

from app.engine.system.logging_setup import (
    clear_secrets,
    configure_logging,
    get_logger,
    register_secret,
    shutdown_logging,
)

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    clear_secrets()
    yield
    shutdown_logging()
    clear_secrets()


def our_handlers() -> list[logging.Handler]:
    names = ("autotrader", "autotrader.engine", "autotrader.stream", "autotrader.ui")
    return [h for n in names for h in logging.getLogger(n).handlers]


def flush() -> None:
    for handler in our_handlers():
        handler.flush()


def read(log_dir: Path, name: str) -> str:
    flush()
    return (log_dir / name).read_text(encoding="utf-8")


def test_files_created_per_area(tmp_path: Path) -> None:
    log_dir = tmp_path / "sim" / "logs"
    configure_logging(log_dir, stderr=False)
    assert {p.name for p in log_dir.iterdir()} == {"engine.log", "stream.log", "ui.log"}
    file_handlers = [h for h in our_handlers() if isinstance(h, logging.handlers.TimedRotatingFileHandler)]
    assert len(file_handlers) == 3
    for handler in file_handlers:
        assert handler.when == "MIDNIGHT"
        assert handler.backupCount == 14
        assert handler.utc is True
        assert handler.encoding == "utf-8"


def test_records_routed_to_the_right_file(tmp_path: Path) -> None:
    configure_logging(tmp_path, stderr=False)
    get_logger("engine").info("engine-line")
    get_logger("engine.orders").info("orders-line")
    get_logger("stream").warning("stream-line")
    get_logger("stream.alpaca").info("stream-child-line")
    get_logger("ui").error("ui-line")
    get_logger("journal").info("other-line")  # any other area → engine.log
    logging.getLogger("someone.else").warning("foreign-line")

    engine, stream, ui = (read(tmp_path, n) for n in ("engine.log", "stream.log", "ui.log"))
    assert "engine-line" in engine and "orders-line" in engine and "other-line" in engine
    assert "stream-line" in stream and "stream-child-line" in stream
    assert "ui-line" in ui
    assert "stream-line" not in engine and "ui-line" not in engine
    assert "engine-line" not in stream and "engine-line" not in ui
    assert "foreign-line" not in engine + stream + ui
    assert "WARNING autotrader.stream: stream-line" in stream
    assert engine.splitlines()[0].split(" ")[0].endswith("Z")  # UTC timestamps


def test_level_respected(tmp_path: Path) -> None:
    configure_logging(tmp_path, level=logging.WARNING, stderr=False)
    get_logger("engine").info("quiet")
    get_logger("engine").warning("loud")
    engine = read(tmp_path, "engine.log")
    assert "loud" in engine and "quiet" not in engine


def test_stderr_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(tmp_path, stderr=True)
    get_logger("ui").warning("to-stderr")
    assert "to-stderr" in capsys.readouterr().err


def test_secret_redacted_in_message_and_args(tmp_path: Path) -> None:
    configure_logging(tmp_path, stderr=False)
    register_secret(SECRET)
    log = get_logger("engine")
    log.info("key is %s", SECRET)
    log.info(f"inline {SECRET} here")
    get_logger("stream").info("auth with %r", {"secret": SECRET})
    engine, stream = read(tmp_path, "engine.log"), read(tmp_path, "stream.log")
    assert SECRET not in engine + stream
    assert "key is ***" in engine and "inline *** here" in engine
    assert "'secret': '***'" in stream


def test_secret_redacted_in_exception_text(tmp_path: Path) -> None:
    configure_logging(tmp_path, stderr=False)
    register_secret(SECRET)
    try:
        raise RuntimeError(f"login failed for {SECRET}")
    except RuntimeError:
        get_logger("engine").exception("broker call failed")
    engine = read(tmp_path, "engine.log")
    assert "broker call failed" in engine
    assert "RuntimeError: login failed for ***" in engine
    assert "Traceback" in engine
    assert SECRET not in engine


def test_secret_redacted_in_stack_info(tmp_path: Path) -> None:
    configure_logging(tmp_path, stderr=False)
    register_secret(SECRET)
    # The stack quotes this source line, so the literal below reaches the stack text only.
    get_logger("ui").info("where", stack_info=True) if "sk-live-0123456789abcdef" else None
    ui = read(tmp_path, "ui.log")
    assert "Stack (most recent call last)" in ui and '"***"' in ui
    assert SECRET not in ui


def test_short_or_empty_secrets_ignored(tmp_path: Path) -> None:
    configure_logging(tmp_path, stderr=False)
    register_secret("")
    register_secret(None)
    register_secret("ab")
    get_logger("engine").info("ab cd")
    assert "ab cd" in read(tmp_path, "engine.log")


def test_overlapping_secrets_replaced_whole(tmp_path: Path) -> None:
    configure_logging(tmp_path, stderr=False)
    register_secret("abcd")
    register_secret("abcdefgh")
    get_logger("engine").info("x abcdefgh y")
    assert "x *** y" in read(tmp_path, "engine.log")


def test_idempotent(tmp_path: Path) -> None:
    configure_logging(tmp_path, stderr=True)
    count = len(our_handlers())
    configure_logging(tmp_path, stderr=True)
    assert len(our_handlers()) == count == 4  # engine, stream, ui files + stderr
    get_logger("engine").info("once")
    assert read(tmp_path, "engine.log").count("once") == 1


def test_reconfigure_moves_to_new_folder(tmp_path: Path) -> None:
    configure_logging(tmp_path / "a", stderr=False)
    configure_logging(tmp_path / "b", stderr=False)
    get_logger("engine").info("moved")
    assert "moved" in read(tmp_path / "b", "engine.log")
    assert "moved" not in (tmp_path / "a" / "engine.log").read_text(encoding="utf-8")


def test_get_logger_names() -> None:
    assert get_logger("engine").name == "autotrader.engine"
    assert get_logger("autotrader.ui").name == "autotrader.ui"
    assert get_logger("engine.orders").name == "autotrader.engine.orders"
    with pytest.raises(ValueError, match="area"):
        get_logger("")
