"""The Broker protocol on Alpaca (paper or live) through alpaca-py's TradingClient.

Every call is bounded by the client's HTTP timeout. An order is sent at most once by us: when
the answer is lost (timeout, 5xx, connection error) or Alpaca says the client_order_id is already
used (its own 504 retry re-POSTs an order it had accepted), the order is looked up by
client_order_id instead of being sent again.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from app.engine.alpaca.clients import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    ApiFailure,
    classify_error,
    client_secrets,
    make_trading_client,
)
from app.engine.brokers.protocol import (
    AccountRules,
    BrokerError,
    BrokerUnavailable,
    InsufficientFunds,
    InvalidSymbol,
    MarketClosed,
    NotFound,
    OrderRejected,
    OrderState,
    check_order_args,
    check_symbol_format,
)
from app.engine.system.settings import Settings

log = logging.getLogger("autotrader.engine.alpaca_broker")

POLL_INTERVAL_S = 0.25
# Requests of one minute's orders in flight at once (REST calls are blocking; the HTTP pool holds 10).
CONCURRENCY = 8
PAGE_LIMIT = 500  # the most orders Alpaca returns per GET /v2/orders
# Alpaca's `after` is exclusive and its times have up to nanoseconds while alpaca-py sends
# microseconds: each page starts this much before the newest time of the last one (seen ids skipped).
_PAGE_OVERLAP = timedelta(microseconds=1)
_CANCEL_SETTLE_S = 1.0
_ENDED = frozenset({"canceled", "expired", "replaced", "done_for_day"})


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        # Python 3.11 reads 'Z' and truncates Alpaca's nanoseconds.
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _whole(text: Any) -> int:
    try:
        return int(Decimal(str(text or "0")))
    except InvalidOperation:
        return 0


def _decimal(value: Any) -> Decimal | None:
    """A money or ratio field (JSON string or number) as a Decimal; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def order_state(raw: dict[str, Any]) -> OrderState:
    """Alpaca order JSON -> OrderState (partially_filled is not final; a partial that ended is)."""
    status = str(raw.get("status") or "")
    qty = _whole(raw.get("qty"))
    filled = _whole(raw.get("filled_qty"))
    avg_text = raw.get("filled_avg_price")
    avg = None
    if filled > 0 and avg_text not in (None, ""):
        try:
            avg = Decimal(str(avg_text))
        except InvalidOperation:
            avg = None
    reason = None
    if status == "filled":
        ours = "filled"
    elif status in _ENDED and filled > 0:
        ours = "partial"
        reason = f"{status} after {filled} of {qty} shares filled"
    elif status in ("canceled", "expired", "replaced"):
        ours = "canceled"
        reason = f"Alpaca reports the order {status}"
    elif status == "rejected":
        ours = "rejected"
        reason = "Alpaca rejected the order"
    else:  # new, accepted, pending_new, partially_filled, done_for_day with nothing filled, ...
        ours = "submitted"
    filled_at = None
    if filled > 0:
        # filled_at stays null while an order is only partly filled: use its last update instead.
        filled_at = _parse_time(raw.get("filled_at")) or _parse_time(raw.get("updated_at"))
    return OrderState(
        client_order_id=str(raw.get("client_order_id") or ""),
        broker_order_id=str(raw["id"]) if raw.get("id") else None,
        symbol=str(raw.get("symbol") or ""),
        side=str(raw.get("side") or ""),
        qty=qty,
        status=ours,
        filled_qty=filled,
        filled_avg_price=avg,
        filled_at=filled_at,
        reason=reason,
        submitted_at=_parse_time(raw.get("submitted_at")) or _parse_time(raw.get("created_at")),
    )


class AlpacaBroker:
    """Broker on Alpaca: ``name`` is 'alpaca-paper' or 'alpaca-live'. One instance per thread.

    ``client`` is an alpaca-py TradingClient built with ``raw_data=True`` (see
    :func:`app.engine.alpaca.clients.make_trading_client`).
    """

    def __init__(self, client: Any, *, paper: bool) -> None:
        if not getattr(client, "_use_raw_data", False):
            raise ValueError("AlpacaBroker needs a TradingClient made with raw_data=True")
        self._client = client
        self._secrets = client_secrets(client)
        self.name = "alpaca-paper" if paper else "alpaca-live"
        self.concurrency = CONCURRENCY  # its calls may overlap: each is one HTTP request on a thread-safe pool

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                      retry_wait_s: float = 3.0, retries: int = DEFAULT_RETRIES) -> AlpacaBroker:
        """Build the TradingClient from settings and log which account it trades (never the keys)."""
        client = make_trading_client(settings, timeout_s=timeout_s, retries=retries, retry_wait_s=retry_wait_s)
        log.info("Alpaca %s trading, market data feed %s%s", "PAPER" if settings.paper else "LIVE",
                 settings.feed.upper(), f", trading URL {settings.trading_url}" if settings.trading_url else "")
        return cls(client, paper=settings.paper)

    def __repr__(self) -> str:
        return f"AlpacaBroker(name={self.name!r})"

    # -- errors ----------------------------------------------------------------------------

    def _failure(self, exc: BaseException) -> ApiFailure:
        failure = classify_error(exc, self._secrets)
        if failure is None:
            raise exc
        return failure

    def _error(self, failure: ApiFailure, doing: str) -> BrokerError:
        """The typed error for a failure that is not handled specially."""
        text = f"{doing}: {failure.message}"
        if failure.transient:
            return BrokerUnavailable(text)
        if failure.status == 401:
            return BrokerError(f"{doing}: Alpaca refused the API key (check ALPACA_API_KEY/ALPACA_SECRET "
                               "and ALPACA_PAPER)")
        if failure.status == 404:
            return NotFound(text)
        return BrokerError(text)

    def _call(self, doing: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - classified below; anything else re-raised
            failure = self._failure(exc)
        raise self._error(failure, doing) from None

    # -- account ---------------------------------------------------------------------------

    def account_cash(self) -> Decimal:
        """The account's cash (``account.cash``), never margin buying power."""
        account = self._call("cannot read the Alpaca account", self._client.get_account)
        try:
            return Decimal(str(account["cash"]))
        except (KeyError, TypeError, InvalidOperation):
            raise BrokerError("Alpaca's account answer has no readable cash balance") from None

    def account_rules(self) -> AccountRules:
        """Margin or cash (``multiplier``), equity, and the day-trade fields when Alpaca sends them."""
        account = self._call("cannot read the Alpaca account", self._client.get_account)
        multiplier = _decimal(account.get("multiplier"))
        count = account.get("daytrade_count")
        flag = account.get("pattern_day_trader")
        return AccountRules(
            margin=multiplier is not None and multiplier > 1,
            equity=_decimal(account.get("equity")),
            pattern_day_trader=flag if isinstance(flag, bool) else None,
            daytrade_count=_whole(count) if count is not None else None,
        )

    def validate_symbol(self, symbol: str) -> str:
        """The symbol if Alpaca lists it as an active, tradable US stock; else InvalidSymbol."""
        check_symbol_format(symbol)  # first: alpaca-py puts the symbol in the URL path unescaped
        try:
            asset = self._client.get_asset(symbol)
        except Exception as exc:  # noqa: BLE001
            failure = self._failure(exc)
            if failure.status in (404, 422):
                raise InvalidSymbol(f"{symbol} is not a tradable US stock at Alpaca") from None
            raise self._error(failure, f"cannot check {symbol} at Alpaca") from None
        if asset.get("symbol") != symbol or asset.get("class", "us_equity") != "us_equity":
            raise InvalidSymbol(f"{symbol} is not a tradable US stock at Alpaca")
        if asset.get("status") != "active":
            raise InvalidSymbol(f"{symbol} is not a tradable US stock at Alpaca (the listing is inactive)")
        if not asset.get("tradable"):
            raise InvalidSymbol(f"{symbol} is not a tradable US stock at Alpaca (Alpaca does not trade it)")
        return symbol

    def position(self, symbol: str) -> int:
        """Whole shares held in ``symbol`` (0 when Alpaca has no position)."""
        check_symbol_format(symbol)
        try:
            raw = self._client.get_open_position(symbol)
        except Exception as exc:  # noqa: BLE001
            failure = self._failure(exc)
            if failure.status == 404:
                return 0
            raise self._error(failure, f"cannot read the {symbol} position") from None
        return _whole(raw.get("qty"))

    def positions(self) -> dict[str, int]:
        """Whole shares held, by symbol (Alpaca lists only open positions)."""
        raw = self._call("cannot read the Alpaca positions", self._client.get_all_positions)
        held = {str(p.get("symbol")): _whole(p.get("qty")) for p in raw or ()}
        return {symbol: qty for symbol, qty in held.items() if qty}

    # -- orders ----------------------------------------------------------------------------

    def orders_since(self, after: datetime, *, page_limit: int = PAGE_LIMIT) -> list[OrderState]:
        """Every order submitted at or after ``after`` (all statuses), oldest first, over as many pages as it takes.

        Pages go forward in time (``direction=asc``), each from just before the newest submission
        time of the previous one, so orders sharing a timestamp across a page boundary are neither
        skipped nor repeated. Raises BrokerError if a whole page shares one instant (no progress).
        """
        from alpaca.common.enums import Sort
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        if after.tzinfo is None:
            raise ValueError("orders_since needs an aware datetime")
        cursor = after.astimezone(timezone.utc) - _PAGE_OVERLAP
        seen: set[str] = set()
        found: list[OrderState] = []
        while True:
            request = GetOrdersRequest(status=QueryOrderStatus.ALL, after=cursor, limit=page_limit,
                                       direction=Sort.ASC)
            page = self._call("cannot list the Alpaca orders", self._client.get_orders, request) or []
            newest = cursor
            for raw in page:
                state = order_state(raw)
                stamp = state.submitted_at
                if stamp is not None and stamp > newest:
                    newest = stamp
                key = state.broker_order_id or state.client_order_id
                if key in seen:
                    continue
                seen.add(key)
                found.append(state)
            if len(page) < page_limit:
                return found
            following = newest - _PAGE_OVERLAP
            if following <= cursor:
                raise BrokerError(f"cannot list the Alpaca orders: more than {page_limit} orders share "
                                  f"the submission time {newest.isoformat()}")
            cursor = following


    def get_order(self, client_order_id: str) -> OrderState | None:
        """The order with this client id, or None if Alpaca never received it."""
        try:
            raw = self._client.get_order_by_client_id(client_order_id)
        except Exception as exc:  # noqa: BLE001
            failure = self._failure(exc)
            if failure.status == 404:
                return None
            raise self._error(failure, f"cannot look up order {client_order_id}") from None
        return order_state(raw)

    def submit_market_order(self, client_order_id: str, symbol: str, side: str, qty: int) -> OrderState:
        """Send one whole-share ``day`` market order; an unclear answer is resolved by client id.

        Raises OrderRejected/InsufficientFunds/MarketClosed when Alpaca refuses, BrokerUnavailable
        when it cannot be known whether Alpaca has the order (ask :meth:`get_order` later).
        """
        from alpaca.trading.enums import OrderSide, TimeInForce
        from alpaca.trading.requests import MarketOrderRequest

        check_order_args(client_order_id, symbol, side, qty)
        request = MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide(side),
                                     time_in_force=TimeInForce.DAY, client_order_id=client_order_id)
        try:
            return order_state(self._client.submit_order(request))
        except Exception as exc:  # noqa: BLE001
            failure = self._failure(exc)
        what = f"{side} {qty} {symbol} ({client_order_id})"
        if failure.transient or failure.duplicate_client_id:
            # The order may exist (accepted before the answer was lost, or an SDK 504 retry hit
            # our own first POST): ask, never send again.
            try:
                state = self.get_order(client_order_id)
            except BrokerUnavailable as exc:
                raise BrokerUnavailable(f"order {what} not confirmed ({failure.message}) and the check "
                                        f"by client id failed too: {exc}") from None
            if state is not None:
                log.info("order %s confirmed by client id after: %s", client_order_id, failure.message)
                return state
            if failure.duplicate_client_id:
                raise OrderRejected(f"order {what}: Alpaca says the client order id was used already") from None
            raise BrokerUnavailable(f"order {what} not confirmed: {failure.message}") from None
        raise self._refusal(failure, what) from None

    def _refusal(self, failure: ApiFailure, what: str) -> BrokerError:
        text = failure.message
        lower = text.lower()
        if failure.status == 403 and "insufficient" in lower:
            return InsufficientFunds(f"Alpaca refused {what}: {text}")
        if "market" in lower and ("closed" in lower or "hours" in lower):
            return MarketClosed(f"Alpaca refused {what}: {text}")
        if failure.status in (400, 403, 404, 422):
            return OrderRejected(f"Alpaca refused {what}: {text}")
        return self._error(failure, f"order {what} failed")

    def wait_for_final(self, client_order_id: str, timeout_s: float) -> OrderState:
        """Poll every ~0.25 s until final or ``timeout_s``; returns the last state seen.

        NotFound if Alpaca does not know the order; BrokerUnavailable if it never answered.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        last: OrderState | None = None
        problem: BrokerUnavailable | None = None
        while True:
            try:
                state = self.get_order(client_order_id)
                if state is None:
                    raise NotFound(f"Alpaca has no order with client id {client_order_id}")
                last, problem = state, None
            except BrokerUnavailable as exc:
                problem = exc  # keep polling: the next answer may come back
            remaining = deadline - time.monotonic()
            if (last is not None and last.is_final) or remaining <= 0:
                if last is not None:
                    return last
                raise problem or BrokerUnavailable(f"no answer about order {client_order_id}")
            time.sleep(min(POLL_INTERVAL_S, remaining))

    def cancel(self, client_order_id: str) -> OrderState | None:
        """Cancel the order if it is still open; returns its resulting state (None if unknown)."""
        state = self.get_order(client_order_id)
        if state is None or state.is_final or not state.broker_order_id:
            return state
        try:
            self._client.cancel_order_by_id(state.broker_order_id)
        except Exception as exc:  # noqa: BLE001
            failure = self._failure(exc)
            if failure.status not in (404, 422):  # 422: it filled or ended meanwhile
                raise self._error(failure, f"cannot cancel order {client_order_id}") from None
        try:
            return self.wait_for_final(client_order_id, _CANCEL_SETTLE_S)
        except NotFound:
            return None
