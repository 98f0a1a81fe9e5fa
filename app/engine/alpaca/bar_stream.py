"""Live minute bars from Alpaca's websocket, signalled on the UI (qasync) thread.

alpaca-py's ``StockDataStream.run()`` blocks (it calls ``asyncio.run``), so the SDK runs in a daemon
thread on a loop it owns, and everything comes back to the main thread through queued Qt signals.
The bars are written to stocks.db on a writer thread of their own: a write can wait on the
engine's write lock, and the UI loop must never wait with it.
Facts about alpaca-py 0.44 this module is built around (see DESIGN.md):

* ``subscribe_bars``/``unsubscribe_bars`` wait for the stream's loop
  (``run_coroutine_threadsafe(...).result()``): called on that loop they deadlock, and from the UI
  thread they would block it. They run on a small control thread here, never on the UI thread.
* Before the first subscription ``_run_forever`` spins at 100 % CPU, so the SDK thread only exists
  while at least one symbol is wanted, and handlers are registered *before* ``run()``.
* ``stop()`` alone can take 5 s; closing the socket's transport on the stream loop ends it at once.
  ``stop()`` before ``run()`` has set ``_loop`` raises, so the stop waits for the loop to be set up.
* The SDK exposes no connection state and retries 402/406 for ever. State comes from wrapping the
  stream *instance's* ``_start_ws`` (each connect+auth attempt, its outcome and the server's error
  text) and ``_consume`` (a lost connection). This was preferred to parsing the SDK's log lines:
  the wrapped names are checked when the stream is built (an SDK rename fails loudly, not silently),
  the error texts are Alpaca's protocol messages rather than SDK log wording, and the wrappers are
  per instance, where the SDK logger is shared by every stream in the process.
* Bars missed while the connection is down are never replayed: after a reconnect the gap from the
  last bar received to the last complete minute is fetched over REST (``history_fill``).
* Error frames after the login (405 symbol limit, 407 slow client, 500 internal error) are only
  logged by the SDK, and subscription acks are not reported at all: ``sdk.watch_stream_frames``
  reports both, so each error becomes its state and sentence (``alpaca/stream_errors.py``).
* Updated bars (``"T": "u"``, Alpaca's late-trade correction of a minute already sent) come on
  their own channel and replace the stored minute (``MarketStore.replace_bars``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack
from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from app.engine.alpaca import sdk
from app.engine.events import StreamStatus
from app.engine.alpaca.stream_errors import (  # noqa: F401 - REASON_* re-exported for callers and tests
    CONNECTING,
    FAILED,
    IDLE,
    LIMITED,
    LIVE,
    REASON_AUTH,
    REASON_CONNECTION_LIMIT,
    REASON_SUBSCRIPTION,
    RECONNECTING,
    StreamProblem,
    stream_problem,
)
from app.storage.market_store import MarketStore, StoreError, check_symbol
from app.storage.records import Bar, BarSource

log = logging.getLogger("autotrader.stream")

REASON_ENDED = "the Alpaca data stream stopped unexpectedly"
FEEDS = ("iex", "sip")
STOP_TIMEOUT_S = 0.9  # stop() must return within a second
# Session time with no stream bar for any symbol before a connection that is up counts as stalled.
# Five minutes: liquid IEX symbols print every minute, and a false alarm costs one reconnect.
STALL_AFTER_S = 300
REASON_STALLED = "no bars from Alpaca for {minutes} minutes: reconnecting"
FLUSH_DELAY_S = 0.5  # a minute's bars for every symbol arrive together; one commit for all of them
_MINUTE = 60



class BarStreamError(ValueError):
    """A BarStream call was given bad input or used in the wrong state; the message says which."""


@dataclass(frozen=True, slots=True)
class StreamBar:
    """One live minute bar of ``symbol`` (``bar.ts``: epoch seconds of the bar minute)."""

    symbol: str
    bar: Bar


@dataclass(frozen=True, slots=True)
class GapFill:
    """A REST backfill after a reconnect: bar minutes ``start_ts..end_ts`` inclusive.

    ``stored`` is what ``history_fill`` returned; ``error`` is set instead when it raised.
    """

    symbol: str
    start_ts: int
    end_ts: int
    stored: int | None = None
    error: str | None = None


def classify_stream_error(text: str, feed: str = "iex") -> str | None:
    """The 'failed' reason for an error the stream reported, or None when it is worth retrying quietly."""
    problem = stream_problem(text=text, feed=feed)
    return problem.reason if problem is not None and problem.state == FAILED else None


def bar_from_message(msg: dict[str, Any]) -> tuple[str, Bar]:
    """(symbol, Bar) from a raw stream bar ``{"T": "b", "S", "o", "h", "l", "c", "v", "t", ...}``.

    ``t`` arrives as a msgpack Timestamp (datetime or RFC-3339 text are accepted too).
    Raises KeyError/TypeError/ValueError on a malformed message.
    """
    stamp = msg["t"]
    if isinstance(stamp, msgpack.Timestamp):
        ts = stamp.seconds
    elif isinstance(stamp, datetime):
        ts = int(stamp.timestamp())
    elif isinstance(stamp, str):
        ts = int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    else:
        raise TypeError(f"bar time of unexpected type {type(stamp).__name__}")
    return str(msg["S"]), Bar(ts, float(msg["o"]), float(msg["h"]), float(msg["l"]), float(msg["c"]),
                              int(msg["v"]))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Worker:
    """One daemon thread running submitted calls in order.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, and a call stuck waiting
    on a dead stream loop must never keep the kiosk from exiting.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Queue ``fn(*args)``; its result or exception lands in the returned future."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        return future

    def close(self) -> None:
        """Finish the queued calls, then end the thread (does not wait)."""
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)


class _Session:
    """One StockDataStream and the daemon thread running it. Driven from the control thread."""

    def __init__(self, generation: int, key: str, secret: str, *, url: str | None, feed: str,
                 backoff: tuple[float, float], symbols: Iterable[str],
                 emit_event: Callable[[int, str, object], None],
                 emit_bar: Callable[[int, str, object], None],
                 emit_correction: Callable[[int, str, object], None]) -> None:
        from alpaca.data.enums import DataFeed
        from alpaca.data.live.stock import StockDataStream

        self.generation = generation
        self.stopping = False
        self._emit_event = emit_event
        self._emit_bar = emit_bar
        self._emit_correction = emit_correction
        stream = StockDataStream(key, secret, raw_data=True, feed=DataFeed(feed), url_override=url)
        sdk.set_stream_backoff(stream, *backoff)
        self.stream = stream
        self._wrap_sdk()
        # Before run() this only registers the handlers, so _run_forever never spins waiting for one.
        stream.subscribe_bars(self.on_bar, *sorted(symbols))
        stream.subscribe_updated_bars(self.on_updated_bar, *sorted(symbols))
        self.thread = threading.Thread(target=self._run, name=f"alpaca-stream-{generation}", daemon=True)

    def _wrap_sdk(self) -> None:
        gen, emit = self.generation, self._emit_event
        sdk.wrap_stream_connection(
            self.stream,
            on_attempt=lambda: emit(gen, "attempt", None),
            on_connected=lambda: emit(gen, "connected", None),
            on_error=lambda exc: emit(gen, "error", _describe(exc)),
            on_lost=lambda exc: emit(gen, "lost", "no data within the data timeout" if exc is None else _describe(exc)))
        # Error frames after the login and subscription acks: the SDK only logs the first and drops the second.
        sdk.watch_stream_frames(
            self.stream,
            on_error=lambda code, text: emit(gen, "stream_error", (code, text)),
            on_subscribed=lambda bars: emit(gen, "subscribed", bars))

    async def on_bar(self, msg: Any) -> None:  # raw_data=True: a dict
        """SDK handler (stream loop): hand the bar to the UI thread."""
        self._hand_over(msg, "stream bar", self._emit_bar)

    async def on_updated_bar(self, msg: Any) -> None:  # raw_data=True: a dict
        """SDK handler for updated bars (stream loop): hand the correction to the UI thread."""
        self._hand_over(msg, "updated bar", self._emit_correction)

    def _hand_over(self, msg: Any, what: str, emit: Callable[[int, str, object], None]) -> None:
        try:
            symbol, bar = bar_from_message(msg)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            log.warning("ignored a malformed %s: %s", what, _describe(exc))
            return
        emit(self.generation, symbol, bar)

    def _run(self) -> None:
        try:
            self.stream.run()
        except BaseException as exc:  # noqa: BLE001 - reported as 'ended'; the thread must end quietly
            log.error("the Alpaca stream thread failed: %s", _describe(exc))
        finally:
            self._emit_event(self.generation, "ended", self.stopping)

    def start(self) -> None:
        """Start ``stream.run()`` on its thread."""
        self.thread.start()

    def subscribe(self, symbols: list[str]) -> None:
        """Add bar subscriptions (control thread: waits for the stream loop)."""
        try:
            self.stream.subscribe_bars(self.on_bar, *symbols)
            self.stream.subscribe_updated_bars(self.on_updated_bar, *symbols)
        except Exception as exc:  # noqa: BLE001 - the handlers are registered: a reconnect resubscribes
            log.info("subscribe %s not sent now (%s); it will be on reconnect", symbols, _describe(exc))

    def unsubscribe(self, symbols: list[str]) -> None:
        """Drop bar subscriptions (control thread: waits for the stream loop)."""
        try:
            self.stream.unsubscribe_bars(*symbols)
            self.stream.unsubscribe_updated_bars(*symbols)
        except Exception as exc:  # noqa: BLE001
            # The SDK sends first and forgets the handlers after, so a failed send leaves them behind
            # and the next reconnect would resubscribe: forget them here.
            log.info("unsubscribe %s not sent (%s); dropping the handlers", symbols, _describe(exc))
            for symbol in symbols:
                sdk.forget_bar_handler(self.stream, symbol)

    def drop_connection(self) -> None:
        """Close the socket under the SDK (from any thread): it reconnects and resubscribes by itself."""
        loop, transport = sdk.stream_loop(self.stream), sdk.stream_transport(self.stream)
        if loop is not None and transport is not None:
            try:
                loop.call_soon_threadsafe(transport.close)
            except RuntimeError:
                pass  # the loop ended meanwhile: the session is over anyway

    def stop(self, timeout: float) -> bool:
        """Stop the stream promptly and join its thread; True when it ended within ``timeout``."""
        self.stopping = True
        deadline = time.monotonic() + timeout
        stream, thread = self.stream, self.thread
        # stop_ws before _run_forever's set-up would be cleared by it: wait until the set-up is done.
        while thread.is_alive() and not sdk.stream_set_up(stream) and time.monotonic() < deadline:
            time.sleep(0.002)
        loop = sdk.stream_loop(stream)
        if loop is not None and loop.is_running():
            try:
                stream.stop()
            except Exception:  # noqa: BLE001 - the loop ended meanwhile, or was busy for 5 s
                pass
            transport = sdk.stream_transport(stream)
            if transport is not None:
                try:
                    # Wakes the consumer's recv() now instead of after its 5-second timeout.
                    loop.call_soon_threadsafe(transport.close)
                except RuntimeError:
                    pass  # loop already closed
        thread.join(max(0.0, deadline - time.monotonic()))
        return not thread.is_alive()


@dataclass
class _Stored:
    """A flush handed to the writer thread, and whether its write failed."""

    pending: list[tuple[str, Bar]]
    corrections: list[tuple[str, Bar]]
    emit: bool
    before: dict[str, int | None]  # the symbols' last bar times before this flush
    failed: bool = False


class BarStream(QObject):
    """Alpaca live minute bars for a reference-counted set of symbols, on the main (qasync) thread.

    ``set_symbols`` is the engine's authoritative set; ``acquire``/``release`` count other users on
    top of it. The SDK thread exists only while at least one symbol is wanted. Every bar is written
    to the market store (opened here, on the main thread) and then emitted as ``bar_received``.
    Bars are written in batches: the first bar of a batch starts a ``flush_delay_s`` timer, and
    everything that arrived by then is stored in one transaction (one commit per minute across all
    symbols rather than one per bar, to spare SD cards) before being emitted.

    ``url`` replaces the whole stream URL (``feed`` is then ignored by the SDK). ``history_fill``
    ``(symbol, start_ts, end_ts) -> bars stored`` fetches bar minutes ``start_ts..end_ts`` (both
    inclusive, epoch seconds) over REST after a reconnect; it runs on its own daemon thread, so it
    must open its own SQLite connection there. ``now`` is the wall clock the gap is measured by.
    """

    bar_received = Signal(object)  # StreamBar
    bar_corrected = Signal(object)  # StreamBar: Alpaca's updated bar, stored in place of the minute
    status_changed = Signal(object)  # StreamStatus
    gap_filled = Signal(object)  # GapFill

    _bar_in = Signal(int, str, object)
    _correction_in = Signal(int, str, object)
    _event_in = Signal(int, str, object)
    _gap_in = Signal(object)
    _stored_in = Signal(object)  # _Stored, from the writer thread

    def __init__(self, key: str, secret: str, *, url: str | None, feed: str, store_path: Path,
                 calendar: Any, history_fill: Callable[[str, int, int], int] | None = None,
                 now: Callable[[], datetime] | None = None,
                 reconnect_backoff: tuple[float, float] = (1.0, 30.0),
                 flush_delay_s: float = FLUSH_DELAY_S,
                 stall_after_s: float = STALL_AFTER_S,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
            raise BarStreamError("the Alpaca stream needs an API key and secret (both non-empty text)")
        if feed not in FEEDS:
            raise BarStreamError(f"feed must be 'iex' or 'sip' (got {feed!r})")
        low, high = reconnect_backoff
        if not 0 < low <= high:
            raise BarStreamError(f"reconnect backoff must be 0 < min <= max (got {reconnect_backoff!r})")
        if not 0 <= flush_delay_s <= 1:
            raise BarStreamError(f"flush delay must be 0-1 seconds (got {flush_delay_s!r})")
        self._key, self._secret = key, secret
        self._url, self._feed = url, feed
        self._backoff = (float(low), float(high))
        self._history_fill = history_fill
        self._now = now or (lambda: datetime.now(timezone.utc))
        # Written on the writer thread only (a write can wait on another connection's lock, which
        # must never stall the UI loop); the UI thread uses it just to check bars (no SQL).
        self._store = MarketStore(store_path, minute_filter=calendar.is_session_minute, shared=True)
        self._writer = _Worker("bar-stream-writer")
        # Main-thread state.
        self._engine_symbols: frozenset[str] = frozenset()
        self._counts: Counter[str] = Counter()
        self._wanted: frozenset[str] = frozenset()
        self._status = StreamStatus(IDLE)  # what was last published
        self._conn = StreamStatus(CONNECTING)  # the connection's own state, from the SDK hooks
        self._started = False
        self._closed = False
        self._gen: int | None = None  # generation whose events count
        self._was_live = False  # this generation has been live at least once
        self._lost_at: datetime | None = None
        self._last_error: str | None = None
        self._last_ts: dict[str, int] = {}
        # Stall watch (check_stalled, driven by the engine's cycles): session time, epoch seconds.
        if not stall_after_s > 0:
            raise BarStreamError(f"stall_after_s must be positive (got {stall_after_s!r})")
        self._stall_after_s = float(stall_after_s)
        self._quiet_from: int | None = None  # first cycle minute since (re)connecting
        self._last_cycle_ts: int | None = None
        self._pending: list[tuple[str, Bar]] = []  # received, checked, not yet stored
        self._corrections: list[tuple[str, Bar]] = []  # updated bars, stored after the pending ones
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(round(flush_delay_s * 1000))
        self._flush_timer.timeout.connect(self._flush)
        # Shared with the control thread: the set it should make real (assigned atomically).
        self._target: frozenset[str] = frozenset()
        # Control-thread state.
        self._w_session: _Session | None = None
        self._w_applied: frozenset[str] = frozenset()
        self._w_next_gen = 0
        self._control = _Worker("bar-stream-control")
        self._filler = _Worker("bar-stream-gap-fill") if history_fill is not None else None
        queued = Qt.ConnectionType.QueuedConnection
        self._bar_in.connect(self._on_bar_in, queued)
        self._correction_in.connect(self._on_correction_in, queued)
        self._event_in.connect(self._on_event_in, queued)
        self._gap_in.connect(self._on_gap_in, queued)
        self._stored_in.connect(self._on_stored_in, queued)

    def __repr__(self) -> str:
        return f"BarStream(feed={self._feed!r}, symbols={sorted(self._wanted)!r}, state={self._status.state!r})"

    # --- construction from the app's settings --------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Any, paths: Any, signals: Any, *, calendar: Any = None) -> "BarStream":
        """A BarStream wired to the engine: ``symbols_changed`` drives it, its status goes out as
        ``stream_changed``. Its initial symbols are the running cards' tickers (read once from
        system.db, because the engine announced them before this object existed)."""
        from app.engine.marketdata.calendar import MarketCalendar

        if not getattr(settings, "has_keys", False) or settings.mode == "sim":
            raise BarStreamError("the live bar stream needs Alpaca keys; sim mode has its own market")
        calendar = calendar or MarketCalendar()
        stream = cls(settings.api_key, settings.secret, url=settings.stream_url, feed=settings.feed,
                     store_path=paths.stocks_db, calendar=calendar,
                     history_fill=_LazyHistoryFill(settings, paths, calendar))
        signals.symbols_changed.connect(stream.set_symbols, Qt.ConnectionType.QueuedConnection)
        signals.cycle_done.connect(stream.check_stalled, Qt.ConnectionType.QueuedConnection)
        # A plain callable runs in the emitting (main) thread; UI receivers get it as from the engine.
        stream.status_changed.connect(lambda status: signals.stream_changed.emit(status))
        stream.set_symbols(_running_tickers(paths))
        return stream

    # --- public API (main thread) ---------------------------------------------------------------

    @property
    def status(self) -> StreamStatus:
        """The current stream state."""
        return self._status

    @property
    def symbols(self) -> frozenset[str]:
        """Symbols wanted now: the engine's set plus every acquired one."""
        return self._wanted

    def start(self) -> None:
        """Begin streaming (connects as soon as a symbol is wanted). A stopped BarStream cannot restart."""
        if self._closed:
            raise BarStreamError("this bar stream was stopped; create a new one")
        self._started = True
        self._apply()

    @Slot(object)
    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Replace the engine's set of symbols (acquired ones stay). Raises BarStreamError on a bad ticker."""
        if isinstance(symbols, str):
            raise BarStreamError("set_symbols takes a collection of tickers, not one string")
        new = frozenset(self._check(s) for s in symbols)
        self._engine_symbols = new
        self._apply()

    def acquire(self, symbol: str) -> None:
        """Want ``symbol`` for one more user (one subscription however many users)."""
        self._counts[self._check(symbol)] += 1
        self._apply()

    def release(self, symbol: str) -> None:
        """Give back one ``acquire``; the subscription ends when nobody (engine included) wants it."""
        symbol = self._check(symbol)
        if self._counts[symbol] <= 0:
            self._counts.pop(symbol, None)
            raise BarStreamError(f"release({symbol!r}) without a matching acquire")
        self._counts[symbol] -= 1
        if not self._counts[symbol]:
            del self._counts[symbol]
        self._apply()

    def stop(self) -> None:
        """Stop the stream and the helper threads within a second; close the store. Idempotent."""
        if self._closed:
            return
        self._flush_timer.stop()
        self._flush(emit=False)  # bars already received are kept, but nobody is told any more
        self._closed = True
        self._started = False
        self._target = frozenset()
        done = self._control.submit(self._w_shutdown)
        try:
            done.result(STOP_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            # The control thread is stuck (e.g. waiting on a wedged stream loop): stop from here.
            session = self._w_session
            if session is not None:
                session.stop(0.3)
            log.warning("the bar stream's control thread did not answer; stopped the stream directly")
        except Exception:  # noqa: BLE001 - shutting down regardless
            log.exception("error while stopping the bar stream")
        self._control.close()
        if self._filler is not None:
            closer = getattr(self._history_fill, "close", None)
            if callable(closer):
                self._filler.submit(closer)  # on the thread that opened its store
            self._filler.close()
        self._gen = None
        closed = self._writer.submit(self._store.close)  # after the writes queued before it
        self._writer.close()
        try:
            closed.result(STOP_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            log.warning("the bar stream's writer is still busy; its last bars are stored when it is done")
        self._publish()

    # --- symbols ----------------------------------------------------------------------------------

    @staticmethod
    def _check(symbol: object) -> str:
        try:
            return check_symbol(symbol)
        except StoreError as exc:
            raise BarStreamError(str(exc)) from None

    def _apply(self) -> None:
        wanted = self._engine_symbols | frozenset(self._counts)
        self._wanted = wanted
        if not self._started or self._closed:
            return
        self._publish()
        if wanted != self._target:
            self._target = wanted
            self._control.submit(self._w_apply)

    # --- control thread -------------------------------------------------------------------------

    def _w_apply(self) -> None:
        """Make the latest target real: start, resubscribe or stop the SDK stream."""
        try:
            self._w_apply_target()
        except Exception as exc:  # noqa: BLE001 - nobody waits on this future: report it as a state
            log.exception("the live data stream could not be started or changed")
            self._event_in.emit(-1, "fatal", _describe(exc))

    def _w_apply_target(self) -> None:
        target = self._target
        session = self._w_session
        if session is not None and not session.thread.is_alive():
            self._w_drop_session(0.0)  # ended by itself (e.g. insufficient subscription)
            session = None
        if not target:
            if session is not None:
                self._w_drop_session(STOP_TIMEOUT_S)
            return
        if session is None:
            self._w_next_gen += 1
            session = _Session(self._w_next_gen, self._key, self._secret, url=self._url, feed=self._feed,
                               backoff=self._backoff, symbols=target, emit_event=self._event_in.emit,
                               emit_bar=self._bar_in.emit, emit_correction=self._correction_in.emit)
            self._w_session, self._w_applied = session, target
            self._event_in.emit(session.generation, "started", None)
            session.start()
            return
        remove = sorted(self._w_applied - target)
        add = sorted(target - self._w_applied)
        if remove:
            session.unsubscribe(remove)
        if add:
            session.subscribe(add)
        self._w_applied = target

    def _w_drop_session(self, timeout: float) -> None:
        session = self._w_session
        self._w_session, self._w_applied = None, frozenset()
        if session is None:
            return
        if not session.stop(timeout):
            log.warning("the Alpaca stream thread did not end within %.1f s", timeout)
        self._event_in.emit(session.generation, "stopped", None)

    def _w_reconnect(self) -> None:
        session = self._w_session
        if session is not None:
            session.drop_connection()

    def _w_shutdown(self) -> None:
        self._w_drop_session(STOP_TIMEOUT_S - 0.1)

    # --- events from the stream (main thread) -----------------------------------------------------

    @Slot(int, str, object)
    def _on_event_in(self, gen: int, kind: str, detail: object) -> None:
        if self._closed:
            return
        if kind == "started":
            self._gen, self._was_live, self._lost_at, self._last_error = gen, False, None, None
            self._quiet_from = None
            self._conn = StreamStatus(CONNECTING)
            self._publish()
            return
        if kind == "fatal":
            self._conn = StreamStatus(FAILED, f"the live data stream could not start: {detail}")
            self._publish()
            return
        if gen != self._gen:
            return  # a stopped stream's late news
        conn = self._conn
        if kind == "stopped":
            self._gen = None
            if conn.state != FAILED:  # a failure stays shown until a new stream connects
                self._conn = StreamStatus(CONNECTING)
        elif kind == "attempt":
            if conn.state != FAILED:
                self._conn = StreamStatus(RECONNECTING if self._was_live else CONNECTING, conn.reason)
        elif kind == "connected":
            reconnect = self._was_live
            self._was_live, self._last_error = True, None
            self._quiet_from = None
            self._conn = StreamStatus(LIVE)
            if reconnect:
                self._flush()  # the gap starts after the last bar received, so store those first
                self._backfill()
        elif kind == "error":  # a connect or login attempt failed
            text = str(detail)
            self._last_error = text
            problem = self._problem(text=text)
            if problem is not None and problem.state == FAILED:
                self._conn = StreamStatus(FAILED, problem.reason)
            elif conn.state != FAILED:
                reason = problem.reason if problem is not None else f"cannot reach Alpaca: {text}"
                self._conn = StreamStatus(RECONNECTING if self._was_live else CONNECTING, reason)
        elif kind == "stream_error":  # an error frame on a connection that is up
            code, message = detail if isinstance(detail, tuple) else (None, str(detail))
            frame_code = code if isinstance(code, int) else None
            self._last_error = message
            self._on_stream_error(self._problem(code=frame_code, text=message), code, message)
        elif kind == "subscribed":
            if conn.state == LIMITED and self._wanted <= detail:  # type: ignore[operator]
                self._conn = StreamStatus(LIVE)
        elif kind == "lost":
            if conn.state in (LIVE, LIMITED):
                self._lost_at = self._now()
                self._conn = StreamStatus(RECONNECTING, "connection lost")
        elif kind == "ended":
            if not detail:  # not asked to stop
                reason = classify_stream_error(self._last_error or "", self._feed) or REASON_ENDED
                self._conn = StreamStatus(FAILED, reason)
                self._target = frozenset()  # forget it; the next change of symbols tries again
                self._control.submit(self._w_apply)
        self._publish()

    def _problem(self, *, code: int | None = None, text: str = "") -> StreamProblem | None:
        return stream_problem(code=code, text=text, feed=self._feed, wanted=len(self._wanted))

    def _on_stream_error(self, problem: StreamProblem | None, code: object, text: str) -> None:
        """State after an error frame: 405 limits a live feed, 402/406/409/410 fail it, the rest
        (407, 500: Alpaca closes the connection next) reconnect with their own sentence."""
        conn = self._conn
        if problem is None:
            log.warning("Alpaca stream error %s: %s", code, text)
            return
        if problem.state == LIMITED:
            if conn.state in (LIVE, LIMITED):
                self._conn = StreamStatus(LIMITED, problem.reason)
        elif problem.state == FAILED:
            self._conn = StreamStatus(FAILED, problem.reason)
        elif conn.state != FAILED:
            if conn.state in (LIVE, LIMITED):
                self._lost_at = self._now()  # the connection ends next: backfill from here
            self._conn = StreamStatus(RECONNECTING, problem.reason)

    @Slot(int, str, object)
    def _on_bar_in(self, gen: int, symbol: str, bar: object) -> None:
        if self._closed or gen != self._gen or symbol not in self._wanted:
            return  # released meanwhile: no more bars for it
        problem = self._store.bar_problem(bar)  # type: ignore[arg-type]
        if problem is not None:
            log.warning("stream bar for %s not stored: %s", symbol, problem)
            return
        self._pending.append((symbol, bar))  # type: ignore[arg-type]
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    @Slot(int, str, object)
    def _on_correction_in(self, gen: int, symbol: str, bar: object) -> None:
        if self._closed or gen != self._gen or symbol not in self._wanted:
            return
        problem = self._store.bar_problem(bar)  # type: ignore[arg-type]
        if problem is not None:
            log.warning("updated bar for %s not stored: %s", symbol, problem)
            return
        self._corrections.append((symbol, bar))  # type: ignore[arg-type]
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    @staticmethod
    def _by_symbol(items: list[tuple[str, Bar]]) -> dict[str, list[Bar]]:
        batch: dict[str, list[Bar]] = {}
        for symbol, bar in items:
            batch.setdefault(symbol, []).append(bar)
        return batch

    @Slot()
    def _flush(self, emit: bool = True) -> None:
        """Hand the buffered bars to the writer thread: stored in one transaction, then Alpaca's
        corrections over them; emitted (in arrival order) once stored."""
        self._flush_timer.stop()
        pending, self._pending = self._pending, []
        corrections, self._corrections = self._corrections, []
        if not (pending or corrections) or self._closed:
            return
        # Counted as received now, so a reconnect's backfill starts after them; put back if the
        # write fails, so that the next backfill fetches them again.
        before = {symbol: self._last_ts.get(symbol) for symbol, _ in pending}
        for symbol, bar in pending:
            if bar.ts > self._last_ts.get(symbol, -1):
                self._last_ts[symbol] = bar.ts
        self._writer.submit(self._w_store, _Stored(pending, corrections, emit, before))

    def _w_store(self, job: "_Stored") -> None:
        try:
            if job.pending:
                self._store.upsert_many(self._by_symbol(job.pending), source=BarSource.ALPACA)
            if job.corrections:
                self._store.replace_bars(self._by_symbol(job.corrections))
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: say so; the REST backfill can refill
            log.error("could not store %d stream bar(s): %s", len(job.pending) + len(job.corrections),
                      _describe(exc))
            job.failed = True
        self._stored_in.emit(job)

    @Slot(object)
    def _on_stored_in(self, job: "_Stored") -> None:
        if job.failed:
            for symbol, ts in job.before.items():
                if ts is None:
                    self._last_ts.pop(symbol, None)
                else:
                    self._last_ts[symbol] = ts
            return
        if self._closed or not job.emit:
            return
        for symbol, bar in job.pending:
            self.bar_received.emit(StreamBar(symbol, bar))
        for symbol, bar in job.corrections:
            self.bar_corrected.emit(StreamBar(symbol, bar))

    # --- stall watch ------------------------------------------------------------------------------

    @Slot(object)
    def check_stalled(self, report: Any) -> None:
        """Engine cycle hook (``cycle_done``, a CycleReport): reconnect a stream that is up but silent.

        Alpaca can keep a connection open (pings answered) and send nothing. The SDK notices only
        with a data timeout, which would also fire all night while the market is closed; the
        engine's cycles run only in sessions, so measuring from them never counts closed hours. A
        gap between cycles longer than the stall time (a night, a sleep) starts the count afresh.
        """
        if self._closed or not self._started or self._conn.state not in (LIVE, LIMITED) or not self._wanted:
            return
        minute_ts = int(report.minute.timestamp())
        previous, self._last_cycle_ts = self._last_cycle_ts, minute_ts
        if self._quiet_from is None or previous is None or minute_ts - previous > self._stall_after_s:
            self._quiet_from = minute_ts
            return
        newest = max((self._last_ts.get(symbol, -1) for symbol in self._wanted), default=-1)
        # A bar of minute M arrives once M has completed, so by cycle M+1 the newest should be M.
        quiet_since = max(newest + _MINUTE, self._quiet_from)
        if minute_ts - quiet_since < self._stall_after_s:
            return
        minutes = (minute_ts - quiet_since) // _MINUTE
        log.warning("no stream bar for any symbol in %d minutes: reconnecting", minutes)
        self._lost_at = report.minute
        self._conn = StreamStatus(RECONNECTING, REASON_STALLED.format(minutes=minutes))
        self._publish()
        self._control.submit(self._w_reconnect)

    # --- gap fill ---------------------------------------------------------------------------------

    def _backfill(self) -> None:
        """After a reconnect: fetch each symbol's bars from its last one received to the last complete minute."""
        if self._filler is None or self._history_fill is None:
            return
        now_ts = int(self._now().timestamp())
        end_ts = now_ts - now_ts % _MINUTE - _MINUTE
        lost_at = self._lost_at or self._now()
        lost_ts = int(lost_at.timestamp())
        fallback = lost_ts - lost_ts % _MINUTE - _MINUTE
        for symbol in sorted(self._wanted):
            last = self._last_ts.get(symbol)
            start_ts = last + _MINUTE if last is not None else fallback
            if start_ts > end_ts:
                continue
            self._filler.submit(self._w_fill, symbol, start_ts, end_ts)
        self._lost_at = None

    def _w_fill(self, symbol: str, start_ts: int, end_ts: int) -> None:
        fill = self._history_fill
        assert fill is not None
        try:
            stored = fill(symbol, start_ts, end_ts)
            result = GapFill(symbol, start_ts, end_ts, stored=stored)
        except Exception as exc:  # noqa: BLE001 - reported; the next reconnect or the engine retries
            log.warning("backfill of %s after a reconnect failed: %s", symbol, _describe(exc))
            result = GapFill(symbol, start_ts, end_ts, error=_describe(exc))
        self._gap_in.emit(result)

    @Slot(object)
    def _on_gap_in(self, result: GapFill) -> None:
        if not self._closed:
            self.gap_filled.emit(result)

    # --- status -----------------------------------------------------------------------------------

    def _publish(self) -> None:
        """Derive the public status: idle without symbols, else the connection's own state."""
        if not self._wanted or not self._started:
            status = StreamStatus(IDLE)
        else:
            status = self._conn
        if status == self._status:
            return
        self._status = status
        level = logging.WARNING if status.state in (FAILED, RECONNECTING, LIMITED) else logging.INFO
        log.log(level, "bar stream %s%s", status.state, f": {status.reason}" if status.reason else "")
        self.status_changed.emit(status)


class _LazyHistoryFill:
    """``history_fill`` for the app: AlpacaHistory built on first use, on the gap-fill thread,
    with that thread's own market-store connection (SQLite connections stay on one thread)."""

    def __init__(self, settings: Any, paths: Any, calendar: Any) -> None:
        self._settings, self._paths, self._calendar = settings, paths, calendar
        self._store: MarketStore | None = None
        self._history: Any = None

    def __call__(self, symbol: str, start_ts: int, end_ts: int) -> int:
        if self._history is None:
            from app.engine.alpaca.history import AlpacaHistory
            from app.engine.system.data_folder import open_market_store

            self._store = open_market_store(self._paths, self._calendar)
            self._history = AlpacaHistory.from_settings(self._settings, self._store, self._calendar)
        return len(self._history.fill_gap(symbol, start_ts, end_ts))

    def close(self) -> None:
        """Close the store (call on the gap-fill thread)."""
        if self._store is not None:
            self._store.close()
            self._store = None


def _running_tickers(paths: Any) -> frozenset[str]:
    """Tickers of the running cards, read once from system.db (empty if it cannot be read)."""
    from app.engine.system.data_folder import open_system_store

    try:
        system = open_system_store(paths)
    except Exception as exc:  # noqa: BLE001 - the engine's next symbols_changed will correct it
        log.warning("could not read the running cards' tickers: %s", _describe(exc))
        return frozenset()
    try:
        return frozenset(inst.ticker for inst in system.all_instances("running"))
    finally:
        system.close()
