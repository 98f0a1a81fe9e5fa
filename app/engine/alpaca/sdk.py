"""The one place that touches alpaca-py's private members, and the check that they still exist.

alpaca-py 0.44 gives no public way to set a REST timeout, the retry count, the stream's reconnect
backoff, or to learn when the stream connects and drops; the engine needs all of them (DESIGN.md,
"Alpaca and alpaca-py"). Each private name used is listed here, and :func:`check_sdk` verifies at
start that the installed alpaca-py is in the tested range and still has every one of them, so a
rename in a new SDK release stops the program with one clear sentence instead of silently doing
nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

TESTED_RANGE = ((0, 44), (0, 45))  # [low, high): the versions this module was verified against

# Instance attributes set by RESTClient.__init__ (TradingClient, StockHistoricalDataClient).
REST_MEMBERS = ("_session", "_retry", "_retry_wait", "_retry_codes")
# Members of StockDataStream (DataStream): methods wrapped, and attributes read or set.
STREAM_MEMBERS = ("_start_ws", "_consume", "_dispatch", "_handlers", "_loop", "_ws", "_stop_stream_event",
                  "_reconnect_min_backoff", "_reconnect_max_backoff")


class AlpacaSdkMismatch(RuntimeError):
    """The installed alpaca-py is not one this program was tested with, or lacks a member it needs."""


def _parse(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def installed_version() -> str:
    """The installed alpaca-py's version string."""
    try:
        return version("alpaca-py")
    except PackageNotFoundError as exc:
        raise AlpacaSdkMismatch("alpaca-py is not installed: reinstall AutoTrader (./kiosk.sh does it)") from exc


def _missing(obj: Any, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not hasattr(obj, name)]


def check_sdk() -> str:
    """Verify the version range and every private member on real (unconnected) clients; returns the version.

    Building the clients opens no connection. Raises :class:`AlpacaSdkMismatch` with one sentence.
    """
    found = installed_version()
    low, high = TESTED_RANGE
    if not low <= _parse(found)[:2] < high:
        raise AlpacaSdkMismatch(
            f"alpaca-py {found} is installed but AutoTrader is tested with "
            f"{low[0]}.{low[1]}.x only: reinstall it with ./kiosk.sh (pip install -e .)")
    from alpaca.data.live.stock import StockDataStream
    from alpaca.trading.client import TradingClient

    rest = TradingClient("PKCHECK", "check", paper=True, raw_data=True)
    stream = StockDataStream("PKCHECK", "check", raw_data=True)
    missing = _missing(rest, REST_MEMBERS) + _missing(stream, STREAM_MEMBERS)
    if missing:
        raise AlpacaSdkMismatch(f"alpaca-py {found} lacks {', '.join(missing)}: "
                                "app/engine/alpaca/sdk.py needs updating for this version")
    return found


def require_members(obj: Any, names: tuple[str, ...]) -> None:
    """Raise :class:`AlpacaSdkMismatch` naming what ``obj`` lacks of ``names``."""
    missing = _missing(obj, names)
    if missing:
        raise AlpacaSdkMismatch(f"this alpaca-py ({type(obj).__name__}) lacks {', '.join(missing)}: "
                                "app/engine/alpaca/sdk.py needs updating")


# --- REST clients ---------------------------------------------------------------------------------

def mount_rest_adapter(client: Any, adapter: Any) -> None:
    """Route every request of an alpaca-py REST client through ``adapter`` (e.g. one with a timeout)."""
    require_members(client, REST_MEMBERS)
    client._session.mount("http://", adapter)
    client._session.mount("https://", adapter)


def set_rest_retries(client: Any, retries: int, wait_s: float) -> None:
    """The SDK's retry count and wait for 429/504 answers (its constructor does not expose them)."""
    require_members(client, REST_MEMBERS)
    client._retry = int(retries)
    client._retry_wait = float(wait_s)


# --- the data stream ------------------------------------------------------------------------------

def set_stream_backoff(stream: Any, low_s: float, high_s: float) -> None:
    """The stream's reconnect backoff bounds, in seconds."""
    require_members(stream, STREAM_MEMBERS)
    stream._reconnect_min_backoff, stream._reconnect_max_backoff = low_s, high_s


def wrap_stream_connection(stream: Any, *, on_attempt: Callable[[], None], on_connected: Callable[[], None],
                           on_error: Callable[[BaseException], None],
                           on_lost: Callable[[BaseException | None], None]) -> None:
    """Report each connection attempt, success, failure and loss of ``stream`` (this stream only).

    ``on_lost`` gets the exception, or None when the SDK found the connection stale.
    """
    require_members(stream, STREAM_MEMBERS)
    start_ws: Callable[[], Awaitable[None]] = stream._start_ws
    consume: Callable[[], Awaitable[bool]] = stream._consume

    async def _start_ws() -> None:
        on_attempt()
        try:
            await start_ws()
        except Exception as exc:
            on_error(exc)
            raise
        on_connected()

    async def _consume() -> bool:
        try:
            stale = await consume()
        except Exception as exc:
            on_lost(exc)
            raise
        if stale:
            on_lost(None)
        return stale

    # Instance attributes shadow the methods for this stream only.
    stream._start_ws = _start_ws
    stream._consume = _consume


def watch_stream_frames(stream: Any, *, on_error: Callable[[Any, str], None],
                        on_subscribed: Callable[[frozenset[str]], None]) -> None:
    """Report ``stream``'s error frames (code, message) and subscription acks (the bar symbols).

    alpaca-py only logs an error frame that arrives after the login (405, 407, 500, ...) and
    never reports an ack; both pass through the instance's ``_dispatch``, which is wrapped here.
    """
    require_members(stream, STREAM_MEMBERS)
    dispatch: Callable[[Any], Awaitable[None]] = stream._dispatch

    async def _dispatch(msg: Any) -> None:
        kind = msg.get("T") if isinstance(msg, dict) else None
        if kind == "error":
            on_error(msg.get("code"), str(msg.get("msg") or ""))
        elif kind == "subscription":
            on_subscribed(frozenset(msg.get("bars") or ()))
        await dispatch(msg)

    stream._dispatch = _dispatch


def forget_bar_handler(stream: Any, symbol: str) -> None:
    """Drop the bar and updated-bar handlers of ``symbol`` so a reconnect does not resubscribe it."""
    for channel in ("bars", "updatedBars"):
        stream._handlers[channel].pop(symbol, None)


def stream_loop(stream: Any) -> Any:
    """The stream's own asyncio loop (None before ``run()`` set it up)."""
    return stream._loop


def stream_transport(stream: Any) -> Any:
    """The websocket's transport, or None when not connected."""
    return getattr(stream._ws, "transport", None)


def stream_set_up(stream: Any) -> bool:
    """True once ``run()`` has set up its stop event (stopping before that would be undone by it)."""
    return stream._stop_stream_event is not None
