"""Which engine events become alerts off the wall: a card's fault, trading stopped (a full disk),
HALT, the live feed down for too long, a daily loss limit reached, and (optionally) each fill.

:class:`AlertWatch` sees what the publisher sends (cards, account, notices) and the stream states
the engine thread records; it decides and hands :class:`~app.engine.system.notify.Alert` values to
the notifier, which sends them on its own thread. It never raises into the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal

from app.engine.events import AccountSummary, CardSnapshot, Notice, StreamStatus
from app.engine.portfolio.money import format_money
from app.engine.system.maintenance import STOPPED_PREFIX
from app.engine.system.notify import Alert, Notifier

log = logging.getLogger("autotrader.engine.alerts")

_DOWN = ("connecting", "reconnecting", "failed")


class AlertWatch:
    """Turns engine state into alerts. ``now`` is the wall's real time (feed outages are real)."""

    def __init__(self, notifier: Notifier, *, mode: str, feed_down_min: int = 10, fills: bool = False,
                 card_loss_limit: Decimal | None = None, account_loss_limit: Decimal | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.notifier = notifier
        self._mode = mode.upper()
        self._feed_down_s = feed_down_min * 60
        self._fills = fills
        self._card_limit = card_loss_limit
        self._account_limit = account_loss_limit
        self._now = now
        self._halted: bool | None = None
        self._trades: dict[int, int] = {}
        self._loss_alerted: set[tuple[str, date]] = set()
        self._feed_down_since: datetime | None = None
        self._feed_reason: str | None = None
        self._feed_alerted = False

    def _send(self, key: str, title: str, body: str) -> None:
        try:
            self.notifier.send(Alert(key, f"AutoTrader {self._mode}: {title}", body))
        except Exception:  # noqa: BLE001 - alerts are a courtesy; trading goes on
            log.exception("could not queue an alert")

    # -- what the publisher sends --------------------------------------------------------------

    def on_notice(self, notice: Notice) -> None:
        """A card faulted, or trading stopped because nothing can be recorded (a full disk)."""
        if notice.kind == "fault":
            self._send(f"fault:{notice.instance_id}", f"card #{notice.instance_id} faulted", notice.message)
        elif notice.kind == "error" and notice.message.startswith(STOPPED_PREFIX):
            self._send("stopped", "trading stopped", notice.message)

    def on_account(self, account: AccountSummary) -> None:
        """HALT (its switch turning on), and the account's daily loss limit."""
        if account.halted and self._halted is False:
            self._send("halt", "trading halted", "HALT was tapped on the wall: no orders are sent until RESUME.")
        self._halted = account.halted
        limit = self._account_limit
        if limit is not None and account.day_pnl is not None and account.day_pnl <= -limit:
            key = ("account", self._now().date())
            if key not in self._loss_alerted:
                self._loss_alerted.add(key)
                self._send("loss:account", "daily loss limit reached",
                           f"The cards together are {format_money(account.day_pnl, signed=True)} today "
                           f"(limit {format_money(-limit)}).")

    def on_cards(self, cards: tuple[CardSnapshot, ...]) -> None:
        """A card's daily loss limit; each new fill when fills are wanted."""
        today = self._now().date()
        for card in cards:
            limit = self._card_limit
            if limit is not None and card.day_pnl is not None and card.day_pnl <= -limit:
                key = (f"card:{card.instance_id}", today)
                if key not in self._loss_alerted:
                    self._loss_alerted.add(key)
                    self._send(f"loss:{card.instance_id}", f"{card.title}: daily loss limit reached",
                               f"Card #{card.instance_id} is {format_money(card.day_pnl, signed=True)} today "
                               f"(limit {format_money(-limit)}).")
            seen = self._trades.get(card.instance_id)
            self._trades[card.instance_id] = card.trade_count
            if self._fills and seen is not None and card.trade_count > seen and card.last_action:
                self._send(f"fill:{card.instance_id}:{card.trade_count}", f"{card.title}: {card.last_action}",
                           f"Card #{card.instance_id} now holds {card.shares:,} shares.")

    # -- the live feed ---------------------------------------------------------------------------

    def on_stream(self, status: StreamStatus) -> None:
        """Remember since when the live feed is down (and say when it is back after an alert)."""
        now = self._now()
        if status.simulated or status.state not in _DOWN:
            if self._feed_alerted and status.state == "live":
                self._send("feed-back", "live feed back", "The live price feed is connected again.")
            self._feed_down_since, self._feed_alerted = None, False
            return
        if self._feed_down_since is None:
            self._feed_down_since = now
        self._feed_reason = status.reason
        self.check_feed()

    def check_feed(self) -> None:
        """Alert once when the feed has been down longer than the limit (called every minute too)."""
        since = self._feed_down_since
        if since is None or self._feed_alerted:
            return
        down_s = (self._now() - since).total_seconds()
        if down_s >= self._feed_down_s:
            self._feed_alerted = True
            reason = f": {self._feed_reason}" if self._feed_reason else ""
            self._send("feed", "live feed down",
                       f"No live prices for {round(down_s / 60)} min{reason}. Cards trade on what arrives.")
