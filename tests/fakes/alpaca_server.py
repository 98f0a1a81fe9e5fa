"""A protocol-accurate fake of Alpaca's trading, market-data and stream APIs.

The real alpaca-py clients talk to it over 127.0.0.1:

* ``TradingClient(key, secret, paper=True, url_override=fake.origin)``
* ``StockHistoricalDataClient(key, secret, url_override=fake.origin)``
* ``StockDataStream(key, secret, url_override=fake.stream_url)``

REST and the websocket share one aiohttp server on one port, run on a private
asyncio loop in a daemon thread, so tests (and the code under test) stay fully
synchronous. Paths, query parameters, JSON field names and error bodies follow
Alpaca's documented API as consumed by alpaca-py 0.44; deliberate
simplifications are listed in ``FAKE_LIMITATIONS``.

Alpaca's real rules, each behind a switch (state is reset by ``reset()``):

* ``faults.status_path(*statuses, final_status=...)``: any path through the order lifecycle
  (pending_new, accepted_for_bidding, partially_filled, done_for_day, held, stopped, ... then
  filled, canceled, expired, rejected or replaced); ``cancel_delay``: cancels pass pending_cancel.
* ``numeric_quantities``: qty/filled_qty/filled_avg_price as JSON numbers; ``time_digits = 9``:
  nanosecond timestamps; ``set_position(symbol, "2.5", ...)``: fractional positions.
* ``account_type`` "margin" (default, as paper accounts are; cash can go negative) or "cash".
* ``latency`` (0): seconds added to every REST answer, e.g. 0.05 for a real 50 ms round trip.
* ``wash_trade_check`` (on): 403 ``potential wash trade detected. use complex orders`` with
  ``existing_order_id`` and ``reject_reason`` while an opposite-side order of the symbol is open.
* ``pdt_fields`` (off, as Alpaca since 2026-07-06): the pattern-day-trader fields, and 403
  40310100 on a 4th day trade (``daytrade_count`` >= 3, margin, equity under $25k).
* ``add_asset(..., tradable=False / status="inactive")``: 422 ``asset "X" is not tradable/active``.
* ``push_updated_bar``: ``"T": "u"`` on updatedBars; ``stream_error(code)``: Alpaca's stream
  errors with their messages; ``ws_symbol_limit`` (30 on the free plan): 405 on subscribe;
  ``faults.ws_auth_timeout()``: 404 at login; a wrong stream path answers HTTP 404.

Run standalone with ``python -m tests.fakes.alpaca_server --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import bisect
import json
import re
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Optional, Sequence
from zoneinfo import ZoneInfo

import msgpack
from aiohttp import WSMsgType, web

__all__ = [
    "FakeAlpaca",
    "Faults",
    "RequestRecord",
    "AssetInfo",
    "FAKE_LIMITATIONS",
    "wait_until",
]

ET = ZoneInfo("America/New_York")
STREAM_FEEDS = ("iex", "sip", "test")
OPEN_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "partially_filled",
        "accepted_for_bidding",
        "pending_cancel",
        "pending_replace",
        "held",
        "calculated",
        "stopped",
        "suspended",
        "done_for_day",
    }
)
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
# Every status of Alpaca's order lifecycle (docs "Orders at Alpaca", alpaca-py OrderStatus).
ORDER_STATUSES = OPEN_STATUSES | FINAL_STATUSES
# Stream error codes and their messages, as Alpaca's "WebSocket Stream" page lists them.
STREAM_ERRORS = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    410: "invalid subscribe action for this feed",
    500: "internal error",
}
# Errors after which Alpaca closes the connection (slow clients are dropped; an internal error ends it).
_STREAM_ERRORS_THAT_CLOSE = frozenset({404, 407, 500})
# POST /v2/orders refusals copied from real answers (code, message[, extra fields]).
WASH_TRADE_MESSAGE = "potential wash trade detected. use complex orders"
PDT_MESSAGE = "trade denied due to pattern day trading protection"
PDT_EQUITY_MINIMUM = Decimal(25000)
STREAM_CHANNELS = (
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
)

FAKE_LIMITATIONS = """\
- Only market orders with time_in_force=day and whole-share qty are accepted
  (limit/stop, fractional and notional orders get a 422 naming the fake);
  positions may still be fractional (set_position).
- Fills ignore market hours: a day order submitted while the market is closed
  still fills after fill_delay (real Alpaca queues it until the open).
- Margin account by default, as every paper account is: multiplier 2 (1 under
  $2,000 equity), buying power = 2 x equity - long value - open buy holds, and
  cash goes negative. account_type="cash": buying power = cash - open buy holds.
  No 3% market-order buffer. Selling more than held is refused (no shorting).
- The wash-trade check knows only market orders: any open opposite-side order
  of the symbol refuses the new one.
- Pattern-day-trader fields and the PDT refusal exist only with pdt_fields=True
  (Alpaca removed them on 2026-07-06 when FINRA retired the rule); the fake's
  daytrade_count never rolls off after 5 sessions.
- Bars: 1-59Min, 1-23Hour and 1Day are served (aggregated from stored
  minute bars); Week/Month are not. adjustment/asof/currency are accepted and
  ignored. A date-only start/end is read as a UTC day.
- The account has free-plan limits by default: one stream connection, no SIP
  stream, no SIP REST bars newer than 15 minutes (set free_plan=False to lift).
"""

_AUTH_ERROR = {"code": 40110000, "message": "request is not authorized"}
_GATEWAY_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")


# --------------------------------------------------------------------------- #
# small value types and helpers
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class AssetInfo:
    """One tradable (or not) instrument the fake knows about."""

    symbol: str
    tradable: bool = True
    status: str = "active"
    exchange: str = "NASDAQ"
    name: str = ""

    @property
    def asset_id(self) -> str:
        """Stable id derived from the symbol, so it survives reset()."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "fake-alpaca-asset:" + self.symbol))


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the server saw it (websocket upgrades included)."""

    method: str
    path: str
    raw_path: str
    query: tuple[tuple[str, str], ...]
    time: float
    status: int

    def param(self, name: str) -> Optional[str]:
        """First value of query parameter ``name`` or None."""
        for key, value in self.query:
            if key == name:
                return value
        return None


DEFAULT_ASSETS: tuple[AssetInfo, ...] = (
    AssetInfo("AAPL", exchange="NASDAQ", name="Apple Inc. Common Stock"),
    AssetInfo("NVDA", exchange="NASDAQ", name="NVIDIA Corporation Common Stock"),
    AssetInfo("MSFT", exchange="NASDAQ", name="Microsoft Corporation Common Stock"),
    AssetInfo("SPY", exchange="ARCA", name="SPDR S&P 500 ETF Trust"),
    AssetInfo("TSLA", exchange="NASDAQ", name="Tesla, Inc. Common Stock"),
    AssetInfo("AMD", exchange="NASDAQ", name="Advanced Micro Devices, Inc. Common Stock"),
    AssetInfo("GOOG", exchange="NASDAQ", name="Alphabet Inc. Class C Capital Stock"),
    AssetInfo("AMZN", exchange="NASDAQ", name="Amazon.com, Inc. Common Stock"),
    AssetInfo("META", exchange="NASDAQ", name="Meta Platforms, Inc. Class A Common Stock"),
    AssetInfo("QQQ", exchange="NASDAQ", name="Invesco QQQ Trust, Series 1"),
)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01
) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises TimeoutError with a clear sentence if it never does.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout:.1f} s")
        time.sleep(interval)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(dt: Optional[datetime], digits: int = 6) -> Optional[str]:
    """Alpaca's order timestamps: UTC, trailing Z, 6 or (as Alpaca also sends) 9 fraction digits."""
    if dt is None:
        return None
    text = dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    if digits == 9:
        # Python keeps microseconds only; the nanoseconds are made up but stable for one instant.
        text += f"{(dt.microsecond * 7 + dt.second) % 1000:03d}"
    return text + "Z"


def _qty_json(value: Decimal | int, numeric: bool) -> Any:
    """A quantity as Alpaca sends it: a string, or a JSON number (int when whole)."""
    value = Decimal(value)
    if numeric:
        return int(value) if value == value.to_integral_value() else float(value)
    return format(value.normalize(), "f") if value != value.to_integral_value() else str(int(value))


def _bar_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


def _price_text(value: Decimal) -> str:
    # Alpaca prints prices without padding ("187.2", "100"): strip trailing zeros.
    return format(value.normalize(), "f")


def _parse_time(text: str, *, end: bool) -> datetime:
    """Parse an RFC-3339 timestamp or a YYYY-MM-DD date (UTC day)."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        return day + timedelta(days=1, microseconds=-1) if end else day
    parsed = datetime.fromisoformat(text.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a zone")
    return parsed.astimezone(timezone.utc)


def _error(status: int, code: int, message: str, extra: Optional[dict[str, Any]] = None) -> web.Response:
    return web.json_response({"code": code, "message": message, **(extra or {})}, status=status)


class _ApiError(Exception):
    """Raised inside a handler to answer with an Alpaca-style error body (``extra``: more fields)."""

    def __init__(self, status: int, code: int, message: str,
                 extra: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self) -> web.Response:
        return _error(self.status, self.code, self.message, self.extra)


# --------------------------------------------------------------------------- #
# faults
# --------------------------------------------------------------------------- #


@dataclass
class _Rule:
    kind: str  # "status" or "hang"
    path_prefix: str
    method: Optional[str]
    times: Optional[int]
    after: bool
    status: int = 0
    body: Optional[str] = None
    content_type: str = "application/json"
    seconds: Optional[float] = None
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class _OrderPlan:
    kind: str  # "partial", "reject" or "path"
    symbol: Optional[str]
    times: Optional[int]
    filled_qty: int = 0
    final_status: str = "canceled"
    final_after: float = 0.2
    reason: str = ""
    statuses: tuple[str, ...] = ()
    step: float = 0.05


class Faults:
    """Switches a test flips to make the fake misbehave like real Alpaca can.

    Every switch is thread-safe. ``times=None`` means "until reset()".
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._plans: list[_OrderPlan] = []
        # Kept apart from _rules: a used-up rule may still have requests stalled on it.
        self._hang_events: list[threading.Event] = []
        self._stalled = 0
        self.ws_auth_failures: Optional[int] = 0
        self.ws_connection_limit_failures: Optional[int] = 0
        self.ws_auth_timeouts: Optional[int] = 0
        self.silent_new_connections = False

    # ---- REST ------------------------------------------------------------ #

    def rest_status(
        self,
        path_prefix: str,
        status: int,
        *,
        times: Optional[int] = 1,
        method: Optional[str] = None,
        after_handling: bool = False,
        body: Optional[dict | str] = None,
    ) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status``.

        With ``after_handling`` the request is processed first (an order is
        really created) and only the response is replaced. Default bodies:
        429 and 500 JSON like Alpaca's, 502/503/504 an HTML gateway page.
        """
        if isinstance(body, dict):
            text, ctype = json.dumps(body), "application/json"
        elif isinstance(body, str):
            text, ctype = body, "text/plain"
        elif status in (502, 503, 504):
            reason = _REASONS.get(status, "Error")
            text, ctype = _GATEWAY_HTML.format(status=status, reason=reason), "text/html"
        elif status == 429:
            text, ctype = json.dumps({"code": 42910000, "message": "rate limit exceeded"}), "application/json"
        else:
            text = json.dumps({"code": status * 100000 + 10000, "message": "internal server error occurred"})
            ctype = "application/json"
        rule = _Rule(
            "status", path_prefix, method.upper() if method else None, times,
            after_handling, status=status, body=text, content_type=ctype,
        )
        with self._lock:
            self._rules.append(rule)

    def rate_limit(self, path_prefix: str, times: int = 1, method: Optional[str] = None) -> None:
        """A burst of 429s that recovers after ``times`` requests."""
        self.rest_status(path_prefix, 429, times=times, method=method)

    def server_errors(self, path_prefix: str, status: int = 503, times: int = 1, method: Optional[str] = None) -> None:
        """``times`` 5xx answers (500, 502, 503 or 504), then recovery."""
        if status not in (500, 502, 503, 504):
            raise ValueError(f"server_errors takes 500, 502, 503 or 504, not {status}")
        self.rest_status(path_prefix, status, times=times, method=method)

    def gateway_timeout_after_accept(self, times: int = 1) -> None:
        """POST /v2/orders creates the order, then the client sees a 504."""
        self.rest_status("/v2/orders", 504, times=times, method="POST", after_handling=True)

    def hang(
        self,
        path_prefix: str,
        *,
        seconds: Optional[float] = None,
        times: Optional[int] = 1,
        method: Optional[str] = None,
        after_handling: bool = False,
    ) -> threading.Event:
        """Stall matching requests for ``seconds`` (None: until released).

        Returns an Event; set it (or call release_hangs()) to let them finish.
        With ``after_handling`` the work is done first, then the answer stalls.
        """
        rule = _Rule("hang", path_prefix, method.upper() if method else None, times,
                     after_handling, seconds=seconds)
        with self._lock:
            self._rules.append(rule)
            self._hang_events.append(rule.released)
        return rule.released

    def release_hangs(self) -> None:
        """Let every stalled request go on."""
        with self._lock:
            events = list(self._hang_events)
        for event in events:
            event.set()

    def stalled(self) -> int:
        """How many requests a hang rule is holding right now."""
        with self._lock:
            return self._stalled

    def _stall(self, delta: int) -> None:
        with self._lock:
            self._stalled += delta

    def _take(self, after: bool, method: str, path: str) -> list[_Rule]:
        taken: list[_Rule] = []
        with self._lock:
            for rule in list(self._rules):
                if rule.after != after or not path.startswith(rule.path_prefix):
                    continue
                if rule.method and rule.method != method:
                    continue
                taken.append(rule)
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                if rule.kind == "status":
                    break
        return taken

    # ---- orders ---------------------------------------------------------- #

    def partial_fill(
        self,
        filled_qty: int,
        *,
        final_status: str = "canceled",
        final_after: float = 0.2,
        symbol: Optional[str] = None,
        times: Optional[int] = 1,
    ) -> None:
        """Next order(s) fill only ``filled_qty``, then end ``final_status``."""
        if final_status not in ("canceled", "expired"):
            raise ValueError("final_status must be 'canceled' or 'expired'")
        if filled_qty < 1:
            raise ValueError("filled_qty must be at least 1 (use reject for none)")
        with self._lock:
            self._plans.append(_OrderPlan("partial", symbol, times, filled_qty=filled_qty,
                                          final_status=final_status, final_after=final_after))

    def reject(self, *, symbol: Optional[str] = None, times: Optional[int] = 1) -> None:
        """Next order(s) are accepted, then go to status ``rejected``."""
        with self._lock:
            self._plans.append(_OrderPlan("reject", symbol, times))

    def status_path(
        self,
        *statuses: str,
        final_status: Optional[str] = "filled",
        step: float = 0.05,
        symbol: Optional[str] = None,
        times: Optional[int] = 1,
    ) -> None:
        """Next order(s) walk through ``statuses`` (``step`` seconds each), then end ``final_status``.

        Any open status of Alpaca's lifecycle may appear (pending_new, accepted_for_bidding,
        partially_filled, done_for_day, pending_cancel, pending_replace, stopped, suspended,
        calculated, held, new, accepted). ``partially_filled`` fills about half the shares (at
        least one, never all). The end is ``filled`` (the rest fills), ``canceled``, ``expired``,
        ``rejected``, ``replaced`` (a new order with a fresh id and client id takes over the
        unfilled shares and fills) or None (the order stays in its last status).
        """
        bad = [s for s in statuses if s not in OPEN_STATUSES]
        if bad or not statuses and final_status is None:
            raise ValueError(f"statuses must be open order statuses, not {bad or 'nothing'}")
        if final_status is not None and final_status not in FINAL_STATUSES:
            raise ValueError(f"final_status must be one of {sorted(FINAL_STATUSES)} or None")
        with self._lock:
            self._plans.append(_OrderPlan("path", symbol, times, final_status=final_status or "",
                                          statuses=tuple(statuses), step=step))

    def _take_plan(self, symbol: str) -> Optional[_OrderPlan]:
        with self._lock:
            for plan in self._plans:
                if plan.symbol is not None and plan.symbol != symbol:
                    continue
                if plan.times is not None:
                    plan.times -= 1
                    if plan.times <= 0:
                        self._plans.remove(plan)
                return plan
        return None

    # ---- websocket ------------------------------------------------------- #

    def ws_auth_failure(self, times: Optional[int] = 1) -> None:
        """Next ``times`` stream auths get ``402 auth failed`` (None: forever)."""
        with self._lock:
            self.ws_auth_failures = times

    def ws_connection_limit(self, times: Optional[int] = 1) -> None:
        """Next ``times`` stream auths get ``406 connection limit exceeded``."""
        with self._lock:
            self.ws_connection_limit_failures = times

    def ws_auth_timeout(self, times: Optional[int] = 1) -> None:
        """Next ``times`` stream auths come "too late": ``404 auth timeout``, then the socket closes."""
        with self._lock:
            self.ws_auth_timeouts = times

    def _consume_counter(self, name: str) -> bool:
        with self._lock:
            value = getattr(self, name)
            if value is None:
                return True
            if value > 0:
                setattr(self, name, value - 1)
                return True
            return False

    def reset(self) -> None:
        """Turn every fault off and release stalled requests."""
        self.release_hangs()
        with self._lock:
            self._rules.clear()
            self._plans.clear()
            self.ws_auth_failures = 0
            self.ws_connection_limit_failures = 0
            self.ws_auth_timeouts = 0
            self.silent_new_connections = False
            self._hang_events.clear()


# --------------------------------------------------------------------------- #
# server state
# --------------------------------------------------------------------------- #


@dataclass
class _JsonFormat:
    """How the fake spells orders now (shared by every order; see FakeAlpaca.numeric_quantities)."""

    numeric: bool = False
    digits: int = 6


@dataclass
class _Order:
    id: str
    client_order_id: str
    asset: AssetInfo
    qty: int
    side: str
    time_in_force: str
    created_at: datetime
    status: str = "accepted"
    updated_at: Optional[datetime] = None
    filled_at: Optional[datetime] = None
    canceled_at: Optional[datetime] = None
    expired_at: Optional[datetime] = None
    failed_at: Optional[datetime] = None
    expires_at: Optional[datetime] = None
    filled_qty: int = 0
    filled_avg_price: Optional[Decimal] = None
    plan: Optional[_OrderPlan] = None
    replaced_at: Optional[datetime] = None
    replaced_by: Optional[str] = None
    replaces: Optional[str] = None
    fmt: _JsonFormat = field(default_factory=_JsonFormat)

    def to_json(self, *, numeric: Optional[bool] = None, digits: Optional[int] = None) -> dict[str, Any]:
        """The order exactly as Alpaca's REST API spells it.

        ``numeric``: quantities and the fill price as JSON numbers (Alpaca sends both forms);
        ``digits``: 6 or 9 fraction digits in timestamps. Both default to the fake's settings.
        """
        numeric = self.fmt.numeric if numeric is None else numeric
        digits = self.fmt.digits if digits is None else digits

        def ts(value: Optional[datetime]) -> Optional[str]:
            return _rfc3339(value, digits)

        if self.filled_avg_price is None:
            avg: Any = None
        elif numeric:
            avg = float(self.filled_avg_price)
        else:
            avg = _price_text(self.filled_avg_price)
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": ts(self.created_at),
            "updated_at": ts(self.updated_at or self.created_at),
            "submitted_at": ts(self.created_at),
            "filled_at": ts(self.filled_at),
            "expired_at": ts(self.expired_at),
            "canceled_at": ts(self.canceled_at),
            "failed_at": ts(self.failed_at),
            "replaced_at": ts(self.replaced_at),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": self.asset.asset_id,
            "symbol": self.asset.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": _qty_json(self.qty, numeric),
            "filled_qty": _qty_json(self.filled_qty, numeric),
            "filled_avg_price": avg,
            "order_class": "",
            "order_type": "market",
            "type": "market",
            "side": self.side,
            "position_intent": "buy_to_open" if self.side == "buy" else "sell_to_close",
            "time_in_force": self.time_in_force,
            "limit_price": None,
            "stop_price": None,
            "status": self.status,
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
            "expires_at": ts(self.expires_at),
        }


@dataclass
class _Position:
    qty: Decimal = Decimal(0)  # may be fractional (shares bought by hand or by notional)
    cost: Decimal = Decimal(0)


class _WsConn:
    """One websocket client."""

    def __init__(self, ws: web.WebSocketResponse, transport: Any, feed: str, use_msgpack: bool) -> None:
        self.ws = ws
        self.transport = transport
        self.feed = feed
        self.use_msgpack = use_msgpack
        self.authenticated = False
        self.muted = False
        self.subs: dict[str, set[str]] = {channel: set() for channel in STREAM_CHANNELS}

    def encode(self, messages: list[dict[str, Any]]) -> bytes | str:
        if self.use_msgpack:
            return msgpack.packb(messages, datetime=False)
        return json.dumps(messages, default=_json_default)

    async def send(self, messages: list[dict[str, Any]]) -> None:
        payload = self.encode(messages)
        if isinstance(payload, bytes):
            await self.ws.send_bytes(payload)
        else:
            await self.ws.send_str(payload)

    def ack(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"T": "subscription"}
        for channel in STREAM_CHANNELS:
            msg[channel] = sorted(self.subs[channel])
        # Alpaca mirrors trade subscriptions into corrections and cancelErrors.
        msg["corrections"] = sorted(self.subs["trades"])
        msg["cancelErrors"] = sorted(self.subs["trades"])
        return msg


def _json_default(value: Any) -> Any:
    if isinstance(value, msgpack.Timestamp):
        return value.to_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
    raise TypeError(f"cannot encode {type(value).__name__}")


class FakeAlpaca:
    """Fake Alpaca: trading REST, market-data REST and the market-data stream.

    State is thread-safe and settable from tests; see the public methods.
    ``start()`` binds 127.0.0.1 (port 0 unless given) and returns once serving.
    """

    def __init__(
        self,
        key: str = "test-key",
        secret: str = "test-secret",
        *,
        cash: Decimal | float | str = 100000,
        fill_delay: Optional[float] = 0.1,
        free_plan: bool = True,
        account_type: str = "margin",
        pdt_fields: bool = False,
    ) -> None:
        if account_type not in ("cash", "margin"):
            raise ValueError("account_type must be 'cash' or 'margin'")
        self._key = key
        self._secret = secret
        self._initial_cash = Decimal(str(cash))
        self._initial_fill_delay = fill_delay
        self._initial_free_plan = free_plan
        self._initial_account_type = account_type
        self._initial_pdt_fields = pdt_fields
        self._fmt = _JsonFormat()
        self._lock = threading.RLock()
        self.faults = Faults()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self._port: Optional[int] = None
        self._conns: list[_WsConn] = []
        self._ws_connects_total = 0
        self._tasks: set[asyncio.Task] = set()
        self._opens: list[datetime] = []
        self._closes: list[datetime] = []
        self._now_fn: Callable[[], datetime] = _utcnow
        self._account_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "fake-alpaca-account"))
        self._reset_state()

    def __repr__(self) -> str:
        # Never show the secret.
        return f"FakeAlpaca(origin={self.origin if self._port else None!r})"

    # ------------------------------------------------------------------ #
    # lifecycle
    # ------------------------------------------------------------------ #

    def start(self, port: int = 0) -> "FakeAlpaca":
        """Bind 127.0.0.1:``port`` (0 = any free port) and serve in a thread."""
        if self._thread is not None:
            raise RuntimeError("FakeAlpaca is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup(port))
            except BaseException as exc:  # surface bind errors to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="FakeAlpaca", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise RuntimeError(f"fake Alpaca could not start on port {port}: {failure[0]}")
        return self

    def stop(self) -> None:
        """Close every connection, stop serving and join the thread."""
        if self._thread is None or self._loop is None:
            return
        self.faults.release_hangs()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._port = None

    def __enter__(self) -> "FakeAlpaca":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _startup(self, port: int) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v2/account", self._h_account)
        app.router.add_get("/v2/assets", self._h_assets)
        # Symbol matched raw (any characters but '/') so odd symbols reach the
        # handler and are answered like Alpaca does, not by a router 404.
        app.router.add_get(r"/v2/assets/{symbol_or_id:[^/]+}", self._h_asset)
        app.router.add_post("/v2/orders", self._h_submit)
        app.router.add_get("/v2/orders", self._h_orders)
        app.router.add_delete("/v2/orders", self._h_cancel_all)
        app.router.add_get("/v2/orders:by_client_order_id", self._h_order_by_client_id)
        app.router.add_get(r"/v2/orders/{order_id:[^/]+}", self._h_order)
        app.router.add_delete(r"/v2/orders/{order_id:[^/]+}", self._h_cancel)
        app.router.add_get("/v2/positions", self._h_positions)
        app.router.add_get(r"/v2/positions/{symbol:[^/]+}", self._h_position)
        app.router.add_get("/v2/clock", self._h_clock)
        app.router.add_get("/v2/calendar", self._h_calendar)
        app.router.add_get("/v2/stocks/bars", self._h_bars)
        app.router.add_get(r"/v2/stocks/{symbol:[^/]+}/bars", self._h_symbol_bars)
        for feed in STREAM_FEEDS:
            app.router.add_get(f"/v2/{feed}", self._h_stream)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self._port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def _shutdown(self) -> None:
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ #
    # addresses and credentials
    # ------------------------------------------------------------------ #

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._port is None:
            raise RuntimeError("FakeAlpaca is not running: call start() first")
        return self._port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: url_override for the REST clients."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        """``ws://127.0.0.1:PORT/v2/iex``: url_override for StockDataStream."""
        return f"ws://127.0.0.1:{self.port}/v2/iex"

    def stream_url_for(self, feed: str) -> str:
        """Stream URL for ``iex``, ``sip`` or ``test``."""
        if feed not in STREAM_FEEDS:
            raise ValueError(f"unknown feed {feed!r}; use one of {STREAM_FEEDS}")
        return f"ws://127.0.0.1:{self.port}/v2/{feed}"

    @property
    def key(self) -> str:
        """API key id the fake accepts."""
        return self._key

    @property
    def secret(self) -> str:
        """API secret the fake accepts."""
        return self._secret

    # ------------------------------------------------------------------ #
    # settable state
    # ------------------------------------------------------------------ #

    def _reset_state(self) -> None:
        with self._lock:
            self._cash = self._initial_cash
            self._assets: dict[str, AssetInfo] = {a.symbol: a for a in DEFAULT_ASSETS}
            self._prices: dict[str, Decimal] = {}
            self._orders: dict[str, _Order] = {}
            self._orders_by_client: dict[str, _Order] = {}
            self._positions: dict[str, _Position] = {}
            self._bar_times: dict[str, list[int]] = {}
            self._bar_rows: dict[str, dict[int, tuple]] = {}
            self._log: list[RequestRecord] = []
            self.fill_delay: Optional[float] = self._initial_fill_delay
            self.free_plan: bool = self._initial_free_plan
            self.ws_max_connections: Optional[int] = 1 if self._initial_free_plan else None
            self.account_status = "ACTIVE"
            self.trading_blocked = False
            # Switches for Alpaca's real rules (each documented where it is used).
            self.account_type: str = self._initial_account_type
            self.pdt_fields: bool = self._initial_pdt_fields
            self.pattern_day_trader = False
            self.daytrade_count = 0
            self.last_equity: Optional[Decimal] = None  # None: yesterday's close = the initial cash
            self.wash_trade_check = True
            self.cancel_delay: Optional[float] = 0.0
            self.latency: float = 0.0  # seconds added to every REST answer (a network round trip)
            # Alpaca's free (Basic) plan streams at most 30 symbols per connection.
            self.ws_symbol_limit: Optional[int] = 30 if self._initial_free_plan else None
            self._fmt.numeric, self._fmt.digits = False, 6
            self._fills_today: list[tuple[date, str, str]] = []  # (ET session day, symbol, side)

    def reset(self) -> None:
        """Back to a fresh account: defaults, no orders, bars, log or faults.

        Open websocket connections stay open.
        """
        self.faults.reset()
        self._reset_state()
        self._now_fn = _utcnow

    @property
    def numeric_quantities(self) -> bool:
        """Switch: orders carry qty, filled_qty and filled_avg_price as JSON numbers, not strings."""
        return self._fmt.numeric

    @numeric_quantities.setter
    def numeric_quantities(self, value: bool) -> None:
        self._fmt.numeric = bool(value)

    @property
    def time_digits(self) -> int:
        """Switch: fraction digits of order and clock timestamps, 6 (default) or 9 (nanoseconds)."""
        return self._fmt.digits

    @time_digits.setter
    def time_digits(self, value: int) -> None:
        if value not in (6, 9):
            raise ValueError("time_digits must be 6 or 9")
        self._fmt.digits = value

    def set_cash(self, cash: Decimal | float | str) -> None:
        """Set the account's cash balance."""
        with self._lock:
            self._cash = Decimal(str(cash))

    @property
    def cash(self) -> Decimal:
        """Current cash."""
        with self._lock:
            return self._cash

    def add_asset(
        self,
        symbol: str,
        *,
        tradable: bool = True,
        status: str = "active",
        exchange: str = "NASDAQ",
        name: str = "",
    ) -> AssetInfo:
        """Add or replace an asset (status ``active`` or ``inactive``)."""
        if status not in ("active", "inactive"):
            raise ValueError("status must be 'active' or 'inactive'")
        asset = AssetInfo(symbol, tradable, status, exchange, name or f"{symbol} Common Stock")
        with self._lock:
            self._assets[symbol] = asset
        return asset

    def set_price(self, symbol: str, price: Decimal | float | str) -> None:
        """Price at which the next market orders for ``symbol`` fill."""
        with self._lock:
            self._prices[symbol] = Decimal(str(price))

    def price(self, symbol: str) -> Decimal:
        """Current fill price of ``symbol`` (default 100.00)."""
        with self._lock:
            return self._prices.get(symbol, Decimal("100.00"))

    def set_now(self, now: datetime | Callable[[], datetime] | None) -> None:
        """Fix the server's "now" (aware datetime) or give a function; None = real time."""
        if now is None:
            self._now_fn = _utcnow
        elif callable(now):
            self._now_fn = now
        else:
            if now.tzinfo is None:
                raise ValueError("set_now needs a timezone-aware datetime")
            fixed = now
            self._now_fn = lambda: fixed

    def now(self) -> datetime:
        """The server's current time (UTC)."""
        return self._now_fn().astimezone(timezone.utc)

    def position_qty(self, symbol: str) -> Decimal:
        """Shares held of ``symbol`` (0 if none; a Decimal, since positions may be fractional)."""
        with self._lock:
            pos = self._positions.get(symbol)
            return pos.qty if pos else Decimal(0)

    def set_position(self, symbol: str, qty: Decimal | int | str, avg_price: Decimal | float | str) -> None:
        """Give the account ``qty`` shares (fractional allowed) bought at ``avg_price`` (cash unchanged)."""
        qty = Decimal(str(qty))
        with self._lock:
            if qty <= 0:
                self._positions.pop(symbol, None)
            else:
                self._positions[symbol] = _Position(qty, Decimal(str(avg_price)) * qty)

    def orders(self) -> list[dict[str, Any]]:
        """Every order ever accepted, oldest first, as Alpaca JSON."""
        with self._lock:
            return [o.to_json() for o in self._orders.values()]

    def order(self, client_order_id: str) -> Optional[dict[str, Any]]:
        """One order by client_order_id, as Alpaca JSON, or None."""
        with self._lock:
            order = self._orders_by_client.get(client_order_id)
            return order.to_json() if order else None

    # ---- bars ---------------------------------------------------------- #

    def add_bars(self, symbol: str, bars: Iterable[Sequence[float]]) -> int:
        """Store minute bars ``(epoch_s, o, h, l, c, v[, n, vw])``; returns the count.

        A bar at an existing timestamp replaces it.
        """
        rows = []
        for bar in bars:
            if len(bar) not in (6, 8):
                raise ValueError("a bar is (epoch_seconds, o, h, l, c, v[, n, vw])")
            epoch = int(bar[0])
            o, h, l, c = (float(x) for x in bar[1:5])
            v = int(bar[5])
            n = int(bar[6]) if len(bar) == 8 else max(1, v // 100)
            vw = float(bar[7]) if len(bar) == 8 else round((h + l + c) / 3, 4)
            rows.append((epoch, o, h, l, c, v, n, vw))
        with self._lock:
            store = self._bar_rows.setdefault(symbol, {})
            for row in rows:
                store[row[0]] = row
            self._bar_times[symbol] = sorted(store)
        return len(rows)

    def bar_count(self, symbol: str) -> int:
        """Number of stored minute bars for ``symbol``."""
        with self._lock:
            return len(self._bar_times.get(symbol, ()))

    # ---- request log ----------------------------------------------------- #

    def requests(self, path_prefix: str = "", method: Optional[str] = None) -> list[RequestRecord]:
        """Logged requests whose path starts with ``path_prefix``."""
        with self._lock:
            return [
                r for r in self._log
                if r.path.startswith(path_prefix) and (method is None or r.method == method.upper())
            ]

    def count(self, path_prefix: str, method: Optional[str] = None) -> int:
        """How many logged requests match (e.g. ``count("/v2/stocks/bars")``)."""
        return len(self.requests(path_prefix, method))

    def clear_log(self) -> None:
        """Forget logged requests."""
        with self._lock:
            self._log.clear()

    # ------------------------------------------------------------------ #
    # websocket control (thread-safe; block until done on the server loop)
    # ------------------------------------------------------------------ #

    def _call(self, coro: Any, timeout: float = 5.0) -> Any:
        if self._loop is None or self._thread is None:
            raise RuntimeError("FakeAlpaca is not running: call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def push_bar(self, symbol: str, bar: Sequence[float], *, store: bool = True) -> int:
        """Send a minute bar to every authenticated client subscribed to it.

        ``bar`` is ``(epoch_s, o, h, l, c, v[, n, vw])``. Returns how many
        clients it was written to. With ``store`` it is also served by REST
        afterwards, as on Alpaca.
        """
        if store:
            self.add_bars(symbol, [bar])
        epoch, o, h, l, c, v = bar[:6]
        n = int(bar[6]) if len(bar) == 8 else max(1, int(v) // 100)
        vw = float(bar[7]) if len(bar) == 8 else round((float(h) + float(l) + float(c)) / 3, 4)
        msg = {
            "T": "b", "S": symbol, "o": float(o), "h": float(h), "l": float(l),
            "c": float(c), "v": int(v), "t": msgpack.Timestamp.from_unix(int(epoch)),
            "n": n, "vw": vw,
        }
        return self._call(self._broadcast("bars", symbol, msg))

    def push_updated_bar(self, symbol: str, bar: Sequence[float], *, store: bool = True) -> int:
        """Send an updated bar (``"T": "u"``, a late-trade correction of a minute already sent)
        on the ``updatedBars`` channel; with ``store`` it replaces the minute REST serves."""
        if store:
            self.add_bars(symbol, [bar])
        epoch, o, h, l, c, v = bar[:6]
        n = int(bar[6]) if len(bar) == 8 else max(1, int(v) // 100)
        vw = float(bar[7]) if len(bar) == 8 else round((float(h) + float(l) + float(c)) / 3, 4)
        msg = {
            "T": "u", "S": symbol, "o": float(o), "h": float(h), "l": float(l),
            "c": float(c), "v": int(v), "t": msgpack.Timestamp.from_unix(int(epoch)),
            "n": n, "vw": vw,
        }
        return self._call(self._broadcast("updatedBars", symbol, msg))

    def stream_error(self, code: int, *, close: Optional[bool] = None) -> int:
        """Send Alpaca's stream error ``code`` (with its real message) to every authenticated client.

        ``close`` (default: as Alpaca does for 404, 407 and 500) ends those connections after it.
        Returns how many clients got it.
        """
        if code not in STREAM_ERRORS:
            raise ValueError(f"Alpaca has no stream error {code}; use one of {sorted(STREAM_ERRORS)}")
        close = code in _STREAM_ERRORS_THAT_CLOSE if close is None else close
        return self._call(self._stream_error(code, close))

    async def _stream_error(self, code: int, close: bool) -> int:
        sent = 0
        for conn in list(self._conns):
            if not conn.authenticated or conn.ws.closed:
                continue
            try:
                await conn.send([{"T": "error", "code": code, "msg": STREAM_ERRORS[code]}])
                sent += 1
                if close:
                    await conn.ws.close()
            except ConnectionError:
                pass
        return sent

    async def _broadcast(self, channel: str, symbol: str, msg: dict[str, Any]) -> int:
        sent = 0
        for conn in list(self._conns):
            if not conn.authenticated or conn.muted or conn.ws.closed:
                continue
            subs = conn.subs[channel]
            if symbol in subs or "*" in subs:
                try:
                    await conn.send([msg])
                    sent += 1
                except ConnectionError:
                    pass
        return sent

    def subscriptions(self, channel: str = "bars") -> set[str]:
        """Symbols currently subscribed on ``channel`` by any authenticated client."""
        return self._call(self._subscriptions(channel))

    async def _subscriptions(self, channel: str) -> set[str]:
        out: set[str] = set()
        for conn in self._conns:
            if conn.authenticated and not conn.ws.closed:
                out |= conn.subs[channel]
        return out

    def connection_count(self) -> int:
        """Open websocket connections (authenticated or not)."""
        return self._call(self._connection_count())

    async def _connection_count(self) -> int:
        return sum(1 for c in self._conns if not c.ws.closed)

    @property
    def ws_connects_total(self) -> int:
        """Websocket upgrades accepted since start (reconnects count)."""
        return self._ws_connects_total

    def drop_connections(self, *, clean: bool = False) -> int:
        """Close every stream connection now; returns how many.

        Default is an abrupt TCP abort (what a network drop looks like); with
        ``clean`` a close frame (1012 service restart) is sent first.
        """
        return self._call(self._drop(clean))

    async def _drop(self, clean: bool) -> int:
        count = 0
        for conn in list(self._conns):
            if conn.ws.closed:
                continue
            count += 1
            if clean:
                await conn.ws.close(code=1012, message=b"service restart")
            elif conn.transport is not None:
                conn.transport.abort()
        return count

    def silence_stream(self, *, new_connections_too: bool = False) -> int:
        """Open connections stay up (pings answered) but get no more data.

        With ``new_connections_too`` later connections are silent as well
        (until reset()); otherwise a reconnect cures it. Returns connections muted.
        """
        with self.faults._lock:
            self.faults.silent_new_connections = new_connections_too
        return self._call(self._mute())

    async def _mute(self) -> int:
        count = 0
        for conn in self._conns:
            if not conn.ws.closed:
                conn.muted = True
                count += 1
        return count

    # ------------------------------------------------------------------ #
    # order lifecycle (manual control for fill_delay=None)
    # ------------------------------------------------------------------ #

    def fill_order(self, client_order_id: str, qty: Optional[int] = None,
                   price: Decimal | float | str | None = None) -> dict[str, Any]:
        """Fill an open order (all or ``qty`` more shares); returns its JSON."""
        with self._lock:
            order = self._orders_by_client.get(client_order_id)
            if order is None:
                raise KeyError(f"no order with client_order_id {client_order_id!r}")
            if order.status in FINAL_STATUSES:
                raise ValueError(f"order {client_order_id!r} is already {order.status}")
            add = order.qty - order.filled_qty if qty is None else qty
            self._apply_fill(order, add, None if price is None else Decimal(str(price)))
            return order.to_json()

    def expire_open_orders(self) -> int:
        """End of day: every open day order becomes ``expired``; returns how many."""
        now = self.now()
        count = 0
        with self._lock:
            for order in self._orders.values():
                if order.status not in FINAL_STATUSES:
                    order.status, order.expired_at, order.updated_at = "expired", now, now
                    count += 1
        return count

    def _apply_fill(self, order: _Order, qty: int, price: Optional[Decimal]) -> None:
        """Fill ``qty`` more shares; caller holds the lock."""
        if qty <= 0 or order.filled_qty + qty > order.qty:
            raise ValueError("fill quantity out of range")
        px = price if price is not None else self.price(order.asset.symbol)
        now = self.now()
        prior = order.filled_avg_price or Decimal(0)
        total = prior * order.filled_qty + px * qty
        order.filled_qty += qty
        order.filled_avg_price = (total / order.filled_qty).quantize(Decimal("0.0001")).normalize()
        order.updated_at = now
        order.status = "filled" if order.filled_qty == order.qty else "partially_filled"
        if order.status == "filled":
            order.filled_at = now  # stays null while only part is filled
        self._note_day_trade(order, first_fill=order.filled_qty == qty, now=now)
        pos = self._positions.setdefault(order.asset.symbol, _Position())
        if order.side == "buy":
            self._cash -= px * qty
            pos.cost += px * qty
            pos.qty += qty
        else:
            avg = pos.cost / pos.qty if pos.qty else Decimal(0)
            self._cash += px * qty
            pos.qty -= qty
            pos.cost -= avg * qty
        if pos.qty <= 0:
            self._positions.pop(order.asset.symbol, None)

    def _note_day_trade(self, order: _Order, *, first_fill: bool, now: datetime) -> None:
        """Count a day trade when a sell fills against shares bought the same session (lock held)."""
        if not first_fill:
            return
        day, symbol = now.astimezone(ET).date(), order.asset.symbol
        if order.side == "sell" and (day, symbol, "buy") in self._fills_today:
            self.daytrade_count += 1
        self._fills_today = [f for f in self._fills_today if f[0] == day]
        self._fills_today.append((day, symbol, order.side))

    def _would_day_trade(self, symbol: str, side: str) -> bool:
        """A sell of a symbol bought this session completes a day trade (lock held)."""
        day = self.now().astimezone(ET).date()
        return side == "sell" and (day, symbol, "buy") in self._fills_today

    def _end_order(self, order: _Order, status: str) -> None:
        """Move an open order to a final ``status`` with the timestamps Alpaca sets (lock held)."""
        now = self.now()
        if status == "filled":
            rest = order.qty - order.filled_qty
            if rest > 0:
                self._apply_fill(order, rest, None)
            return
        order.status, order.updated_at = status, now
        if status == "canceled":
            order.canceled_at = now
        elif status == "expired":
            order.expired_at = now
        elif status == "rejected":
            order.failed_at = now
        elif status == "replaced":
            # A replacement is a new order (new id and client id) for the shares still open.
            new = _Order(
                id=str(uuid.uuid4()), client_order_id=str(uuid.uuid4()), asset=order.asset,
                qty=order.qty - order.filled_qty, side=order.side, time_in_force=order.time_in_force,
                created_at=now, updated_at=now, expires_at=order.expires_at, replaces=order.id,
                fmt=self._fmt,
            )
            order.replaced_at, order.replaced_by = now, new.id
            self._orders[new.id] = new
            self._orders_by_client[new.client_order_id] = new
            self._spawn(self._lifecycle(new))

    async def _walk(self, order: _Order, plan: _OrderPlan) -> None:
        """An order on a status_path plan: each status for ``plan.step`` seconds, then the end."""
        for status in plan.statuses:
            with self._lock:
                if order.status in FINAL_STATUSES or order.status == "pending_cancel":
                    return  # canceled (or being canceled) meanwhile
                part = max(1, order.qty // 2)
                if status == "partially_filled" and order.filled_qty == 0 and part < order.qty:
                    self._apply_fill(order, part, None)
                else:
                    order.status, order.updated_at = status, self.now()
            await asyncio.sleep(plan.step)
        with self._lock:
            if plan.final_status and order.status not in FINAL_STATUSES \
                    and order.status != "pending_cancel":
                self._end_order(order, plan.final_status)

    async def _finish_cancel(self, order: _Order, delay: float) -> None:
        await asyncio.sleep(delay)
        with self._lock:
            if order.status == "pending_cancel":
                self._end_order(order, "canceled")

    async def _lifecycle(self, order: _Order) -> None:
        if order.plan is not None and order.plan.kind == "path":
            await self._walk(order, order.plan)
            return
        delay = self.fill_delay
        if delay is None:
            await asyncio.sleep(0.01)
            with self._lock:
                if order.status == "accepted":
                    order.status, order.updated_at = "new", self.now()
            return
        await asyncio.sleep(min(0.01, delay / 2))
        with self._lock:
            if order.status != "accepted":
                return
            order.status, order.updated_at = "new", self.now()
        await asyncio.sleep(max(0.0, delay - min(0.01, delay / 2)))
        plan = order.plan
        with self._lock:
            if order.status != "new":
                return  # canceled meanwhile
            if plan is not None and plan.kind == "reject":
                now = self.now()
                order.status, order.failed_at, order.updated_at = "rejected", now, now
                return
            if plan is not None and plan.kind == "partial":
                self._apply_fill(order, min(plan.filled_qty, order.qty), None)
            else:
                self._apply_fill(order, order.qty - order.filled_qty, None)
        if plan is not None and plan.kind == "partial" and order.status == "partially_filled":
            await asyncio.sleep(plan.final_after)
            with self._lock:
                if order.status == "partially_filled":
                    now = self.now()
                    order.status, order.updated_at = plan.final_status, now
                    if plan.final_status == "canceled":
                        order.canceled_at = now
                    else:
                        order.expired_at = now

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ #
    # middleware: log, auth, faults
    # ------------------------------------------------------------------ #

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        method, path = request.method, request.path
        is_stream = path in {f"/v2/{f}" for f in STREAM_FEEDS}
        status = 500
        try:
            response = await self._guarded(request, handler, method, path, is_stream)
            status = response.status
            return response
        finally:
            record = RequestRecord(
                method, path, request.raw_path, tuple(request.query.items()), time.time(), status,
            )
            with self._lock:
                self._log.append(record)

    async def _guarded(self, request: web.Request, handler: Callable, method: str,
                       path: str, is_stream: bool) -> web.StreamResponse:
        if self.latency > 0 and not is_stream:
            await asyncio.sleep(self.latency)  # concurrent requests wait side by side, as on a network
        for rule in self.faults._take(False, method, path):
            if rule.kind == "hang":
                await self._hang(rule)
            else:
                return web.Response(status=rule.status, text=rule.body, content_type=rule.content_type)
        if isinstance(request.match_info.http_exception, web.HTTPNotFound):
            # An address Alpaca does not serve (e.g. a mistyped stream URL): 404 before any auth.
            return _error(404, 40410000, "endpoint not found")
        if not is_stream:
            key = request.headers.get("APCA-API-KEY-ID")
            secret = request.headers.get("APCA-API-SECRET-KEY")
            if key != self._key or secret != self._secret:
                return web.json_response(_AUTH_ERROR, status=401)
        try:
            response = await handler(request)
        except _ApiError as exc:
            response = exc.response()
        for rule in self.faults._take(True, method, path):
            if rule.kind == "hang":
                await self._hang(rule)
            else:
                return web.Response(status=rule.status, text=rule.body, content_type=rule.content_type)
        return response

    async def _hang(self, rule: _Rule) -> None:
        deadline = None if rule.seconds is None else time.monotonic() + rule.seconds
        self.faults._stall(+1)
        try:
            while not rule.released.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    return
                await asyncio.sleep(0.01)
        finally:
            self.faults._stall(-1)

    # ------------------------------------------------------------------ #
    # trading handlers
    # ------------------------------------------------------------------ #

    def _holds(self) -> tuple[Decimal, dict[str, int]]:
        """Cash held by open buys and shares held by open sells (lock held)."""
        cash_hold = Decimal(0)
        share_hold: dict[str, int] = {}
        for order in self._orders.values():
            if order.status in FINAL_STATUSES:
                continue
            remaining = order.qty - order.filled_qty
            if order.side == "buy":
                cash_hold += remaining * self.price(order.asset.symbol)
            else:
                share_hold[order.asset.symbol] = share_hold.get(order.asset.symbol, 0) + remaining
        return cash_hold, share_hold

    def _margin_figures(self) -> tuple[Decimal, Decimal, int, Decimal]:
        """(equity, long market value, multiplier, buying power) as Alpaca computes them (lock held).

        Cash account: buying power = cash - open buy holds. Margin account: Reg T, multiplier 2
        (1 under $2,000 equity), buying power = 2 x equity - long value - open buy holds.
        """
        cash_hold, _ = self._holds()
        long_value = sum((pos.qty * self.price(sym) for sym, pos in self._positions.items()), Decimal(0))
        equity = self._cash + long_value
        if self.account_type == "margin" and equity >= 2000:
            return equity, long_value, 2, max(Decimal(0), 2 * equity - long_value - cash_hold)
        return equity, long_value, 1, max(Decimal(0), self._cash - cash_hold)

    def set_daytrade_count(self, count: int, *, pattern_day_trader: Optional[bool] = None) -> None:
        """Day trades in the last five sessions (pdt_fields accounts); optionally the PDT flag."""
        with self._lock:
            self.daytrade_count = int(count)
            if pattern_day_trader is not None:
                self.pattern_day_trader = pattern_day_trader

    async def _h_account(self, request: web.Request) -> web.Response:
        with self._lock:
            equity, long_value, multiplier, buying_power = self._margin_figures()
            margin = self.account_type == "margin"
            last_equity = self._initial_cash if self.last_equity is None else self.last_equity
            body = {
                "id": self._account_id,
                "account_number": "PA3FAKE00001",
                "status": self.account_status,
                "crypto_status": "ACTIVE",
                "currency": "USD",
                "buying_power": _money(buying_power),
                "regt_buying_power": _money(buying_power),
                "effective_buying_power": _money(buying_power),
                "non_marginable_buying_power": _money(max(Decimal(0), self._cash)),
                "options_buying_power": _money(max(Decimal(0), self._cash)),
                "cash": _money(self._cash),
                "accrued_fees": "0",
                "pending_transfer_in": "0",
                "portfolio_value": _money(equity),
                "trading_blocked": self.trading_blocked,
                "transfers_blocked": False,
                "account_blocked": False,
                "created_at": "2024-01-02T15:04:05.123456Z",
                "trade_suspended_by_user": False,
                "multiplier": str(multiplier),
                "shorting_enabled": margin,
                "equity": _money(equity),
                "last_equity": _money(last_equity),
                "long_market_value": _money(long_value),
                "short_market_value": "0",
                "position_market_value": _money(long_value),
                "initial_margin": _money(long_value / 2 if margin else Decimal(0)),
                "maintenance_margin": _money(long_value * Decimal("0.3") if margin else Decimal(0)),
                "last_maintenance_margin": "0",
                "sma": "0",
                "balance_asof": self.now().astimezone(ET).date().isoformat(),
                "crypto_tier": 0,
                "options_trading_level": 0,
                "options_approved_level": 0,
                "intraday_adjustments": "0",
                "pending_reg_taf_fees": "0",
            }
            if self.pdt_fields:
                # Before 2026-07-06 (FINRA's PDT rule) the account also carried these.
                dtbp = 4 * last_equity if margin and equity >= PDT_EQUITY_MINIMUM else Decimal(0)
                body.update({
                    "pattern_day_trader": self.pattern_day_trader,
                    "daytrade_count": self.daytrade_count,
                    "last_daytrade_count": self.daytrade_count,
                    "daytrading_buying_power": _money(dtbp),
                    "last_daytrading_buying_power": _money(dtbp),
                    "bod_dtbp": _money(dtbp),
                })
        return web.json_response(body)

    def _asset_json(self, asset: AssetInfo) -> dict[str, Any]:
        return {
            "id": asset.asset_id,
            "class": "us_equity",
            "exchange": asset.exchange,
            "symbol": asset.symbol,
            "name": asset.name,
            "status": asset.status,
            "tradable": asset.tradable,
            "marginable": True,
            "maintenance_margin_requirement": 30,
            "margin_requirement_long": "30",
            "margin_requirement_short": "100",
            "shortable": True,
            "easy_to_borrow": True,
            "fractionable": True,
            "attributes": [],
        }

    def _find_asset(self, symbol_or_id: str) -> Optional[AssetInfo]:
        with self._lock:
            if symbol_or_id in self._assets:
                return self._assets[symbol_or_id]
            for asset in self._assets.values():
                if asset.asset_id == symbol_or_id.lower():
                    return asset
        return None

    async def _h_assets(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        with self._lock:
            assets = [a for a in self._assets.values() if status in (None, a.status)]
        return web.json_response([self._asset_json(a) for a in assets])

    async def _h_asset(self, request: web.Request) -> web.Response:
        wanted = request.match_info["symbol_or_id"]
        asset = self._find_asset(wanted)
        if asset is None:
            raise _ApiError(404, 40410000, f"asset not found for {wanted}")
        return web.json_response(self._asset_json(asset))

    async def _h_submit(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _ApiError(400, 40010000, "request body format is invalid")
        if not isinstance(data, dict):
            raise _ApiError(400, 40010000, "request body format is invalid")
        symbol = data.get("symbol")
        side = data.get("side")
        order_type = data.get("type", data.get("order_type"))
        tif = data.get("time_in_force")
        client_order_id = data.get("client_order_id") or str(uuid.uuid4())
        if not isinstance(symbol, str) or not symbol:
            raise _ApiError(422, 40010001, "symbol is required")
        if side not in ("buy", "sell"):
            raise _ApiError(422, 40010001, "invalid side")
        if order_type != "market":
            raise _ApiError(422, 40010001, f"fake Alpaca supports only market orders, not {order_type!r}")
        if tif != "day":
            raise _ApiError(422, 40010001, f"fake Alpaca supports only time_in_force day, not {tif!r}")
        if data.get("notional") is not None:
            raise _ApiError(422, 40010001, "fake Alpaca does not support notional orders")
        if not isinstance(client_order_id, str) or len(client_order_id) > 128:
            raise _ApiError(422, 40010001, "client_order_id must be no more than 128 characters")
        qty = _parse_qty(data.get("qty"))
        asset = self._find_asset(symbol)
        if asset is None or asset.symbol != symbol:
            raise _ApiError(422, 42210000, f"asset \"{symbol}\" not found")
        if asset.status != "active":
            raise _ApiError(422, 42210000, f"asset \"{symbol}\" is not active")
        if not asset.tradable:
            raise _ApiError(422, 42210000, f"asset \"{symbol}\" is not tradable")
        now = self.now()
        with self._lock:
            if self.trading_blocked:
                raise _ApiError(403, 40310000, "account is not allowed to trade")
            if client_order_id in self._orders_by_client:
                raise _ApiError(422, 40010001, "client_order_id must be unique")
            self._check_wash_trade(symbol, side)
            equity, _, _, buying_power = self._margin_figures()
            if self.pdt_fields and self.account_type == "margin" and equity < PDT_EQUITY_MINIMUM \
                    and self.daytrade_count >= 3 and self._would_day_trade(symbol, side):
                raise _ApiError(403, 40310100, PDT_MESSAGE)
            cash_hold, share_hold = self._holds()
            if side == "buy":
                cost = qty * self.price(symbol)
                if cost > buying_power:
                    raise _ApiError(403, 40310000, "insufficient buying power")
            else:
                held = self._positions.get(symbol, _Position()).qty
                available = held - share_hold.get(symbol, 0)
                if qty > available:
                    raise _ApiError(
                        403, 40310000,
                        f"insufficient qty available for order (requested: {qty}, available: {max(0, available)})",
                    )
            order = _Order(
                id=str(uuid.uuid4()), client_order_id=client_order_id, asset=asset, qty=qty,
                side=side, time_in_force=tif, created_at=now, updated_at=now,
                expires_at=self._session_close_after(now),
                plan=self.faults._take_plan(symbol), fmt=self._fmt,
            )
            self._orders[order.id] = order
            self._orders_by_client[client_order_id] = order
            body = order.to_json()
        self._spawn(self._lifecycle(order))
        return web.json_response(body)

    def _check_wash_trade(self, symbol: str, side: str) -> None:
        """Alpaca refuses an order while an opposite-side order of the symbol is open (lock held)."""
        if not self.wash_trade_check:
            return
        for other in self._orders.values():
            if other.asset.symbol == symbol and other.side != side and other.status not in FINAL_STATUSES:
                raise _ApiError(403, 40310000, WASH_TRADE_MESSAGE, {
                    "existing_order_id": other.id,
                    "reject_reason": "opposite side market/stop order exists",
                })

    def _get_order(self, order_id: str) -> _Order:
        with self._lock:
            order = self._orders.get(order_id.lower())
        if order is None:
            raise _ApiError(404, 40410000, "order not found")
        return order

    async def _h_order(self, request: web.Request) -> web.Response:
        order = self._get_order(request.match_info["order_id"])
        with self._lock:
            return web.json_response(order.to_json())

    async def _h_order_by_client_id(self, request: web.Request) -> web.Response:
        cid = request.query.get("client_order_id")
        if not cid:
            raise _ApiError(422, 40010001, "client_order_id is required")
        with self._lock:
            order = self._orders_by_client.get(cid)
            if order is None:
                raise _ApiError(404, 40410000, "order not found")
            return web.json_response(order.to_json())

    async def _h_orders(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise _ApiError(422, 40010001, f"invalid status {status}")
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise _ApiError(422, 40010001, "invalid limit")
        limit = max(1, min(limit, 500))
        direction = q.get("direction", "desc")
        symbols = set(filter(None, q.get("symbols", "").split(","))) or None
        side = q.get("side")
        after = _opt_time(q.get("after"), end=False)
        until = _opt_time(q.get("until"), end=True)
        with self._lock:
            chosen = []
            for order in self._orders.values():
                is_open = order.status not in FINAL_STATUSES
                if (status == "open" and not is_open) or (status == "closed" and is_open):
                    continue
                if symbols and order.asset.symbol not in symbols:
                    continue
                if side and order.side != side:
                    continue
                if after and order.created_at <= after:
                    continue
                if until and order.created_at > until:
                    continue
                chosen.append(order)
            chosen.sort(key=lambda o: o.created_at, reverse=(direction != "asc"))
            return web.json_response([o.to_json() for o in chosen[:limit]])

    async def _h_cancel(self, request: web.Request) -> web.Response:
        order = self._get_order(request.match_info["order_id"])
        with self._lock:
            if order.status in FINAL_STATUSES:
                raise _ApiError(422, 42210000, f"order is already in \"{order.status}\" state")
            delay = self.cancel_delay
            if delay:
                # Alpaca answers 204 at once; the order shows pending_cancel until the venue confirms.
                order.status, order.updated_at = "pending_cancel", self.now()
                self._spawn(self._finish_cancel(order, delay))
            else:
                self._end_order(order, "canceled")
        return web.Response(status=204)

    async def _h_cancel_all(self, request: web.Request) -> web.Response:
        out = []
        with self._lock:
            now = self.now()
            for order in self._orders.values():
                if order.status not in FINAL_STATUSES:
                    order.status, order.canceled_at, order.updated_at = "canceled", now, now
                    out.append({"id": order.id, "status": 200, "body": order.to_json()})
        return web.json_response(out, status=207)

    def _position_json(self, symbol: str, pos: _Position) -> dict[str, Any]:
        asset = self._assets.get(symbol) or AssetInfo(symbol)
        price = self.price(symbol)
        avg = pos.cost / pos.qty
        market_value = price * pos.qty
        pl = market_value - pos.cost
        plpc = (pl / pos.cost) if pos.cost else Decimal(0)
        _, share_hold = self._holds()
        return {
            "asset_id": asset.asset_id,
            "symbol": symbol,
            "exchange": asset.exchange,
            "asset_class": "us_equity",
            "asset_marginable": True,
            "qty": _qty_json(pos.qty, False),
            "avg_entry_price": _price_text(avg.quantize(Decimal("0.0001"))),
            "side": "long",
            "market_value": _money(market_value),
            "cost_basis": _money(pos.cost),
            "unrealized_pl": _money(pl),
            "unrealized_plpc": format(plpc.quantize(Decimal("0.0001")), "f"),
            "unrealized_intraday_pl": _money(pl),
            "unrealized_intraday_plpc": format(plpc.quantize(Decimal("0.0001")), "f"),
            "current_price": _price_text(price),
            "lastday_price": _price_text(price),
            "change_today": "0",
            "qty_available": _qty_json(pos.qty - share_hold.get(symbol, 0), False),
        }

    async def _h_positions(self, request: web.Request) -> web.Response:
        with self._lock:
            body = [self._position_json(s, p) for s, p in sorted(self._positions.items())]
        return web.json_response(body)

    async def _h_position(self, request: web.Request) -> web.Response:
        wanted = request.match_info["symbol"]
        with self._lock:
            asset = self._find_asset(wanted)
            symbol = asset.symbol if asset else wanted
            pos = self._positions.get(symbol)
            if pos is None:
                raise _ApiError(404, 40410000, "position does not exist")
            return web.json_response(self._position_json(symbol, pos))

    # ------------------------------------------------------------------ #
    # clock and calendar (real XNYS sessions)
    # ------------------------------------------------------------------ #

    def _calendar(self) -> Any:
        cal, self._opens, self._closes = _xnys()
        return cal

    def _session_close_after(self, now: datetime) -> Optional[datetime]:
        self._calendar()
        idx = bisect.bisect_right(self._closes, now)
        return self._closes[idx] if idx < len(self._closes) else None

    def _clock_time(self, now: datetime) -> str:
        """The clock's ``timestamp``: New York time with its offset (9 digits with time_digits=9)."""
        text = now.astimezone(ET).isoformat(timespec="microseconds")
        if self._fmt.digits == 9:
            text = text[:-6] + f"{(now.microsecond * 7 + now.second) % 1000:03d}" + text[-6:]
        return text

    async def _h_clock(self, request: web.Request) -> web.Response:
        now = self.now()
        self._calendar()
        current = bisect.bisect_right(self._opens, now) - 1
        is_open = current >= 0 and now < self._closes[current]
        next_open = self._opens[min(current + 1, len(self._opens) - 1)]
        next_close = self._session_close_after(now) or self._closes[-1]
        return web.json_response({
            "timestamp": self._clock_time(now),
            "is_open": is_open,
            "next_open": next_open.astimezone(ET).isoformat(),
            "next_close": next_close.astimezone(ET).isoformat(),
        })

    async def _h_calendar(self, request: web.Request) -> web.Response:
        cal = self._calendar()
        q = request.query
        try:
            start = date.fromisoformat(q["start"][:10]) if "start" in q else cal.first_session.date()
            end = date.fromisoformat(q["end"][:10]) if "end" in q else cal.last_session.date()
        except ValueError:
            raise _ApiError(400, 40010001, "invalid date format")
        schedule = cal.schedule.loc[str(start):str(end)]
        out = []
        for session, row in schedule.iterrows():
            open_et = row["open"].tz_convert(ET)
            close_et = row["close"].tz_convert(ET)
            settle = _settlement(cal, session)
            out.append({
                "date": session.strftime("%Y-%m-%d"),
                "open": open_et.strftime("%H:%M"),
                "close": close_et.strftime("%H:%M"),
                "session_open": "0400",
                "session_close": "2000",
                "settlement_date": settle,
            })
        return web.json_response(out)

    # ------------------------------------------------------------------ #
    # market data REST
    # ------------------------------------------------------------------ #

    async def _h_bars(self, request: web.Request) -> web.Response:
        raw = request.query.get("symbols", "")
        symbols = sorted({s for s in raw.split(",") if s})
        if not symbols:
            raise _ApiError(400, 40010001, "missing symbols")
        page, token = self._bars_page(request, symbols)
        return web.json_response({"bars": page, "next_page_token": token})

    async def _h_symbol_bars(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        page, token = self._bars_page(request, [symbol])
        return web.json_response(
            {"bars": page.get(symbol, []), "symbol": symbol, "next_page_token": token}
        )

    def _bars_page(self, request: web.Request, symbols: list[str]) -> tuple[dict[str, list], Optional[str]]:
        q = request.query
        step, daily = _parse_timeframe(q.get("timeframe"))
        now = self.now()
        try:
            start = _parse_time(q["start"], end=False) if "start" in q else (
                datetime.combine(now.astimezone(ET).date(), datetime.min.time(), ET).astimezone(timezone.utc)
            )
            end = _parse_time(q["end"], end=True) if "end" in q else now
        except ValueError as exc:
            raise _ApiError(400, 40010001, f"invalid start or end: {exc}")
        if start > end:
            raise _ApiError(400, 40010001, "end should not be before start")
        feed = q.get("feed", "sip")
        if feed not in ("iex", "sip", "delayed_sip", "otc", "boats", "overnight"):
            raise _ApiError(400, 40010001, f"invalid feed: {feed}")
        if self.free_plan and feed == "sip" and end > now - timedelta(minutes=15):
            raise _ApiError(403, 40310000, "subscription does not permit querying recent SIP data")
        try:
            limit = int(q.get("limit", "1000"))
        except ValueError:
            raise _ApiError(400, 40010001, "invalid limit")
        if not 1 <= limit <= 10000:
            raise _ApiError(400, 40010001, "invalid limit: must be between 1 and 10000")
        sort = q.get("sort", "asc")
        if sort not in ("asc", "desc"):
            raise _ApiError(400, 40010001, f"invalid sort: {sort}")
        resume: Optional[tuple[str, int]] = None
        if q.get("page_token"):
            resume = _decode_token(q["page_token"])
        s_epoch, e_epoch = int(start.timestamp()), int(end.timestamp())
        items: list[tuple[str, tuple]] = []
        with self._lock:
            for symbol in symbols:
                if resume and symbol < resume[0]:
                    continue
                times = self._bar_times.get(symbol, [])
                lo = bisect.bisect_left(times, s_epoch)
                hi = bisect.bisect_right(times, e_epoch)
                rows = [self._bar_rows[symbol][t] for t in times[lo:hi]]
                rows = _aggregate(rows, step, daily)
                if sort == "desc":
                    rows.reverse()
                if resume and symbol == resume[0]:
                    keys = [r[0] for r in rows]
                    if sort == "asc":
                        rows = rows[bisect.bisect_left(keys, resume[1]):]
                    else:
                        rows = [r for r in rows if r[0] <= resume[1]]
                for row in rows:
                    items.append((symbol, row))
                    if len(items) > limit:
                        break
                if len(items) > limit:
                    break
        token = None
        if len(items) > limit:
            nxt = items[limit]
            token = base64.b64encode(f"{nxt[0]}|{nxt[1][0]}".encode()).decode()
            items = items[:limit]
        page: dict[str, list] = {}
        for symbol, row in items:
            page.setdefault(symbol, []).append({
                "t": _bar_time(row[0]), "o": row[1], "h": row[2], "l": row[3],
                "c": row[4], "v": row[5], "n": row[6], "vw": row[7],
            })
        return page, token

    # ------------------------------------------------------------------ #
    # websocket stream
    # ------------------------------------------------------------------ #

    async def _h_stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        if not ws.can_prepare(request).ok:
            raise _ApiError(400, 40010001, "websocket upgrade required")
        await ws.prepare(request)
        feed = request.path.rsplit("/", 1)[-1]
        use_msgpack = "msgpack" in request.headers.get("Content-Type", "")
        conn = _WsConn(ws, request.transport, feed, use_msgpack)
        conn.muted = self.faults.silent_new_connections
        self._conns.append(conn)
        self._ws_connects_total += 1
        try:
            await conn.send([{"T": "success", "msg": "connected"}])
            async for frame in ws:
                if frame.type == WSMsgType.BINARY:
                    try:
                        msg = msgpack.unpackb(frame.data)
                    except Exception:
                        msg = None
                elif frame.type == WSMsgType.TEXT:
                    try:
                        msg = json.loads(frame.data)
                    except json.JSONDecodeError:
                        msg = None
                else:
                    break
                if not isinstance(msg, dict):
                    await conn.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
                    continue
                keep = await self._on_stream_message(conn, msg)
                if not keep:
                    await ws.close()
                    break
        finally:
            self._conns.remove(conn)
        return ws

    async def _on_stream_message(self, conn: _WsConn, msg: dict[str, Any]) -> bool:
        action = msg.get("action")
        if action == "auth":
            if conn.authenticated:
                await conn.send([{"T": "error", "code": 403, "msg": "already authenticated"}])
                return True
            if self.faults._consume_counter("ws_auth_timeouts"):
                await conn.send([{"T": "error", "code": 404, "msg": STREAM_ERRORS[404]}])
                return False
            if msg.get("key") != self._key or msg.get("secret") != self._secret \
                    or self.faults._consume_counter("ws_auth_failures"):
                await conn.send([{"T": "error", "code": 402, "msg": "auth failed"}])
                return False
            if conn.feed == "sip" and self.free_plan:
                await conn.send([{"T": "error", "code": 409, "msg": "insufficient subscription"}])
                return False
            active = sum(1 for c in self._conns if c.authenticated and not c.ws.closed)
            limit = self.ws_max_connections
            if self.faults._consume_counter("ws_connection_limit_failures") or (
                limit is not None and active >= limit
            ):
                await conn.send([{"T": "error", "code": 406, "msg": "connection limit exceeded"}])
                return False
            conn.authenticated = True
            await conn.send([{"T": "success", "msg": "authenticated"}])
            return True
        if action in ("subscribe", "unsubscribe"):
            if not conn.authenticated:
                await conn.send([{"T": "error", "code": 401, "msg": "not authenticated"}])
                return True
            wanted: dict[str, list] = {}
            for channel in STREAM_CHANNELS:
                symbols = msg.get(channel) or []
                if not isinstance(symbols, list):
                    await conn.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
                    return True
                wanted[channel] = symbols
            limit = self.ws_symbol_limit
            if action == "subscribe" and limit is not None:
                after = set().union(*conn.subs.values(), *(set(v) for v in wanted.values()))
                if len(after) > limit:
                    # The whole request is refused; earlier subscriptions stay as they were.
                    await conn.send([{"T": "error", "code": 405, "msg": STREAM_ERRORS[405]}])
                    return True
            for channel, symbols in wanted.items():
                if action == "subscribe":
                    conn.subs[channel].update(symbols)
                else:
                    conn.subs[channel].difference_update(symbols)
            await conn.send([conn.ack()])
            return True
        await conn.send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
        return True


# --------------------------------------------------------------------------- #
# parsing helpers
# --------------------------------------------------------------------------- #


def _parse_qty(value: Any) -> int:
    if value is None:
        raise _ApiError(422, 40010001, "qty is required")
    try:
        qty = Decimal(str(value))
    except InvalidOperation:
        raise _ApiError(422, 40010001, f"invalid qty {value!r}")
    if qty <= 0:
        raise _ApiError(422, 40010001, "qty must be > 0")
    if qty != qty.to_integral_value():
        raise _ApiError(422, 40010001, "fake Alpaca supports only whole-share qty")
    return int(qty)


def _opt_time(text: Optional[str], *, end: bool) -> Optional[datetime]:
    if not text:
        return None
    try:
        return _parse_time(text, end=end)
    except ValueError:
        raise _ApiError(422, 40010001, f"invalid timestamp {text!r}")


def _parse_timeframe(text: Optional[str]) -> tuple[int, bool]:
    """Return (bucket seconds, is_daily)."""
    match = _TIMEFRAME.match(text or "")
    if not match:
        raise _ApiError(400, 40010001, f"invalid timeframe: {text!r}")
    amount, unit = int(match.group(1)), match.group(2)
    if unit in ("Min", "T") and 1 <= amount <= 59:
        return amount * 60, False
    if unit in ("Hour", "H") and 1 <= amount <= 23:
        return amount * 3600, False
    if unit in ("Day", "D") and amount == 1:
        return 86400, True
    raise _ApiError(400, 40010001, f"fake Alpaca does not serve timeframe {text!r}")


def _aggregate(rows: list[tuple], step: int, daily: bool) -> list[tuple]:
    if step == 60 and not daily:
        return rows
    buckets: dict[int, list[tuple]] = {}
    for row in rows:
        if daily:
            day = datetime.fromtimestamp(row[0], ET).date()
            key = int(datetime.combine(day, datetime.min.time(), ET).timestamp())
        else:
            key = row[0] - row[0] % step
        buckets.setdefault(key, []).append(row)
    out = []
    for key in sorted(buckets):
        group = buckets[key]
        volume = sum(r[5] for r in group)
        vwap = sum(r[7] * r[5] for r in group) / volume if volume else group[-1][4]
        out.append((key, group[0][1], max(r[2] for r in group), min(r[3] for r in group),
                    group[-1][4], volume, sum(r[6] for r in group), round(vwap, 4)))
    return out


def _decode_token(token: str) -> tuple[str, int]:
    try:
        symbol, epoch = base64.b64decode(token, validate=True).decode().split("|")
        return symbol, int(epoch)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _ApiError(400, 40010001, "invalid page_token")


_XNYS_LOCK = threading.Lock()
_XNYS: Optional[tuple[Any, list[datetime], list[datetime]]] = None


def _xnys() -> tuple[Any, list[datetime], list[datetime]]:
    """The XNYS calendar plus sorted session opens/closes, built once per process."""
    global _XNYS
    with _XNYS_LOCK:
        if _XNYS is None:
            import warnings

            import exchange_calendars as xcals

            last = date.today().year + 2
            with warnings.catch_warnings():
                # pandas deprecation noise from inside exchange_calendars, not ours
                warnings.simplefilter("ignore")
                cal = xcals.get_calendar("XNYS", start="2000-01-01", end=f"{last}-12-31")
                opens = [t.to_pydatetime() for t in cal.schedule["open"]]
                closes = [t.to_pydatetime() for t in cal.schedule["close"]]
            _XNYS = (cal, opens, closes)
        return _XNYS


def _settlement(cal: Any, session: Any) -> str:
    """T+1 settlement (T+2 before 2024-05-28), counted in sessions."""
    days = 1 if session.date() >= date(2024, 5, 28) else 2
    try:
        return cal.session_offset(session, days).strftime("%Y-%m-%d")
    except Exception:
        return (session + timedelta(days=days)).strftime("%Y-%m-%d")


# --------------------------------------------------------------------------- #
# standalone
# --------------------------------------------------------------------------- #


def main(argv: Optional[list[str]] = None) -> int:
    """Serve the fake until interrupted; prints origin and stream URL first."""
    parser = argparse.ArgumentParser(description="Fake Alpaca server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default="test-key")
    parser.add_argument("--secret", default="test-secret")
    parser.add_argument("--cash", default="100000")
    parser.add_argument("--fill-delay", type=float, default=0.1)
    args = parser.parse_args(argv)
    stopped = threading.Event()
    # Handlers first: a parent may send SIGTERM as soon as it reads the origin.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    fake = FakeAlpaca(args.key, args.secret, cash=args.cash, fill_delay=args.fill_delay)
    fake.start(args.port)
    print(fake.origin, flush=True)
    print(fake.stream_url, flush=True)
    while not stopped.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
