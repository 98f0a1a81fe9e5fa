"""Synthetic one-minute bars for any ticker, deterministic per (seed, symbol, session).

Model: each symbol gets a start price ($20-$500 on the anchor session 2015-01-02), a yearly
drift and a volatility (15-60 %) from a stable hash; a well-known ticker (``levels.LEVELS``)
instead gets the start price and volatility that put its drift line at its approximate level on
the table's reference session, so AAPL trades near $200 rather than at $24. Daily closes are a log random walk that
slowly reverts to the symbol's drift line (so ten years of 60 % volatility cannot end at a few
cents or at $50,000); each session opens at the previous close times a small overnight gap and
walks to its own daily close along a Brownian bridge. The whole daily path of a symbol is
generated at once (a few thousand numbers, cached), so any session can be produced without
generating the minutes of the sessions before it. Volume is U-shaped over the session.
Unlike the IEX feed, the simulation has no gaps: every session minute has a bar.

Synthetic bars are stored as ``BarSource.SIMULATED`` and never for a symbol that has real bars
(an import into the sim data folder): the store refuses them, and this module does not even
generate them. Such a symbol gets no new bars in sim mode.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable
from datetime import date, datetime, timezone
from typing import NamedTuple

import numpy as np

from app.engine.brokers.protocol import check_symbol_format
from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource
from app.storage.timefmt import to_epoch
from app.engine.marketdata.minutes import last_complete_ts
from app.engine.sim.levels import LEVELS, REFERENCE_SESSION

log = logging.getLogger("autotrader.engine.sim_market")

ANCHOR_SESSION = date(2015, 1, 2)
TRADING_DAYS = 252
FULL_SESSION_MINUTES = 390
_REVERSION = 0.003  # per session: a half-life of about 230 sessions around the drift line
_GAP_SHARE = 0.25  # overnight gap std as a share of the daily volatility
_GAP_CLIP = 3.0  # gaps beyond 3 std would look like news, not noise
_WICK = 0.6  # high/low excursion beyond open/close, in minute-volatility units
_MAX_SYMBOL_CACHE = 1024


class SymbolBar(NamedTuple):
    """A bar together with its symbol, as the live stream delivers it."""

    symbol: str
    bar: Bar


class SymbolProfile(NamedTuple):
    """The per-symbol constants the walk is drawn with."""

    start_price: float
    drift: float  # yearly, in log terms
    volatility: float  # yearly
    base_volume: float  # mean shares per minute at mid-day


def _seed_int(*parts: object) -> int:
    """A stable 128-bit seed: Python's hash() changes between processes, blake2b does not."""
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "big")


class _DailyPath(NamedTuple):
    profile: SymbolProfile
    log_open: np.ndarray  # per session: log price of the first bar's open
    log_close: np.ndarray  # per session: log price of the last bar's close


class SimMarket:
    """Synthetic minute bars for any well-formed symbol, written into a MarketStore on demand.

    ``session_bars`` is pure; ``ensure_history`` and ``publish_until`` write into ``store``.
    One instance per thread (it holds the thread's MarketStore).
    """

    def __init__(self, calendar: MarketCalendar, store: MarketStore, *, seed: int = 0) -> None:
        self._calendar = calendar
        self._store = store
        self._seed = int(seed)
        sessions = calendar.sessions_between(ANCHOR_SESSION, calendar.last_day)
        self._sessions = sessions
        self._session_index = {day: i for i, day in enumerate(sessions)}
        self._paths: dict[str, _DailyPath] = {}
        # publish_until state: the current session's bars per symbol, and the last ts published.
        self._current: dict[str, tuple[date, list[Bar]]] = {}
        self._published: dict[str, tuple[date, int]] = {}
        self._real: dict[str, date] = {}  # symbols found with real bars, and the session it was seen in

    @property
    def seed(self) -> int:
        """The seed every bar is derived from."""
        return self._seed

    # -- model -----------------------------------------------------------------------------

    def profile(self, symbol: str) -> SymbolProfile:
        """The symbol's start price, drift, volatility and volume level (deterministic)."""
        check_symbol_format(symbol)
        u = np.random.default_rng(_seed_int(self._seed, symbol, "profile")).random(4)
        known = LEVELS.get(symbol)
        if known is not None:
            level, volatility = known
            drift = float(0.02 * u[1] + 0.04)  # 4-6 % a year: no invented boom or crash
            sessions_to_reference = self._session_index.get(REFERENCE_SESSION, 0)
            return SymbolProfile(
                start_price=float(level * math.exp(-drift / TRADING_DAYS * sessions_to_reference)),
                drift=drift, volatility=volatility, base_volume=float(3000.0 * 6.0 ** u[3]))
        return SymbolProfile(
            start_price=float(20.0 * (500.0 / 20.0) ** u[0]),  # log-uniform $20-$500
            drift=float(-0.05 + 0.20 * u[1]),
            volatility=float(0.15 + 0.45 * u[2]),
            base_volume=float(300.0 * 60.0 ** u[3]),  # 300-18,000 shares a minute
        )

    def _daily_path(self, symbol: str) -> _DailyPath:
        path = self._paths.get(symbol)
        if path is not None:
            return path
        prof = self.profile(symbol)
        n = len(self._sessions)
        sigma_d = prof.volatility / math.sqrt(TRADING_DAYS)
        # Shape (n, 2) fills row by row, so session k's draws do not depend on how far ahead the
        # calendar reaches (it grows with today's date): history never changes.
        draws = np.random.default_rng(_seed_int(self._seed, symbol, "daily")).standard_normal((n, 2))
        shocks = draws[:, 0] * sigma_d
        gaps = np.clip(draws[:, 1], -_GAP_CLIP, _GAP_CLIP) * (_GAP_SHARE * sigma_d)
        gaps[0] = 0.0  # the anchor session opens exactly at the start price
        # y_k = a*y_(k-1) + shock_k with y_(-1) = 0, closed form: y_k = a^k * cumsum(shock_j / a^j).
        a = 1.0 - _REVERSION
        powers = a ** np.arange(n, dtype=np.float64)
        deviation = powers * np.cumsum(shocks / powers)
        trend = math.log(prof.start_price) + (prof.drift / TRADING_DAYS) * np.arange(n, dtype=np.float64)
        log_close = trend + deviation
        previous = np.empty(n)
        previous[0] = math.log(prof.start_price)
        previous[1:] = log_close[:-1]
        path = _DailyPath(prof, previous + gaps, log_close)
        if len(self._paths) >= _MAX_SYMBOL_CACHE:
            self._paths.pop(next(iter(self._paths)))
        self._paths[symbol] = path
        return path

    def session_bars(self, symbol: str, day: date) -> list[Bar]:
        """Every minute bar of session ``day`` for ``symbol``: 390 on a full day, 210 on an early close.

        Pure and deterministic: the same (seed, symbol, day) always gives the same bars.
        Raises InvalidSymbol for a malformed ticker and ValueError when ``day`` is not a session.
        """
        check_symbol_format(symbol)
        minutes = self._calendar.session_minutes(day)  # ValueError on a non-trading day
        k = self._session_index.get(day)
        if k is None:
            raise ValueError(f"{day.isoformat()} is before the simulation's anchor session "
                             f"{ANCHOR_SESSION.isoformat()}")
        path = self._daily_path(symbol)
        prof = path.profile
        n = len(minutes)
        p0 = float(path.log_open[k])
        p1 = float(path.log_close[k])
        # Minute volatility sized for a full day; the bridge spreads the open-to-close move.
        s = prof.volatility / math.sqrt(TRADING_DAYS) / math.sqrt(FULL_SESSION_MINUTES)
        rng = np.random.default_rng(_seed_int(self._seed, symbol, day.isoformat()))
        z = rng.standard_normal((4, n))
        walk = np.cumsum(z[0] * s)
        frac = np.arange(1, n + 1, dtype=np.float64) / n
        log_closes = p0 + frac * (p1 - p0) + (walk - frac * walk[-1])
        closes = np.exp(log_closes)
        opens = np.empty(n)
        opens[0] = math.exp(p0)
        opens[1:] = closes[:-1]
        closes = np.round(closes, 2)
        opens = np.round(opens, 2)
        np.maximum(closes, 0.01, out=closes)
        np.maximum(opens, 0.01, out=opens)
        highs = np.maximum(np.round(np.maximum(opens, closes) * np.exp(np.abs(z[1]) * (_WICK * s)), 2),
                           np.maximum(opens, closes))
        lows = np.minimum(np.round(np.minimum(opens, closes) * np.exp(-np.abs(z[2]) * (_WICK * s)), 2),
                          np.minimum(opens, closes))
        np.maximum(lows, 0.01, out=lows)
        # U shape: busiest at the open, quiet at mid-day, busy again into the close.
        t = (np.arange(n, dtype=np.float64) + 0.5) / FULL_SESSION_MINUTES
        t_end = n / FULL_SESSION_MINUTES
        shape = 0.5 + 2.5 * np.exp(-t * 12.0) + 1.5 * np.exp(-(t_end - t) * 15.0)
        volumes = np.maximum(1, (prof.base_volume * shape * np.exp(0.5 * z[3] - 0.125)).astype(np.int64))
        return list(map(Bar._make, zip(minutes, opens.tolist(), highs.tolist(), lows.tolist(),
                                       closes.tolist(), volumes.tolist())))

    # -- writing into the store ------------------------------------------------------------

    def complete_sessions_before(self, before: datetime, count: int) -> list[date]:
        """The last ``count`` sessions whose close is at or before ``before``, oldest first."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"session count must be a whole number >= 0, got {count!r}")
        before_ts = to_epoch(before)
        # Sessions lie inside one UTC day, so the UTC date names the session.
        day = before.astimezone(timezone.utc).date()
        day = min(max(day, self._calendar.first_day), self._calendar.last_day)
        result: list[date] = []
        if self._calendar.is_session(day) and to_epoch(self._calendar.session_close(day)) <= before_ts:
            result.append(day)
        while len(result) < count:
            try:
                day = self._calendar.previous_session(day)
            except CalendarRangeError:
                break
            if day < ANCHOR_SESSION:
                break
            result.append(day)
        result = result[:count]
        result.reverse()
        return result

    def has_real_bars(self, symbol: str) -> bool:
        """True when the store holds bars of ``symbol`` that are not synthetic (imported, fetched, or
        of unknown source): this market then writes none for it.

        Bars stored before provenance was recorded are compared once with this market's own bars:
        when every one of them is the synthetic bar of its minute they are relabelled SIMULATED (a
        sim data folder keeps working after the upgrade); otherwise they stay protected.
        """
        sources = self._store.sources(symbol)
        if sources == {BarSource.UNKNOWN} and self._all_synthetic(symbol):
            self._store.relabel_unknown(symbol, BarSource.SIMULATED)
            sources = self._store.sources(symbol)
        return bool(sources - {BarSource.SIMULATED})

    def _all_synthetic(self, symbol: str) -> bool:
        """True when every stored bar of ``symbol`` equals the bar this market makes for its minute."""
        for day_number in self._store.bar_days(symbol):
            start = day_number * 86_400
            stored = self._store.bars_between(symbol, start, start + 86_399)
            session = self._calendar.session_of(stored[0].ts) if stored else None
            if session is None or session not in self._session_index:
                return False
            made = {bar.ts: bar for bar in self.session_bars(symbol, session)}
            if any(made.get(bar.ts) != bar for bar in stored):
                log.warning("%s: bars of unknown source on %s are not this simulation's: kept as they are, "
                            "and no simulated bars are added for %s", symbol, session, symbol)
                return False
        return True

    def ensure_history(self, symbol: str, sessions: int = 5, *, before: datetime) -> int:
        """Write the last ``sessions`` complete sessions before ``before`` that the store's coverage
        lacks, and record their coverage. Returns the number of bars written (0 if all covered, and
        always 0 for a symbol with real bars)."""
        check_symbol_format(symbol)
        if self.has_real_bars(symbol):
            return 0
        wanted = self.complete_sessions_before(before, sessions)
        written = 0
        for day in self._store.missing_sessions(symbol, wanted):
            # Bars and coverage in one commit: a crash between them cannot leave either alone.
            result = self._store.upsert_many({symbol: self.session_bars(symbol, day)},
                                             source=BarSource.SIMULATED, coverage={symbol: [day]})
            written += result[symbol].stored
        return written

    def _current_session_bars(self, symbol: str, day: date) -> list[Bar]:
        cached = self._current.get(symbol)
        if cached is not None and cached[0] == day:
            return cached[1]
        bars = self.session_bars(symbol, day)
        self._current[symbol] = (day, bars)
        return bars

    def publish_until(self, symbols: Iterable[str], now: datetime) -> list[SymbolBar]:
        """Store every bar of the current session whose minute has completed by ``now``
        (``ts + 60 <= now``) and was not stored yet; return the new bars in time order.

        Cheap when called every minute: each symbol's session is generated once and the last
        published minute is remembered, so the store is only read the first time a symbol is
        seen in a session (to resume after a restart without publishing anything twice).
        All symbols' new bars (and the coverage of sessions that just completed) are written in
        one transaction, so a minute costs one commit however many symbols are traded.
        """
        now_ts = to_epoch(now)
        day = now.astimezone(timezone.utc).date()
        if not (self._calendar.first_day <= day <= self._calendar.last_day) \
                or not self._calendar.is_session(day):
            return []
        open_ts = to_epoch(self._calendar.session_open(day))
        close_ts = to_epoch(self._calendar.session_close(day))
        # Bars in this session that have completed: ts <= now - 60, capped at the last minute.
        last_due = min(last_complete_ts(now_ts), close_ts - 60)
        if last_due < open_ts:
            return []
        wanted = list(dict.fromkeys(symbols))  # keep order, drop duplicates
        for symbol in wanted:
            check_symbol_format(symbol)  # all checked before anything is written
        batch: dict[str, list[Bar]] = {}
        for symbol in wanted:
            seen = self._published.get(symbol)
            if seen is not None and seen[0] == day:
                last_done = seen[1]
            elif self._real.get(symbol) == day or self.has_real_bars(symbol):
                self._real[symbol] = day  # looked at once a session: an import may come later
                continue
            else:
                stored = self._store.last_bars(symbol, 1, close_ts)
                last_done = stored[0].ts if stored and stored[0].ts >= open_ts else open_ts - 60
            if last_done >= last_due:
                self._published[symbol] = (day, last_done)
                continue
            bars = self._current_session_bars(symbol, day)
            batch[symbol] = bars[(last_done - open_ts) // 60 + 1:(last_due - open_ts) // 60 + 1]
        if not batch:
            return []
        session_done = last_due == close_ts - 60
        # The whole session is stored with this write: history backfill need not write it again.
        coverage = {symbol: [day] for symbol in batch} if session_done else None
        results = self._store.upsert_many(batch, source=BarSource.SIMULATED, coverage=coverage)
        out: list[SymbolBar] = []
        for symbol, new in batch.items():
            if results[symbol].blocked is not None:  # real bars arrived meanwhile (an import)
                self._real[symbol] = day
                self._published.pop(symbol, None)
                continue
            if session_done:
                self._current.pop(symbol, None)
            self._published[symbol] = (day, last_due)
            out.extend(SymbolBar(symbol, b) for b in new)
        out.sort(key=lambda sb: sb.bar.ts)  # stable: symbols keep their given order per minute
        return out
