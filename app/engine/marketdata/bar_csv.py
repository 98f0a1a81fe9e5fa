"""The bar CSV format of ``autotrader bars`` / ``import-bars``: ``timestamp,open,high,low,close,volume``.

Timestamps are UTC ``YYYY-MM-DDTHH:MM:SSZ``. Reading is streamed and bounded so a hostile or
huge file cannot exhaust memory: a file is checked completely first (every bad row reported
by line number), and only a clean file is imported, in one transaction.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from app.storage.records import Bar
from app.storage.timefmt import epoch_text, parse_utc_text, to_epoch

HEADER = ("timestamp", "open", "high", "low", "close", "volume")
MAX_LINE_CHARS = 1_000
MAX_ROWS = 5_000_000  # ~50 symbol-years; far beyond any real import, small enough to bound work
MAX_ERRORS_REPORTED = 20
_SKIP_CHUNK_CHARS = 64 * 1024
_TOO_LONG = ["<line too long>"]  # marker row, recognised by identity


class BarCsvError(ValueError):
    """The file cannot be imported; ``problems`` holds 'line N: what is wrong' strings."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()):
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class CsvCheck:
    """Outcome of checking a whole file: row count and the first problems found."""

    rows: int
    problems: tuple[str, ...]
    problem_count: int


def write_bars_csv(bars: Iterable[Bar], out: TextIO) -> int:
    """Write bars with the header; returns the number of rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    count = 0
    for bar in bars:
        writer.writerow((epoch_text(bar.ts), repr(float(bar.open)), repr(float(bar.high)),
                         repr(float(bar.low)), repr(float(bar.close)), int(bar.volume)))
        count += 1
    return count


def _parse_row(row: list[str]) -> Bar:
    if len(row) != len(HEADER):
        raise ValueError(f"expected {len(HEADER)} fields, found {len(row)}")
    try:
        moment = parse_utc_text(row[0].strip())
    except ValueError:
        raise ValueError(f"timestamp {row[0][:40]!r} is not YYYY-MM-DDTHH:MM:SSZ") from None
    prices = []
    for name, text in zip(HEADER[1:5], row[1:5]):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} {text[:30]!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number (got {text[:30]})")
        prices.append(value)
    try:
        volume = int(row[5])
    except ValueError:
        raise ValueError(f"volume {row[5][:30]!r} is not a whole number") from None
    if volume < 0:
        raise ValueError("volume must not be negative")
    o, h, l, c = prices
    if h < max(o, c, l) or l > min(o, c):
        raise ValueError("high/low do not contain open and close")
    ts = to_epoch(moment)
    if ts % 60:
        raise ValueError("timestamp must be a whole minute")
    return Bar(ts, o, h, l, c, volume)


def _skip_rest_of_line(handle: TextIO) -> None:
    """Read past the end of an over-long line a chunk at a time, never holding it whole."""
    while True:
        chunk = handle.readline(_SKIP_CHUNK_CHARS)
        if not chunk or chunk.endswith(("\n", "\r")):
            return


def _rows(handle: TextIO) -> Iterator[tuple[int, list[str]]]:
    # readline with a limit, not ``for line in handle``: iterating reads a whole line however long,
    # so one 50 MB line without a newline would sit in memory at once.
    line_no = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        line_no += 1
        if len(line) > MAX_LINE_CHARS:
            if not line.endswith(("\n", "\r")):
                _skip_rest_of_line(handle)
            yield line_no, _TOO_LONG
            continue
        if not line.strip():
            continue
        yield line_no, next(csv.reader([line]))


def iter_bars(path: Path, session_minute: Callable[[int], bool] | None = None) -> Iterator[tuple[int, Bar | str]]:
    """Yield ``(line_no, Bar)`` for good rows and ``(line_no, problem)`` for bad ones, streaming."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        rows = _rows(handle)
        first = next(rows, None)
        if first is None:
            raise BarCsvError(f"{path}: the file is empty (expected the header {','.join(HEADER)})")
        header = tuple(field.strip().lower() for field in first[1])
        if header != HEADER:
            raise BarCsvError(f"{path}: line 1 must be the header {','.join(HEADER)}")
        seen = 0
        for line_no, row in rows:
            seen += 1
            if seen > MAX_ROWS:
                raise BarCsvError(f"{path}: more than {MAX_ROWS:,} rows; split the file")
            if row is _TOO_LONG:
                yield line_no, f"line longer than {MAX_LINE_CHARS:,} characters"
                continue
            try:
                bar = _parse_row(row)
            except ValueError as exc:
                yield line_no, str(exc)
                continue
            if session_minute is not None and not session_minute(bar.ts):
                yield line_no, f"{epoch_text(bar.ts)} is not a regular-session minute"
                continue
            yield line_no, bar


def check_file(path: Path, session_minute: Callable[[int], bool] | None = None) -> CsvCheck:
    """Read the whole file once, keeping only a count and the first problems (bounded memory)."""
    rows = 0
    problems: list[str] = []
    problem_count = 0
    for line_no, item in iter_bars(path, session_minute):
        rows += 1
        if isinstance(item, str):
            problem_count += 1
            if len(problems) < MAX_ERRORS_REPORTED:
                problems.append(f"line {line_no}: {item}")
    return CsvCheck(rows=rows, problems=tuple(problems), problem_count=problem_count)


def good_bars(path: Path, session_minute: Callable[[int], bool] | None = None) -> Iterator[Bar]:
    """Stream the bars of a file that :func:`check_file` found clean; any problem now raises."""
    for line_no, item in iter_bars(path, session_minute):
        if isinstance(item, str):
            raise BarCsvError(f"line {line_no}: {item}")
        yield item
