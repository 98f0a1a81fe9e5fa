"""stocks.db: minute bars in a long table, one row per (symbol, minute), plus fetch coverage.

Coverage records which (symbol, session) pairs were already fetched, so sessions whose minutes
simply had no trades (normal on the IEX feed) are not fetched again forever.
"""

from __future__ import annotations

from typing import Any

import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from itertools import repeat
from pathlib import Path

from app.storage.records import Bar
from app.storage.sqlite import SqliteStore, transaction
from app.storage.system_store import StoreError
from app.storage.timefmt import epoch_text, utc_text

SYMBOL_PATTERN = re.compile(r"[A-Z][A-Z0-9.]{0,9}")
MAX_REJECTED_REASONS = 10
_INF = float("inf")
_MAX_VOLUME = 2**62  # anything near SQLite's int64 limit is garbage, not a volume
# Building the NamedTuple through tuple.__new__ stays in C: ~20 µs for 200 bars instead of ~35
# through Bar._make, a Python-level call per row. Rows have exactly Bar's six fields.
_tuple_new = tuple.__new__

_SCHEMA_V1 = (
    """CREATE TABLE bars (
        symbol TEXT NOT NULL,
        ts INTEGER NOT NULL,
        open REAL NOT NULL,
        high REAL NOT NULL,
        low REAL NOT NULL,
        close REAL NOT NULL,
        volume INTEGER NOT NULL,
        PRIMARY KEY (symbol, ts)
    ) WITHOUT ROWID""",
    """CREATE TABLE coverage (
        symbol TEXT NOT NULL,
        session TEXT NOT NULL,
        fetched_at TEXT NOT NULL,
        PRIMARY KEY (symbol, session)
    ) WITHOUT ROWID""",
)


def _migration_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1:
        conn.execute(statement)


MIGRATIONS = (_migration_1,)

_BAR_COLUMNS = "ts, open, high, low, close, volume"
_SQL_LAST = (f"SELECT {_BAR_COLUMNS} FROM bars WHERE symbol = ? AND ts < ? "
             "ORDER BY ts DESC LIMIT ?")
_SQL_UPSERT = (
    "INSERT INTO bars (symbol, ts, open, high, low, close, volume) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (symbol, ts) DO UPDATE SET open = excluded.open, high = excluded.high, "
    "low = excluded.low, close = excluded.close, volume = excluded.volume")
_SQL_COVERAGE = ("INSERT INTO coverage (symbol, session, fetched_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (symbol, session) DO UPDATE SET fetched_at = excluded.fetched_at")


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What :meth:`MarketStore.upsert_bars` did: bars written, bars refused, and why (first few)."""

    stored: int
    rejected: int
    rejected_reasons: tuple[str, ...] = ()


def check_symbol(symbol: object) -> str:
    """Return ``symbol`` if it is a plausible US ticker (``A``–``Z`` first, then up to 9 of ``A-Z0-9.``).

    Raises :class:`StoreError` otherwise; the check also keeps symbols safe to put in URL paths.
    """
    if not isinstance(symbol, str) or SYMBOL_PATTERN.fullmatch(symbol) is None:
        shown = repr(symbol)[:24]
        raise StoreError(
            f"invalid ticker symbol {shown}: use 1-10 capital letters, digits or dots, "
            "starting with a letter (e.g. 'AAPL', 'BRK.B')")
    return symbol


def _session_text(session: object) -> str:
    if isinstance(session, datetime):  # also pandas.Timestamp: keep only its calendar date
        session = session.date()
    if not isinstance(session, date):
        raise StoreError(f"a session must be a datetime.date, not {type(session).__name__}")
    return session.isoformat()


def _reject_reason(bar: object, filt: Callable[[int], bool] | None) -> str:
    """Explain why a bar was refused (the slow path, only run for refused bars)."""
    fields: Any = bar  # anything may arrive here: each field is checked below
    try:
        ts, o, h, low, c, v = fields
    except (TypeError, ValueError):
        return f"not a 6-field bar (ts, open, high, low, close, volume): {repr(bar)[:60]}"
    try:
        when = epoch_text(int(ts))
    except (TypeError, ValueError, OverflowError, OSError):
        return f"timestamp {ts!r} is not epoch seconds"
    if ts != int(ts) or int(ts) % 60:
        return f"{when}: timestamp {ts!r} is not a whole minute"
    prices = (o, h, low, c)
    if not all(isinstance(p, (int, float)) and 0 < p < _INF for p in prices):
        return f"{when}: prices must be positive finite numbers, got {prices}"
    if h < max(o, c, low):
        return f"{when}: high {h} is below max(open, close, low) {max(o, c, low)}"
    if low > min(o, c):
        return f"{when}: low {low} is above min(open, close) {min(o, c)}"
    if not isinstance(v, (int, float)) or not 0 <= v < _MAX_VOLUME:
        return f"{when}: volume {v!r} must be a non-negative number below 2**62"
    if filt is not None:
        try:
            in_session = filt(int(ts))
        except ValueError as exc:  # e.g. a calendar that does not cover this date
            return f"{when}: not a regular-session minute ({exc})"
        if not in_session:
            return f"{when}: not a regular-session minute"
    return f"{when}: invalid bar"


class MarketStore(SqliteStore):
    """Minute bars and fetch coverage in stocks.db. One instance per thread (own connection).

    ``minute_filter`` (the engine's market calendar) says whether an epoch second is a
    regular-session bar minute; bars outside it are refused by :meth:`upsert_bars`.
    """

    MIGRATIONS = MIGRATIONS

    def __init__(self, path: str | Path, *,
                 minute_filter: Callable[[int], bool] | None = None, shared: bool = False) -> None:
        self._minute_filter = minute_filter
        self._known_symbols: set[str] = set()
        super().__init__(path, shared=shared)

    def _remember_symbol(self, symbol: str) -> None:
        """Validate once, then skip the regex on the hot read path."""
        check_symbol(symbol)
        if len(self._known_symbols) < 100_000:
            self._known_symbols.add(symbol)


    # -- bars --------------------------------------------------------------------------------

    def _valid_rows(self, symbol: str, bars: Iterable[Bar | tuple]) -> tuple[list[tuple], UpsertResult]:
        """Rows ready for ``_SQL_UPSERT`` and the result to report; writes nothing."""
        filt = self._minute_filter
        rows: list[tuple] = []
        append = rows.append
        rejected = 0
        reasons: list[str] = []
        for bar in bars:
            # Fast path: one chained comparison covers every price rule; NaN fails all of them.
            try:
                ts, o, h, low, c, v = bar
                its = int(ts)
                ok = (its == ts and its % 60 == 0 and 0 < low <= o <= h < _INF
                      and low <= c <= h and 0 <= v < _MAX_VOLUME and (filt is None or filt(its)))
            except (TypeError, ValueError, OverflowError):
                ok = False
            if ok:
                append((symbol, its, float(o), float(h), float(low), float(c), int(v)))
            else:
                rejected += 1
                if len(reasons) < MAX_REJECTED_REASONS:
                    reasons.append(_reject_reason(bar, filt))
        return rows, UpsertResult(stored=len(rows), rejected=rejected, rejected_reasons=tuple(reasons))

    def bar_problem(self, bar: Bar | tuple) -> str | None:
        """Why :meth:`upsert_bars` would refuse ``bar`` (same rules, same minute filter), or None if it is fine.

        Lets a caller that buffers bars before a batched write drop bad ones at once.
        """
        rows, result = self._valid_rows("A", (bar,))
        return None if rows else (result.rejected_reasons[0] if result.rejected_reasons else "invalid bar")

    def upsert_bars(self, symbol: str, bars: Iterable[Bar | tuple]) -> UpsertResult:
        """Store valid bars for ``symbol`` in one transaction; refuse and explain invalid ones.

        Idempotent: a bar already stored for the same minute is overwritten with the new values,
        so writing the same bars twice changes nothing. Refused: minutes outside the session
        (when a minute filter is set), timestamps that are not whole minutes, non-positive or
        non-finite prices, ``high < max(open, close, low)``, ``low > min(open, close)`` and
        negative volume.
        """
        check_symbol(symbol)
        rows, result = self._valid_rows(symbol, bars)
        if rows:
            with transaction(self._conn):
                self._conn.executemany(_SQL_UPSERT, rows)
        return result

    def upsert_many(self, batch: Mapping[str, Iterable[Bar | tuple]], *,
                    coverage: Mapping[str, Iterable[date]] | None = None) -> dict[str, UpsertResult]:
        """Store the bars of several symbols (and optionally their fetched sessions) in ONE transaction.

        Same rules and idempotence as :meth:`upsert_bars`, per symbol. One write per market minute
        across every symbol instead of one per symbol spares SD cards (each commit is a WAL fsync
        of its own). Every symbol is checked before anything is written: one bad ticker raises
        :class:`StoreError` and stores nothing. ``coverage`` marks sessions as fetched, as
        :meth:`record_coverage` does, inside the same transaction. No transaction at all when
        there is nothing to write.
        """
        if isinstance(batch, (str, bytes)) or not isinstance(batch, Mapping):
            raise StoreError(f"a batch must map ticker symbols to bars, not {type(batch).__name__}")
        for symbol in batch:
            check_symbol(symbol)
        coverage_rows: list[tuple[str, str, str]] = []
        if coverage:
            fetched_at = utc_text(datetime.now(timezone.utc))
            for symbol, sessions in coverage.items():
                check_symbol(symbol)
                coverage_rows.extend((symbol, _session_text(s), fetched_at) for s in sessions)
        results: dict[str, UpsertResult] = {}
        rows: list[tuple] = []
        for symbol, bars in batch.items():
            symbol_rows, results[symbol] = self._valid_rows(symbol, bars)
            rows.extend(symbol_rows)
        if rows or coverage_rows:
            with transaction(self._conn):
                if rows:
                    self._conn.executemany(_SQL_UPSERT, rows)
                if coverage_rows:
                    self._conn.executemany(_SQL_COVERAGE, coverage_rows)
        return results

    def replace_bars(self, batch: Mapping[str, Iterable[Bar | tuple]]) -> dict[str, UpsertResult]:
        """Replace stored minutes with Alpaca's own corrections (the stream's updated bars) in one
        transaction: a fetched bar gives way to the correction of its minute; a minute not stored
        yet is added. Same checks as :meth:`upsert_bars`. The one place a real bar is rewritten."""
        return self.upsert_many(batch)

    def last_bars(self, symbol: str, n: int, before_ts: int) -> list[Bar]:
        """The last ``n`` bars strictly before ``before_ts`` (epoch seconds), oldest first.

        Fewer than ``n`` when the store holds fewer. Hot path: one index range scan, no copies.
        """
        if n <= 0:
            if n == 0:
                return []
            raise StoreError(f"bar count must be >= 0, got {n}")
        if type(symbol) is not str or symbol not in self._known_symbols:
            self._remember_symbol(symbol)
        rows = self._conn.execute(_SQL_LAST, (symbol, before_ts, n)).fetchall()
        rows.reverse()
        return list(map(_tuple_new, repeat(Bar), rows))

    def bars_between(self, symbol: str, start_ts: int, end_ts: int) -> list[Bar]:
        """Bars with ``start_ts <= ts <= end_ts`` (both inclusive), oldest first."""
        check_symbol(symbol)
        if start_ts > end_ts:
            raise StoreError(f"range start {start_ts} is after its end {end_ts}")
        rows = self._conn.execute(
            f"SELECT {_BAR_COLUMNS} FROM bars WHERE symbol = ? AND ts BETWEEN ? AND ? ORDER BY ts",
            (symbol, start_ts, end_ts)).fetchall()
        return list(map(_tuple_new, repeat(Bar), rows))

    def first_bar_from(self, symbol: str, ts: int) -> Bar | None:
        """The earliest stored bar with ``ts`` at or after the given instant, or None."""
        check_symbol(symbol)
        row = self._conn.execute(
            f"SELECT {_BAR_COLUMNS} FROM bars WHERE symbol = ? AND ts >= ? ORDER BY ts LIMIT 1",
            (symbol, ts)).fetchone()
        return None if row is None else Bar._make(row)

    def latest_bar(self, symbol: str) -> Bar | None:
        """The newest stored bar of ``symbol``, or None if there is none."""
        check_symbol(symbol)
        row = self._conn.execute(
            f"SELECT {_BAR_COLUMNS} FROM bars WHERE symbol = ? ORDER BY ts DESC LIMIT 1",
            (symbol,)).fetchone()
        return None if row is None else Bar._make(row)

    def latest_bars(self, symbols: Iterable[str]) -> dict[str, Bar]:
        """The newest bar of each symbol that has one; symbols without bars are left out."""
        result: dict[str, Bar] = {}
        for symbol in symbols:
            bar = self.latest_bar(symbol)
            if bar is not None:
                result[symbol] = bar
        return result

    def symbols(self) -> list[str]:
        """Symbols that have at least one bar, sorted."""
        # A skip-scan: one index seek per symbol instead of reading every bar, as DISTINCT would.
        rows = self._conn.execute(
            "WITH RECURSIVE s(symbol) AS ("
            " SELECT MIN(symbol) FROM bars"
            " UNION ALL"
            " SELECT (SELECT MIN(symbol) FROM bars WHERE bars.symbol > s.symbol) FROM s"
            " WHERE s.symbol IS NOT NULL)"
            " SELECT symbol FROM s WHERE symbol IS NOT NULL").fetchall()
        return [row[0] for row in rows]

    def bar_count(self, symbol: str | None = None) -> int:
        """Number of stored bars, for one symbol or all."""
        if symbol is None:
            return self._conn.execute("SELECT COUNT(*) FROM bars").fetchone()[0]
        check_symbol(symbol)
        return self._conn.execute(
            "SELECT COUNT(*) FROM bars WHERE symbol = ?", (symbol,)).fetchone()[0]

    # -- coverage ----------------------------------------------------------------------------

    def record_coverage(self, symbol: str, sessions: Iterable[date]) -> None:
        """Mark sessions of ``symbol`` as fetched (now), whether or not they yielded bars."""
        check_symbol(symbol)
        fetched_at = utc_text(datetime.now(timezone.utc))
        rows = [(symbol, _session_text(s), fetched_at) for s in sessions]
        if not rows:
            return
        with transaction(self._conn):
            self._conn.executemany(_SQL_COVERAGE, rows)

    def covered_sessions(self, symbol: str, start: date, end: date) -> set[date]:
        """Sessions of ``symbol`` between ``start`` and ``end`` (inclusive) already fetched."""
        check_symbol(symbol)
        rows = self._conn.execute(
            "SELECT session FROM coverage WHERE symbol = ? AND session BETWEEN ? AND ?",
            (symbol, _session_text(start), _session_text(end))).fetchall()
        return {date.fromisoformat(row[0]) for row in rows}

    def missing_sessions(self, symbol: str, sessions: Iterable[date]) -> list[date]:
        """The given sessions (the calendar's, for some range) not yet fetched, in given order."""
        wanted = list(sessions)
        if not wanted:
            return []
        texts = [_session_text(s) for s in wanted]
        check_symbol(symbol)
        rows = self._conn.execute(
            "SELECT session FROM coverage WHERE symbol = ? AND session BETWEEN ? AND ?",
            (symbol, min(texts), max(texts))).fetchall()
        covered = {row[0] for row in rows}
        return [s.date() if isinstance(s, datetime) else s
                for s, text in zip(wanted, texts) if text not in covered]
