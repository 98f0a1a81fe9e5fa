"""stocks.db: minute bars in a long table, one row per (symbol, minute), plus fetch coverage.

Coverage records which (symbol, session) pairs were already fetched or imported, so sessions whose
minutes simply had no trades (normal on the IEX feed) are not fetched again forever. A session an
import holds only part of is recorded as partial, with the span it holds.

Every bar carries its provenance (:class:`BarSource`). The rules live here, inside the write
transactions, so no caller can get around them: synthetic bars are never stored for a symbol that
has real (or unknown) bars; real bars of a symbol replace its synthetic ones; a stored bar is only
ever overwritten by a bar of the same source, so a fetch never rewrites imported minutes.
"""

from __future__ import annotations

from typing import Any

import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from itertools import repeat
from operator import itemgetter
from pathlib import Path

from app.storage.records import Bar, BarSource
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
_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)

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


# Symbols in one skip-scan (one index seek per symbol), as DISTINCT over every bar would not.
_SQL_SYMBOLS = ("WITH RECURSIVE s(symbol) AS ("
                " SELECT MIN(symbol) FROM bars"
                " UNION ALL"
                " SELECT (SELECT MIN(symbol) FROM bars WHERE bars.symbol > s.symbol) FROM s"
                " WHERE s.symbol IS NOT NULL)"
                " SELECT symbol FROM s WHERE symbol IS NOT NULL")

_SCHEMA_V2 = (
    # Existing rows predate provenance: UNKNOWN (0), which is protected like real data.
    "ALTER TABLE bars ADD COLUMN source INTEGER NOT NULL DEFAULT 0 CHECK (source BETWEEN 0 AND 3)",
    "ALTER TABLE coverage ADD COLUMN source INTEGER NOT NULL DEFAULT 0 CHECK (source BETWEEN 0 AND 3)",
    "ALTER TABLE coverage ADD COLUMN complete INTEGER NOT NULL DEFAULT 1 CHECK (complete IN (0, 1))",
    "ALTER TABLE coverage ADD COLUMN first_ts INTEGER",  # partial sessions: the span held
    "ALTER TABLE coverage ADD COLUMN last_ts INTEGER",
    # Which sources each symbol has bars of: the never-mix rule is checked with one seek per write.
    """CREATE TABLE bar_sources (
        symbol TEXT NOT NULL,
        source INTEGER NOT NULL CHECK (source BETWEEN 0 AND 3),
        PRIMARY KEY (symbol, source)
    ) WITHOUT ROWID""",
    "INSERT INTO bar_sources (symbol, source) "
    + _SQL_SYMBOLS.replace("SELECT symbol FROM s", "SELECT symbol, 0 FROM s"),
)


def _migration_2(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V2:
        conn.execute(statement)


MIGRATIONS = (_migration_1, _migration_2)

_BAR_COLUMNS = "ts, open, high, low, close, volume"
_SQL_LAST = (f"SELECT {_BAR_COLUMNS} FROM bars WHERE symbol = ? AND ts < ? "
             "ORDER BY ts DESC LIMIT ?")
# A stored minute is overwritten only by a bar of the same source (late corrections of a fetch,
# the same synthetic bar again); a fetch never rewrites an imported or unknown minute.
_SQL_UPSERT = (
    "INSERT INTO bars (symbol, ts, open, high, low, close, volume, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (symbol, ts) DO UPDATE SET open = excluded.open, high = excluded.high, "
    "low = excluded.low, close = excluded.close, volume = excluded.volume "
    "WHERE bars.source = excluded.source")
# A complete session stays complete; partial spans of the same session are merged.
_SQL_COVERAGE = (
    "INSERT INTO coverage (symbol, session, fetched_at, source, complete, first_ts, last_ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (symbol, session) DO UPDATE SET fetched_at = excluded.fetched_at, "
    "source = excluded.source, complete = excluded.complete, "
    "first_ts = CASE WHEN excluded.complete THEN NULL ELSE MIN(coverage.first_ts, excluded.first_ts) END, "
    "last_ts = CASE WHEN excluded.complete THEN NULL ELSE MAX(coverage.last_ts, excluded.last_ts) END "
    "WHERE excluded.complete = 1 OR coverage.complete = 0")
_IMPORT_BATCH = 5_000


def never_mixed_reason(symbol: str) -> str:
    """The sentence for synthetic bars refused beside a symbol's real bars."""
    return (f"{symbol} has real (or unknown-source) bars in this data folder: simulated bars are "
            "never stored beside them")


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What :meth:`MarketStore.upsert_bars` did for one symbol.

    ``stored``: bars written (new or overwritten); ``rejected``: invalid bars, with the first few
    reasons; ``kept``: valid bars not written because the minute holds a bar of another source;
    ``blocked``: why nothing at all was written (synthetic bars for a symbol with real ones);
    ``replaced_synthetic``: synthetic bars of the symbol deleted because real ones arrived.
    """

    stored: int
    rejected: int
    rejected_reasons: tuple[str, ...] = ()
    kept: int = 0
    blocked: str | None = None
    replaced_synthetic: int = 0


@dataclass(frozen=True, slots=True)
class SessionSpan:
    """Coverage an import records for one session: complete, or partial with the span it holds."""

    session: date
    complete: bool
    first_ts: int
    last_ts: int


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What an import stored for one symbol. ``rows`` distinct minutes = ``new`` + ``present``;
    ``differing`` of the present ones hold other values than the file (the stored bar is kept)."""

    symbol: str
    rows: int
    new: int
    present: int
    differing: int
    replaced_synthetic: int
    sessions_complete: int
    sessions_partial: int


def _source(source: object) -> BarSource:
    if isinstance(source, bool) or not isinstance(source, int):
        raise StoreError(f"a bar source must be a BarSource, not {source!r}")
    try:
        return BarSource(source)
    except ValueError:
        raise StoreError(f"unknown bar source {source!r}") from None


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


def _valid_row(symbol: str, bar: Any, filt: Callable[[int], bool] | None, source: int) -> tuple | None:
    """The row to store for a valid bar, None for an invalid one: the one place the bar rules live."""
    # Fast path: one chained comparison covers every price rule; NaN fails all of them.
    try:
        ts, o, h, low, c, v = bar
        its = int(ts)
        ok = (its == ts and its % 60 == 0 and 0 < low <= o <= h < _INF
              and low <= c <= h and 0 <= v < _MAX_VOLUME and (filt is None or filt(its)))
    except (TypeError, ValueError, OverflowError):
        return None
    return (symbol, its, float(o), float(h), float(low), float(c), int(v), source) if ok else None


class MarketStore(SqliteStore):
    """Minute bars and fetch coverage in stocks.db. One instance per thread (own connection).

    ``minute_filter`` (the engine's market calendar) says whether an epoch second is a
    regular-session bar minute; bars outside it are refused by :meth:`upsert_bars`.
    """

    MIGRATIONS = MIGRATIONS

    def __init__(self, path: str | Path, *,
                 minute_filter: Callable[[int], bool] | None = None, shared: bool = False,
                 readonly: bool = False) -> None:
        self._minute_filter = minute_filter
        self._known_symbols: set[str] = set()
        super().__init__(path, shared=shared, readonly=readonly)

    def _remember_symbol(self, symbol: str) -> None:
        """Validate once, then skip the regex on the hot read path."""
        check_symbol(symbol)
        if len(self._known_symbols) < 100_000:
            self._known_symbols.add(symbol)


    # -- bars --------------------------------------------------------------------------------

    def _valid_rows(self, symbol: str, bars: Iterable[Bar | tuple],
                    source: int = 0) -> tuple[list[tuple], UpsertResult]:
        """Rows ready for ``_SQL_UPSERT`` and the result to report; writes nothing."""
        filt = self._minute_filter
        rows: list[tuple] = []
        append = rows.append
        rejected = 0
        reasons: list[str] = []
        for bar in bars:
            row = _valid_row(symbol, bar, filt, source)
            if row is not None:
                append(row)
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

    def upsert_bars(self, symbol: str, bars: Iterable[Bar | tuple], *, source: BarSource) -> UpsertResult:
        """Store valid bars of ``source`` for ``symbol`` in one transaction; refuse and explain invalid ones.

        Idempotent: a bar already stored for the same minute by the same source is overwritten with
        the new values, so writing the same bars twice changes nothing. Refused: minutes outside the
        session (when a minute filter is set), timestamps that are not whole minutes, non-positive or
        non-finite prices, ``high < max(open, close, low)``, ``low > min(open, close)`` and negative
        volume. The provenance rules of this module apply (see its docstring).
        """
        return self.upsert_many({symbol: bars}, source=source)[symbol]

    def upsert_many(self, batch: Mapping[str, Iterable[Bar | tuple]], *, source: BarSource,
                    coverage: Mapping[str, Iterable[date]] | None = None) -> dict[str, UpsertResult]:
        """Store the bars of several symbols (and optionally their fetched sessions) in ONE transaction.

        Same rules and idempotence as :meth:`upsert_bars`, per symbol. One write per market minute
        across every symbol instead of one per symbol spares SD cards (each commit is a WAL fsync
        of its own). Every symbol is checked before anything is written: one bad ticker raises
        :class:`StoreError` and stores nothing. ``coverage`` marks sessions as completely fetched
        from ``source``, as :meth:`record_coverage` does, inside the same transaction. A symbol
        whose bars are refused as a whole (``blocked``) gets no coverage either. No transaction at
        all when there is nothing to write.
        """
        source = _source(source)
        if isinstance(batch, (str, bytes)) or not isinstance(batch, Mapping):
            raise StoreError(f"a batch must map ticker symbols to bars, not {type(batch).__name__}")
        for symbol in batch:
            check_symbol(symbol)
        coverage_rows: dict[str, list[tuple]] = {}
        if coverage:
            fetched_at = utc_text(datetime.now(timezone.utc))
            for symbol, sessions in coverage.items():
                check_symbol(symbol)
                coverage_rows[symbol] = [(symbol, _session_text(s), fetched_at, int(source), 1, None, None)
                                         for s in sessions]
        results: dict[str, UpsertResult] = {}
        rows: dict[str, list[tuple]] = {}
        for symbol, bars in batch.items():
            rows[symbol], results[symbol] = self._valid_rows(symbol, bars, int(source))
        if not any(rows.values()) and not any(coverage_rows.values()):
            return results
        conn = self._conn
        with transaction(conn):
            for symbol in dict.fromkeys([*rows, *coverage_rows]):
                symbol_rows = rows.get(symbol, [])
                symbol_coverage = coverage_rows.get(symbol, [])
                if not symbol_rows and not symbol_coverage:
                    continue
                blocked, replaced = self._make_room(symbol, source)
                result = results.get(symbol)
                if blocked is not None:
                    if result is not None:
                        results[symbol] = UpsertResult(0, result.rejected, result.rejected_reasons,
                                                       blocked=blocked)
                    continue
                stored = 0
                if symbol_rows:
                    before = conn.total_changes
                    conn.executemany(_SQL_UPSERT, symbol_rows)
                    stored = conn.total_changes - before
                    self._register(symbol, source)
                if symbol_coverage:
                    conn.executemany(_SQL_COVERAGE, symbol_coverage)
                if result is not None:
                    results[symbol] = UpsertResult(stored, result.rejected, result.rejected_reasons,
                                                   kept=len(symbol_rows) - stored, replaced_synthetic=replaced)
        return results

    # -- provenance ----------------------------------------------------------------------------

    def _present_sources(self, symbol: str) -> set[int]:
        return {row[0] for row in self._conn.execute(
            "SELECT source FROM bar_sources WHERE symbol = ?", (symbol,))}

    def _make_room(self, symbol: str, source: BarSource) -> tuple[str | None, int]:
        """Inside a write transaction: may ``source`` bars be written for ``symbol``?

        Returns (why not, or None; synthetic bars deleted to make way for real ones).
        """
        present = self._present_sources(symbol)
        if source is BarSource.SIMULATED:
            return (never_mixed_reason(symbol) if present - {BarSource.SIMULATED} else None), 0
        if BarSource.SIMULATED not in present:
            return None, 0
        conn = self._conn
        replaced = conn.execute("DELETE FROM bars WHERE symbol = ? AND source = ?",
                                (symbol, int(BarSource.SIMULATED))).rowcount
        conn.execute("DELETE FROM coverage WHERE symbol = ? AND source = ?", (symbol, int(BarSource.SIMULATED)))
        conn.execute("DELETE FROM bar_sources WHERE symbol = ? AND source = ?",
                     (symbol, int(BarSource.SIMULATED)))
        return None, replaced

    def _register(self, symbol: str, source: BarSource) -> None:
        self._conn.execute("INSERT OR IGNORE INTO bar_sources (symbol, source) VALUES (?, ?)",
                           (symbol, int(source)))

    def sources(self, symbol: str) -> frozenset[BarSource]:
        """The sources ``symbol`` has bars of in this file (empty when it has none)."""
        check_symbol(symbol)
        return frozenset(BarSource(s) for s in self._present_sources(symbol))

    def source_counts(self, symbol: str, start_ts: int, end_ts: int) -> dict[BarSource, int]:
        """How many bars of each source ``symbol`` has with ``start_ts <= ts <= end_ts``."""
        check_symbol(symbol)
        present = self._present_sources(symbol)
        if len(present) == 1:
            # Every bar of the symbol is of that source: counting the range's rows reads no column
            # (a fifth of the time of grouping them, over five years of minutes).
            (count,) = self._conn.execute(
                "SELECT COUNT(*) FROM bars WHERE symbol = ? AND ts BETWEEN ? AND ?",
                (symbol, start_ts, end_ts)).fetchone()
            return {BarSource(present.pop()): count} if count else {}
        rows = self._conn.execute(
            "SELECT source, COUNT(*) FROM bars WHERE symbol = ? AND ts BETWEEN ? AND ? GROUP BY source",
            (symbol, start_ts, end_ts)).fetchall()
        return {BarSource(source): count for source, count in rows}

    def bar_days(self, symbol: str) -> list[int]:
        """The UTC day numbers (epoch seconds // 86400) on which ``symbol`` has bars, oldest first."""
        check_symbol(symbol)
        rows = self._conn.execute("SELECT DISTINCT ts / 86400 FROM bars WHERE symbol = ? ORDER BY 1",
                                  (symbol,)).fetchall()
        return [row[0] for row in rows]

    def relabel_unknown(self, symbol: str, source: BarSource) -> int:
        """Give ``symbol``'s bars and coverage of unknown source (stored before provenance) the source
        a caller has verified, e.g. SIMULATED after comparing them with the simulation. Only when
        every bar of the symbol is of unknown source (checked in the transaction); returns bars relabelled."""
        check_symbol(symbol)
        source = _source(source)
        unknown = int(BarSource.UNKNOWN)
        conn = self._conn
        with transaction(conn):
            if self._present_sources(symbol) != {unknown}:
                return 0
            changed = conn.execute("UPDATE bars SET source = ? WHERE symbol = ? AND source = ?",
                                   (int(source), symbol, unknown)).rowcount
            conn.execute("UPDATE coverage SET source = ? WHERE symbol = ? AND source = ?",
                         (int(source), symbol, unknown))
            conn.execute("DELETE FROM bar_sources WHERE symbol = ? AND source = ?", (symbol, unknown))
            self._register(symbol, source)
        return changed

    def begin_import(self) -> BarImport:
        """Stage an import's bars on disk (a temporary table), to store them all at once or not at all."""
        return BarImport(self)

    def replace_bars(self, batch: Mapping[str, Iterable[Bar | tuple]]) -> dict[str, UpsertResult]:
        """Replace stored minutes with Alpaca's own corrections (the stream's updated bars) in one
        transaction: a fetched bar gives way to the correction of its minute; a minute not stored
        yet is added. Same checks as :meth:`upsert_bars`; like any Alpaca bar, a correction never
        rewrites an imported minute. The one place an Alpaca bar is rewritten."""
        return self.upsert_many(batch, source=BarSource.ALPACA)

    def prune_simulated(self, before_ts: int) -> int:
        """Delete simulated bars with ``ts < before_ts`` and their coverage; returns bars deleted.

        Only ``BarSource.SIMULATED`` rows are ever touched: bars fetched from Alpaca, imported from
        a file or of unknown source stay. One transaction per symbol, so a large first prune never
        holds the write lock for long. The freed pages are reused by new bars (the file stops
        growing; it does not shrink without a VACUUM).
        """
        if isinstance(before_ts, bool) or not isinstance(before_ts, int):
            raise StoreError(f"a prune cut-off must be epoch seconds, not {before_ts!r}")
        sim = int(BarSource.SIMULATED)
        cutoff_day = datetime.fromtimestamp(before_ts, timezone.utc).date().isoformat()
        symbols = [row[0] for row in self._conn.execute(
            "SELECT symbol FROM bar_sources WHERE source = ?", (sim,))]
        deleted = 0
        for symbol in symbols:
            with transaction(self._conn) as conn:
                deleted += conn.execute("DELETE FROM bars WHERE symbol = ? AND ts < ? AND source = ?",
                                        (symbol, before_ts, sim)).rowcount
                # A whole session before the cut-off no longer has its bars: no coverage claims it.
                conn.execute("DELETE FROM coverage WHERE symbol = ? AND session < ? AND source = ?",
                             (symbol, cutoff_day, sim))
                left = conn.execute("SELECT 1 FROM bars WHERE symbol = ? AND source = ? LIMIT 1",
                                    (symbol, sim)).fetchone()
                if left is None:
                    conn.execute("DELETE FROM bar_sources WHERE symbol = ? AND source = ?", (symbol, sim))
        return deleted

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

    def bar_columns(self, symbol: str, start_ts: int, end_ts: int) -> tuple[list[int], list[float], list[float]]:
        """The ``ts``, ``open`` and ``close`` of the bars :meth:`bars_between` returns, as three lists.

        What a replay reads every minute, in about half the time of whole bars (a value per column
        per row is most of a fetch). Call both inside one :meth:`reading` block to get the same bars.
        """
        check_symbol(symbol)
        if start_ts > end_ts:
            raise StoreError(f"range start {start_ts} is after its end {end_ts}")
        rows = self._conn.execute(
            "SELECT ts, open, close FROM bars WHERE symbol = ? AND ts BETWEEN ? AND ? ORDER BY ts",
            (symbol, start_ts, end_ts)).fetchall()
        return list(map(_first, rows)), list(map(_second, rows)), list(map(_third, rows))

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Every read in the block sees one state of the file (a read transaction), whatever other
        connections commit meanwhile. Writes on this connection wait until the block ends."""
        with transaction(self._conn, immediate=False):
            yield

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
        rows = self._conn.execute(_SQL_SYMBOLS).fetchall()
        return [row[0] for row in rows]

    def bar_count(self, symbol: str | None = None) -> int:
        """Number of stored bars, for one symbol or all."""
        if symbol is None:
            return self._conn.execute("SELECT COUNT(*) FROM bars").fetchone()[0]
        check_symbol(symbol)
        return self._conn.execute(
            "SELECT COUNT(*) FROM bars WHERE symbol = ?", (symbol,)).fetchone()[0]

    # -- coverage ----------------------------------------------------------------------------

    def record_coverage(self, symbol: str, sessions: Iterable[date], *, source: BarSource) -> None:
        """Mark sessions of ``symbol`` as completely fetched (now) from ``source``, whether or not they
        yielded bars. Real coverage replaces the symbol's synthetic bars; synthetic coverage is not
        recorded for a symbol with real bars."""
        check_symbol(symbol)
        source = _source(source)
        fetched_at = utc_text(datetime.now(timezone.utc))
        rows = [(symbol, _session_text(s), fetched_at, int(source), 1, None, None) for s in sessions]
        if not rows:
            return
        with transaction(self._conn):
            blocked, _ = self._make_room(symbol, source)
            if blocked is None:
                self._conn.executemany(_SQL_COVERAGE, rows)

    def covered_sessions(self, symbol: str, start: date, end: date) -> set[date]:
        """Sessions of ``symbol`` between ``start`` and ``end`` (inclusive) completely fetched or imported."""
        check_symbol(symbol)
        rows = self._conn.execute(
            "SELECT session FROM coverage WHERE symbol = ? AND session BETWEEN ? AND ? AND complete = 1",
            (symbol, _session_text(start), _session_text(end))).fetchall()
        return {date.fromisoformat(row[0]) for row in rows}

    def _coverage_in(self, symbol: str, texts: Sequence[str], complete: int) -> set[str]:
        rows = self._conn.execute(
            "SELECT session FROM coverage WHERE symbol = ? AND session BETWEEN ? AND ? AND complete = ?",
            (symbol, min(texts), max(texts), complete)).fetchall()
        return {row[0] for row in rows}

    def missing_sessions(self, symbol: str, sessions: Iterable[date]) -> list[date]:
        """The given sessions (the calendar's, for some range) not completely fetched or imported yet,
        in given order. Partially imported sessions are among them."""
        wanted = list(sessions)
        if not wanted:
            return []
        texts = [_session_text(s) for s in wanted]
        check_symbol(symbol)
        covered = self._coverage_in(symbol, texts, 1)
        return [s.date() if isinstance(s, datetime) else s
                for s, text in zip(wanted, texts) if text not in covered]

    def partial_sessions(self, symbol: str, sessions: Iterable[date]) -> list[date]:
        """The given sessions an import holds only part of (recorded partial, not complete)."""
        wanted = list(sessions)
        if not wanted:
            return []
        texts = [_session_text(s) for s in wanted]
        check_symbol(symbol)
        partial = self._coverage_in(symbol, texts, 0)
        return [s.date() if isinstance(s, datetime) else s
                for s, text in zip(wanted, texts) if text in partial]


_STAGE = "temp.import_rows"
_SQL_STAGE = (f"INSERT INTO {_STAGE} (symbol, ts, open, high, low, close, volume, line) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (symbol, ts) DO NOTHING")


class BarImport:
    """An import staged in a temporary on-disk table, stored in one transaction or not at all.

    :meth:`add` checks rows with the store's bar rules and finds duplicate minutes (identical ones
    are counted, conflicting ones refused with both line numbers) without holding the file in
    memory: SQLite spills the staging table to a temporary file. :meth:`commit` writes every staged
    bar that is new, keeps every minute already stored, records coverage, and replaces the
    symbols' synthetic bars, all in one transaction. Leaving it without :meth:`commit` (or
    :meth:`close`) writes nothing to stocks.db.
    """

    def __init__(self, store: MarketStore) -> None:
        self._store = store
        self._conn = store.connection
        self.duplicates = 0
        self._symbols: set[str] = set()
        conn = self._conn
        conn.execute("PRAGMA temp_store = FILE")  # never in RAM: a 200 MB file must stay bounded
        conn.execute(f"DROP TABLE IF EXISTS {_STAGE}")
        conn.execute(f"""CREATE TABLE {_STAGE} (
            symbol TEXT NOT NULL, ts INTEGER NOT NULL, open REAL NOT NULL, high REAL NOT NULL,
            low REAL NOT NULL, close REAL NOT NULL, volume INTEGER NOT NULL, line INTEGER NOT NULL,
            PRIMARY KEY (symbol, ts)) WITHOUT ROWID""")
        conn.execute("BEGIN")  # staging writes only the temporary database: no lock on stocks.db

    def add(self, rows: Sequence[tuple[int, str, Bar | tuple]]) -> list[str]:
        """Stage ``(line_no, symbol, bar)`` rows; return 'line N: problem' for every refused row."""
        problems: list[str] = []
        staged: list[tuple] = []
        append = staged.append
        filt = self._store._minute_filter
        for line_no, symbol, bar in rows:
            if symbol not in self._symbols:
                check_symbol(symbol)
                self._symbols.add(symbol)
            row = _valid_row(symbol, bar, filt, line_no)  # the line number where the source goes
            if row is None:
                problems.append(f"line {line_no}: {_reject_reason(bar, filt)}")
            else:
                append(row)
        if not staged:
            return problems
        conn = self._conn
        before = conn.total_changes
        conn.executemany(_SQL_STAGE, staged)
        if conn.total_changes - before == len(staged):
            return problems
        # Some minutes were staged already: the first row of a minute holds it; compare the others.
        for row in staged:
            first = conn.execute(f"SELECT open, high, low, close, volume, line FROM {_STAGE} "
                                 "WHERE symbol = ? AND ts = ?", row[:2]).fetchone()
            if first[5] == row[7]:
                continue
            if tuple(first[:5]) == row[2:7]:
                self.duplicates += 1
            else:
                problems.append(f"line {row[7]}: {epoch_text(row[1])} {row[0]} is also on line {first[5]} "
                                "with different values")
        return problems

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols staged so far."""
        return frozenset(self._symbols)

    def commit(self, coverage: Mapping[str, Sequence[SessionSpan]]) -> dict[str, ImportCounts]:
        """Store the staged bars as IMPORTED and their coverage, in one transaction; returns counts per symbol."""
        conn = self._conn
        conn.execute("COMMIT")  # the staging table (temporary database only)
        fetched_at = utc_text(datetime.now(timezone.utc))
        counts: dict[str, ImportCounts] = {}
        imported = int(BarSource.IMPORTED)
        try:
            with transaction(conn):
                for symbol in sorted(self._symbols):
                    _, replaced = self._store._make_room(symbol, BarSource.IMPORTED)
                    rows = conn.execute(f"SELECT COUNT(*) FROM {_STAGE} WHERE symbol = ?", (symbol,)).fetchone()[0]
                    present, differing = conn.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(b.open != i.open OR b.high != i.high OR b.low != i.low "
                        f"OR b.close != i.close OR b.volume != i.volume), 0) FROM {_STAGE} i "
                        "JOIN bars b ON b.symbol = i.symbol AND b.ts = i.ts WHERE i.symbol = ?",
                        (symbol,)).fetchone()
                    conn.execute(
                        "INSERT INTO bars (symbol, ts, open, high, low, close, volume, source) "
                        f"SELECT symbol, ts, open, high, low, close, volume, ? FROM {_STAGE} WHERE symbol = ? "
                        "ON CONFLICT (symbol, ts) DO NOTHING", (imported, symbol))
                    if rows - present:
                        self._store._register(symbol, BarSource.IMPORTED)
                    spans = list(coverage.get(symbol, ()))
                    conn.executemany(_SQL_COVERAGE, [
                        (symbol, _session_text(span.session), fetched_at, imported, 1 if span.complete else 0,
                         None if span.complete else span.first_ts, None if span.complete else span.last_ts)
                        for span in spans])
                    complete = sum(1 for span in spans if span.complete)
                    counts[symbol] = ImportCounts(symbol, rows, rows - present, present, differing, replaced,
                                                  complete, len(spans) - complete)
        finally:
            self.close()
        return counts

    def close(self) -> None:
        """Drop the staging table (rolling back what is staged); stocks.db is untouched."""
        conn = self._conn
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute(f"DROP TABLE IF EXISTS {_STAGE}")
