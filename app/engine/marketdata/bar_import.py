"""Importing a bar CSV file into stocks.db: all of it or nothing, in bounded memory, with coverage.

One streaming pass parses each row (:mod:`app.engine.marketdata.bar_csv`), checks it against the exchange
calendar and stages it on disk with the store's bar rules (:meth:`MarketStore.begin_import`);
only a file without a single refused row is then stored, in one transaction, as
``BarSource.IMPORTED``. Minutes already stored are kept as they are and counted.

Coverage: for each symbol, every session between its first and last row that has rows is
recorded complete (IEX-style minutes without trades are normal). The first and last session count
complete only when their rows reach within ``EDGE_TOLERANCE_S`` of the session's open and close;
otherwise they are recorded partial with the span the file holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from app.engine.marketdata.bar_csv import BarCsvError, iter_rows
from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.storage.market_store import ImportCounts, MarketStore, SessionSpan, StoreError, check_symbol
from app.storage.records import Bar
from app.storage.timefmt import epoch_text

MAX_PROBLEMS_REPORTED = 20
EDGE_TOLERANCE_S = 30 * 60  # a first/last session starting/ending this close to its open/close is complete
_STAGE_BATCH = 5_000
_DAY = 86_400
NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class ImportSummary:
    """What an import did. ``rows`` read = Σ new + Σ present + ``duplicates`` + ``dropped_extended``."""

    path: Path
    rows: int
    symbols: dict[str, ImportCounts]
    duplicates: int
    dropped_extended: int
    ignored_columns: tuple[str, ...]
    empty_sessions: dict[str, tuple[date, ...]] = field(default_factory=dict)

    @property
    def new(self) -> int:
        """Bars stored by this import."""
        return sum(c.new for c in self.symbols.values())

    @property
    def present(self) -> int:
        """Distinct minutes of the file already stored before (kept as stored)."""
        return sum(c.present for c in self.symbols.values())

    def lines(self) -> list[str]:
        """The summary a person reads, one line per symbol and one for the file."""
        out = [f"imported {self.new:,} new bars for {', '.join(sorted(self.symbols))} from {self.path}: "
               f"{self.rows:,} rows read, {self.present:,} already present, {self.duplicates:,} duplicate "
               f"rows (stored once), {self.dropped_extended:,} extended-hours rows dropped"]
        for symbol, c in sorted(self.symbols.items()):
            text = f"  {symbol}: {c.new:,} new, {c.present:,} already present"
            if c.differing:
                text += f" ({c.differing:,} differ from the file; the stored bars were kept)"
            text += f"; coverage: {c.sessions_complete:,} complete sessions, {c.sessions_partial:,} partial"
            if c.replaced_synthetic:
                text += f"; replaced {c.replaced_synthetic:,} simulated bars"
            empty = self.empty_sessions.get(symbol, ())
            if empty:
                shown = ", ".join(d.isoformat() for d in empty[:5]) + (" …" if len(empty) > 5 else "")
                text += f"; {len(empty):,} sessions inside the file's range have no rows and stay missing ({shown})"
            out.append(text)
        if self.ignored_columns:
            out.append(f"  columns not imported: {', '.join(self.ignored_columns)}")
        return out


class _Problems:
    """Count every refused row, keep the first few sentences."""

    def __init__(self) -> None:
        self.count = 0
        self.shown: list[str] = []

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_PROBLEMS_REPORTED:
            self.shown.append(text)

    def extend(self, texts: list[str]) -> None:
        for text in texts:
            self.add(text)


def _outside_hours(calendar: MarketCalendar, ts: int) -> str | None:
    """Why ``ts`` is not a regular-session minute: None for extended hours of a trading day, else a sentence."""
    day = datetime.fromtimestamp(ts, NEW_YORK).date()
    try:
        trading = calendar.is_session(day)
    except CalendarRangeError as exc:
        return str(exc)
    if not trading:
        return f"{epoch_text(ts)} is on {day.isoformat()} ({day.strftime('%A')}), not a trading day"
    return None


def import_bars_file(path: Path, store: MarketStore, calendar: MarketCalendar, *, symbol: str | None = None,
                     regular_hours_only: bool = False) -> ImportSummary:
    """Import ``path`` into ``store``; raise :class:`BarCsvError` (nothing written) if any row is refused.

    ``symbol``: the ticker for a file without a symbol column, or the one a file's symbol column
    must hold on every row (None: take every symbol of the column). ``regular_hours_only``: drop
    rows outside the regular session of a trading day instead of refusing them.
    """
    problems = _Problems()
    staging = store.begin_import()
    committed = False
    try:
        rows = dropped = 0
        spans: dict[tuple[str, int], list[int]] = {}  # (symbol, UTC day) -> [first ts, last ts]
        batch: list[tuple[int, str, Bar]] = []
        known: set[str] = set()
        layout = None
        for row_layout, line_no, item in iter_rows(path):
            layout = row_layout
            rows += 1
            if isinstance(item, str):
                problems.add(f"line {line_no}: {item}")
                continue
            row_symbol, bar = item
            if row_symbol is None:
                if symbol is None:
                    raise BarCsvError(f"{path}: the file has no symbol column: name the symbol to import it as")
                row_symbol = symbol
            elif symbol is not None and row_symbol != symbol:
                problems.add(f"line {line_no}: the row is for {row_symbol[:12]!r}, not {symbol} (leave out the "
                             "symbol to import every symbol of the file)")
                continue
            elif row_symbol not in known:
                try:
                    check_symbol(row_symbol)
                except StoreError as exc:
                    problems.add(f"line {line_no}: {exc}")
                    continue
                known.add(row_symbol)
            ts = bar.ts
            try:
                regular = calendar.is_session_minute(ts)
            except CalendarRangeError as exc:
                problems.add(f"line {line_no}: {exc}")
                continue
            if not regular:
                reason = _outside_hours(calendar, ts)
                if reason is not None:
                    problems.add(f"line {line_no}: {reason}")
                elif regular_hours_only:
                    dropped += 1
                else:
                    problems.add(f"line {line_no}: {epoch_text(ts)} is outside regular trading hours "
                                 "(--regular-hours-only drops such rows)")
                continue
            span = spans.get((row_symbol, ts // _DAY))
            if span is None:
                spans[(row_symbol, ts // _DAY)] = [ts, ts]
            elif ts < span[0]:
                span[0] = ts
            elif ts > span[1]:
                span[1] = ts
            batch.append((line_no, row_symbol, bar))
            if len(batch) >= _STAGE_BATCH:
                problems.extend(staging.add(batch))
                batch = []
        if batch:
            problems.extend(staging.add(batch))
        if problems.count:
            raise BarCsvError(f"{problems.count:,} bad row(s) in {path}: nothing imported",
                              tuple(problems.shown), problems.count)
        if not staging.symbols:
            raise BarCsvError(f"{path}: no bars to import" + (
                f" ({dropped:,} extended-hours rows dropped)" if dropped else ""))
        coverage, empty = _coverage(calendar, spans)
        counts = staging.commit(coverage)
        committed = True
    finally:
        if not committed:
            staging.close()
    return ImportSummary(path, rows, counts, staging.duplicates, dropped,
                         layout.ignored if layout is not None else (), empty)


def _coverage(calendar: MarketCalendar, spans: dict[tuple[str, int], list[int]]
              ) -> tuple[dict[str, list[SessionSpan]], dict[str, tuple[date, ...]]]:
    """Coverage to record per symbol, and the sessions inside each symbol's range without rows."""
    by_symbol: dict[str, dict[date, list[int]]] = {}
    for (symbol, _), (first, last) in spans.items():
        session = calendar.session_of(first)
        assert session is not None  # every staged row is a session minute
        by_symbol.setdefault(symbol, {})[session] = [first, last]
    coverage: dict[str, list[SessionSpan]] = {}
    empty: dict[str, tuple[date, ...]] = {}
    for symbol, sessions in by_symbol.items():
        days = sorted(sessions)
        head, tail = days[0], days[-1]
        spans_out = []
        for day in days:
            first, last = sessions[day]
            complete = True
            if day == head and first > int(calendar.session_open(day).timestamp()) + EDGE_TOLERANCE_S:
                complete = False
            if day == tail and last + 60 < int(calendar.session_close(day).timestamp()) - EDGE_TOLERANCE_S:
                complete = False
            spans_out.append(SessionSpan(day, complete, first, last))
        coverage[symbol] = spans_out
        gaps = tuple(d for d in calendar.sessions_between(head, tail) if d not in sessions)
        if gaps:
            empty[symbol] = gaps
    return coverage, empty
