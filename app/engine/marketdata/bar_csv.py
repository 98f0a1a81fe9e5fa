"""Bar CSV files: what ``autotrader bars`` writes and what ``import-bars`` reads.

Written: ``timestamp,open,high,low,close,volume`` with UTC ``YYYY-MM-DDTHH:MM:SSZ`` timestamps.
Read: that layout, and the common ones real files come in: the CSV of alpaca-py's bar sets
(``symbol,timestamp,open,high,low,close,volume,trade_count,vwap`` with ``+00:00`` offsets),
``Date``/``Datetime`` headers, any column order, extra columns ignored, a UTF-8 byte-order mark,
integral float volumes (``6556.0``). Every timestamp must carry its offset (``Z``, ``+00:00``,
``-04:00``): a bare clock time could be New York's or UTC's.

Reading streams line by line with a bound on each line, so a hostile or huge file cannot
exhaust memory. This module only parses; the price rules are the store's and the calendar rules
the importer's (:mod:`app.engine.marketdata.bar_import`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TextIO

from app.storage.records import Bar
from app.storage.timefmt import epoch_text

HEADER = ("timestamp", "open", "high", "low", "close", "volume")
_tuple_new = tuple.__new__
MAX_LINE_CHARS = 1_000
MAX_ROWS = 20_000_000  # ~200 symbol-years; far beyond any real import, small enough to bound work
_SKIP_CHUNK_CHARS = 64 * 1024

# Header names accepted for each field (compared lower-cased, spaces and underscores ignored).
_ALIASES = {
    "timestamp": ("timestamp", "time", "datetime", "date", "t"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "v"),
    "symbol": ("symbol", "ticker"),
}
_BY_ALIAS = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}


class BarCsvError(ValueError):
    """The file cannot be imported; ``problems`` holds 'line N: what is wrong' strings."""

    def __init__(self, message: str, problems: tuple[str, ...] = (), problem_count: int = 0):
        super().__init__(message)
        self.problems = problems
        self.problem_count = problem_count or len(problems)


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each field sits in a file's rows; ``symbol`` is None when the file has no symbol column."""

    timestamp: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    symbol: int | None
    width: int
    ignored: tuple[str, ...]  # header names of the columns not read (e.g. trade_count, vwap)


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


def _layout(path: Path, fields: list[str]) -> Layout:
    names = [field.strip().lower().replace(" ", "").replace("_", "") for field in fields]
    where: dict[str, int] = {}
    ignored: list[str] = []
    for i, name in enumerate(names):
        field = _BY_ALIAS.get(name)
        if field is None:
            ignored.append(fields[i].strip())
            continue
        if field in where:
            raise BarCsvError(f"{path}: line 1 names the {field} column twice "
                              f"({fields[where[field]].strip()!r} and {fields[i].strip()!r})")
        where[field] = i
    lacking = [field for field in HEADER if field not in where]
    if lacking:
        raise BarCsvError(f"{path}: line 1 must be the header {','.join(HEADER)} (any order; symbol "
                          f"and other columns allowed); missing: {', '.join(lacking)}")
    return Layout(where["timestamp"], where["open"], where["high"], where["low"], where["close"],
                  where["volume"], where.get("symbol"), len(fields), tuple(ignored))


# Caches of the fast path: day -> epoch of its UTC midnight, "HH:MM:00<offset>" -> seconds into it.
# Each holds at most a few thousand entries (days of the file; minutes of a day × offsets seen).
_day_epochs: dict[str, int] = {}
_clock_seconds: dict[str, int] = {}
_CACHE_LIMIT = 100_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _clock(text: str) -> int | None:
    """Seconds after UTC midnight of ``HH:MM:00Z`` or ``HH:MM:00+HH:MM`` (may be negative), else None."""
    n = len(text)
    if n == 9:
        if text[8] != "Z":
            return None
        offset = 0
    elif n == 14 and text[11] == ":" and text[8] in "+-" and text[9:11].isdigit() and text[12:14].isdigit():
        offset = int(text[9:11]) * 3600 + int(text[12:14]) * 60
        if text[8] == "-":
            offset = -offset
    else:
        return None
    if text[2] != ":" or text[5] != ":" or text[6:8] != "00" or not (text[0:2].isdigit() and text[3:5].isdigit()):
        return None
    hour, minute = int(text[0:2]), int(text[3:5])
    if hour > 23 or minute > 59:
        return None
    return hour * 3600 + minute * 60 - offset


def _fast_timestamp(text: str) -> int | None:
    """The common forms ``YYYY-MM-DDTHH:MM:00Z`` and ``YYYY-MM-DD HH:MM:00+HH:MM`` by two dictionary
    lookups instead of building a datetime; None sends the text to the full parser."""
    if len(text) < 20 or text[10] not in "T ":
        return None
    seconds = _clock_seconds.get(text[11:])
    if seconds is None:
        seconds = _clock(text[11:])
        if seconds is None:
            return None
        if len(_clock_seconds) < _CACHE_LIMIT:
            _clock_seconds[text[11:]] = seconds
    day = _day_epochs.get(text[:10])
    if day is None:
        try:
            day = (date.fromisoformat(text[:10]).toordinal() - _EPOCH_ORDINAL) * 86_400
        except ValueError:
            return None
        if len(_day_epochs) < _CACHE_LIMIT:
            _day_epochs[text[:10]] = day
    return day + seconds


def parse_timestamp(text: str) -> int:
    """Epoch seconds of an ISO timestamp with an offset (``Z``, ``+00:00``, ``-04:00``), a whole minute."""
    ts = _fast_timestamp(text)
    if ts is not None:
        return ts
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {text[:40]!r} is not an ISO date and time "
                         "(e.g. 2024-06-03T13:30:00Z or 2024-06-03 09:30:00-04:00)") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp {text[:40]!r} has no UTC offset: add Z, +00:00 or the "
                         "New York offset (-05:00/-04:00)")
    if moment.second or moment.microsecond:
        raise ValueError(f"timestamp {text[:40]!r} is not a whole minute")
    return int(moment.timestamp())


def _volume(text: str) -> int:
    if text.endswith(".0"):  # pandas writes integral volumes as floats: 6556.0
        text = text[:-2]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"volume {text[:30]!r} is not a number") from None
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"volume {text[:30]!r} is not a whole number")
    return int(value)


def _price(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} {text[:30]!r} is not a number") from None


def parse_row(row: list[str], layout: Layout) -> tuple[str | None, Bar]:
    """``(symbol or None, Bar)`` of one data row; ValueError says what is wrong with it."""
    if len(row) != layout.width:
        raise ValueError(f"expected {layout.width} fields, found {len(row)}")
    ts = parse_timestamp(row[layout.timestamp])
    try:
        prices = (float(row[layout.open]), float(row[layout.high]), float(row[layout.low]),
                  float(row[layout.close]))
    except ValueError:
        for name in ("open", "high", "low", "close"):
            _price(name, row[getattr(layout, name)])  # raises, naming the field
        raise
    # tuple.__new__ builds the NamedTuple in C: a third of the parsing time through Bar(...).
    bar = _tuple_new(Bar, (ts, *prices, _volume(row[layout.volume])))
    symbol = None if layout.symbol is None else row[layout.symbol].strip().upper()
    return symbol, bar


def _skip_rest_of_line(handle: TextIO) -> None:
    """Read past the end of an over-long line a chunk at a time, never holding it whole."""
    while True:
        chunk = handle.readline(_SKIP_CHUNK_CHARS)
        if not chunk or chunk.endswith(("\n", "\r")):
            return


def _lines(handle: TextIO, where: list[int]) -> Iterator[str]:
    # readline with a limit, not ``for line in handle``: iterating reads a whole line however long,
    # so one 50 MB line without a newline would sit in memory at once. ``where[0]`` is the line
    # number of the line last yielded (blank lines are skipped but counted).
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        where[0] += 1
        if len(line) > MAX_LINE_CHARS:
            if not line.endswith(("\n", "\r")):
                _skip_rest_of_line(handle)
            yield "\x00"  # a marker line, turned into a problem below
            continue
        if line.strip():
            yield line


def iter_rows(path: Path) -> Iterator[tuple[Layout, int, tuple[str | None, Bar] | str]]:
    """Yield ``(layout, line_no, (symbol, Bar))`` for good rows and ``(layout, line_no, problem)``
    for bad ones, streaming. Raises :class:`BarCsvError` for a file with no usable header."""
    # utf-8-sig drops a byte-order mark (spreadsheet exports write one); undecodable bytes become
    # U+FFFD and the row fails as "not a number" instead of the whole file failing.
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        where = [0]
        reader = csv.reader(_lines(handle, where))
        header = next(reader, None)
        if header is None:
            raise BarCsvError(f"{path}: the file is empty (expected the header {','.join(HEADER)})")
        if header == ["\x00"]:
            raise BarCsvError(f"{path}: line 1 must be the header {','.join(HEADER)} "
                              f"(it is longer than {MAX_LINE_CHARS:,} characters)")
        layout = _layout(path, header)
        seen = 0
        for row in reader:
            seen += 1
            if seen > MAX_ROWS:
                raise BarCsvError(f"{path}: more than {MAX_ROWS:,} rows; split the file")
            line_no = where[0]
            if row == ["\x00"]:
                yield layout, line_no, f"line longer than {MAX_LINE_CHARS:,} characters"
                continue
            try:
                item = parse_row(row, layout)
            except ValueError as exc:
                yield layout, line_no, str(exc)
                continue
            yield layout, line_no, item


def iter_bars(path: Path) -> Iterator[tuple[int, Bar | str]]:
    """``(line_no, Bar)`` for good rows and ``(line_no, problem)`` for bad ones (symbols left out)."""
    for _, line_no, item in iter_rows(path):
        yield line_no, item if isinstance(item, str) else item[1]
