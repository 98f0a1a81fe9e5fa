"""Per-symbol netting and the minute's concurrent order work, against the fake Alpaca through alpaca-py.

The fake refuses an order while an opposite-side order of the symbol is open (Alpaca's real
wash-trade 403, on by default). Cards trading one symbol on opposite sides in the same minute must
become one broker order, every card booked its own share, and the broker's position must stay
the sum of the cards'.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.alpaca.broker import AlpacaBroker
from app.engine.marketdata.clock import ManualClock
from app.engine.minute.journal import OrderJournal
from app.engine.minute.netting import CardOrder, NetPlan, allocate, plan_symbol, split
from app.engine.portfolio.money import card_figures
from app.engine.system.settings import Settings
from app.storage.system_store import SystemStore
from tests.fakes.alpaca_server import WASH_TRADE_MESSAGE, FakeAlpaca, wait_until

MINUTE = datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc)
CLOSE = Decimal("100")  # the last close the decisions saw


class Desk:
    """One account: a system.db with cards, the journal on the real AlpacaBroker, the fake behind it."""

    def __init__(self, fake: FakeAlpaca, root: Path) -> None:
        self.fake = fake
        self.clock = ManualClock(MINUTE + timedelta(seconds=2))
        fake.set_now(self.clock.now)
        fake.set_price("AAPL", "101")
        self.store = SystemStore(root / "system.db", now=self.clock.now)
        settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, trading_url=fake.origin)
        self.broker = AlpacaBroker.from_settings(settings, timeout_s=5, retry_wait_s=0.05)
        self.journal = OrderJournal(self.store, self.broker, self.clock.now)

    def card(self, holding: int = 0) -> int:
        """A $10,000 AAPL card holding ``holding`` shares (also held at the broker)."""
        card = self.store.create_instance("AAPL", "sma_crossover", 10_000.0)
        if holding:
            self.store.record_buy(card, holding, 90.0, timestamp="2024-06-03T15:00:00Z")
            self.fake.set_position("AAPL", self.fake.position_qty("AAPL") + holding, "90")
        return card

    def shares(self, card: int) -> int:
        inst = self.store.get_instance(card)
        return card_figures(inst.initial_capital, self.store.get_transactions(card), None).shares

    def trades(self, card: int) -> list[tuple[str, int, Decimal]]:
        return [(t.type, t.shares, Decimal(str(t.price))) for t in self.store.get_transactions(card, oldest_first=True)
                if t.timestamp >= "2024-06-04"]

    def place(self, *orders: tuple[int, str, int]) -> dict[int, str | None]:
        return self.journal.place_many([CardOrder(c, "AAPL", side, n) for c, side, n in orders], MINUTE,
                                       {"AAPL": CLOSE})

    def close(self) -> None:
        self.journal.close()
        self.store.close()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with FakeAlpaca(cash=100_000, fill_delay=0.05) as fake:
        d = Desk(fake, tmp_path)
        try:
            yield d
        finally:
            d.close()


# --- the rules (pure) ---------------------------------------------------------------------------

def test_orders_of_one_card_per_symbol_stay_plain_the_others_net_to_the_difference():
    plain, nets = split([CardOrder(1, "AAPL", "buy", 6), CardOrder(2, "MSFT", "sell", 3),
                         CardOrder(3, "AAPL", "sell", 4)])
    assert plain == [CardOrder(2, "MSFT", "sell", 3)]
    (net,) = nets
    assert (net.symbol, net.side, net.shares, net.crossed) == ("AAPL", "buy", 2, 4)
    zero = plan_symbol([CardOrder(1, "AAPL", "buy", 5), CardOrder(2, "AAPL", "sell", 3),
                        CardOrder(3, "AAPL", "sell", 2)])
    assert (zero.side, zero.shares, zero.crossed) == (None, 0, 5)
    assert allocate(zero, 0) == {1: 5, 2: 3, 3: 2}


def test_a_partial_fill_is_shared_pro_rata_on_the_net_side_and_the_crossed_side_gets_everything():
    plan = plan_symbol([CardOrder(1, "AAPL", "buy", 6), CardOrder(2, "AAPL", "sell", 2),
                        CardOrder(3, "AAPL", "buy", 4)])
    assert (plan.side, plan.shares, plan.crossed) == ("buy", 8, 2)
    assert allocate(plan, 8) == {1: 6, 2: 2, 3: 4}
    assert allocate(plan, 3) == {1: 3, 2: 2, 3: 2}  # 5 of 10 wanted: 3.0 and 2.0
    assert allocate(plan, 0) == {1: 1, 2: 2, 3: 1}  # 2 crossed: 1.2 and 0.8, the remainder to card 3
    tie = NetPlan("AAPL", (CardOrder(4, "AAPL", "buy", 1), CardOrder(9, "AAPL", "buy", 1)), "buy", 2, 0)
    assert allocate(tie, 1) == {4: 1, 9: 0}  # equal remainders: the lower card id
    with pytest.raises(ValueError):
        allocate(plan, 9)


# --- against the fake Alpaca ----------------------------------------------------------------------

def test_two_cards_on_opposite_sides_become_one_order_without_a_wash_trade_refusal(desk):
    buyer, seller = desk.card(), desk.card(holding=10)
    # The rule is on: the same two orders sent one by one while the first is open are refused.
    desk.fake.fill_delay = None
    client = desk.broker._client
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest
    client.submit_order(MarketOrderRequest(symbol="AAPL", qty=6, side=OrderSide.BUY,
                                           time_in_force=TimeInForce.DAY, client_order_id="probe-buy"))
    with pytest.raises(Exception, match="wash trade"):
        client.submit_order(MarketOrderRequest(symbol="AAPL", qty=4, side=OrderSide.SELL,
                                               time_in_force=TimeInForce.DAY, client_order_id="probe-sell"))
    client.cancel_orders()
    desk.fake.fill_delay = 0.05
    desk.fake.clear_log()

    problems = desk.place((buyer, "buy", 6), (seller, "sell", 4))
    assert problems == {buyer: None, seller: None}
    fills = desk.journal.settle(5.0)
    ours = [o for o in desk.fake.orders() if not o["client_order_id"].startswith("probe")]
    assert [(o["side"], o["qty"], o["status"]) for o in ours] == [("buy", "2", "filled")]
    assert desk.fake.count("/v2/orders", "POST") == 1
    price = Decimal(ours[0]["filled_avg_price"])
    assert sorted((f.instance_id, f.side, f.shares, f.price) for f in fills) == \
        [(buyer, "buy", 6, price), (seller, "sell", 4, price)]
    assert desk.trades(buyer) == [("buy", 6, price)] and desk.trades(seller) == [("sell", 4, price)]
    assert desk.fake.position_qty("AAPL") == 12 == desk.shares(buyer) + desk.shares(seller)
    # Each card's share is its own journal row under the broker order.
    parent = ours[0]["client_order_id"]
    assert desk.journal.ids.is_net(parent)
    shares = desk.store.net_shares(parent)
    assert [(o.algorithm_id, o.side, o.shares, o.status) for o in shares] == \
        [(buyer, "buy", 6, "filled"), (seller, "sell", 4, "filled")]
    assert desk.store.get_net_order(parent).status == "filled"
    assert desk.journal.settle(0) == [] and desk.store.open_orders() == []


def test_three_cards_that_cancel_out_send_nothing_and_are_booked_at_the_last_close(desk):
    a, b, c = desk.card(), desk.card(holding=3), desk.card(holding=2)
    assert desk.place((a, "buy", 5), (b, "sell", 3), (c, "sell", 2)) == {a: None, b: None, c: None}
    assert desk.fake.orders() == []
    fills = desk.journal.settle(0)
    assert sorted((f.instance_id, f.side, f.shares, f.price) for f in fills) == \
        [(a, "buy", 5, CLOSE), (b, "sell", 3, CLOSE), (c, "sell", 2, CLOSE)]
    assert desk.fake.position_qty("AAPL") == 5 == desk.shares(a) + desk.shares(b) + desk.shares(c)
    assert desk.store.open_orders() == [] and desk.store.open_net_orders() == []


def test_a_partial_fill_of_the_netted_order_is_shared_by_the_stated_rule(desk):
    a, b, c = desk.card(), desk.card(holding=2), desk.card()
    desk.fake.faults.partial_fill(3, final_after=0.05)
    desk.place((a, "buy", 6), (b, "sell", 2), (c, "buy", 4))
    desk.journal.settle(5.0)
    (order,) = desk.fake.orders()
    assert (order["side"], order["qty"], order["filled_qty"], order["status"]) == ("buy", "8", "3", "canceled")
    price = Decimal(order["filled_avg_price"])
    assert desk.trades(a) == [("buy", 3, price)]
    assert desk.trades(b) == [("sell", 2, price)]
    assert desk.trades(c) == [("buy", 2, price)]
    assert desk.fake.position_qty("AAPL") == 2 + 3 == desk.shares(a) + desk.shares(b) + desk.shares(c)
    notes = dict(desk.journal.drain_unfilled())
    assert set(notes) == {a, c} and "3 of this card's 6 shares booked" in notes[a]


def test_a_wash_trade_refusal_from_an_order_placed_by_hand_is_shown_and_faults_nothing(desk):
    a, b, lone = desk.card(), desk.card(holding=4), desk.card()
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest
    desk.fake.fill_delay = None  # the hand-placed sell stays open
    desk.fake.set_position("AAPL", desk.fake.position_qty("AAPL") + 5, "90")
    desk.broker._client.submit_order(MarketOrderRequest(symbol="AAPL", qty=5, side=OrderSide.SELL,
                                                        time_in_force=TimeInForce.DAY, client_order_id="by-hand"))
    problems = desk.place((a, "buy", 6), (b, "sell", 4))
    assert problems[b] is None  # crossed: booked whatever the broker says
    assert WASH_TRADE_MESSAGE in problems[a] and "rejected" in problems[a]
    fills = desk.journal.settle(0)
    # The 4 crossed shares are booked at the last close; the 2 the broker refused are not.
    assert sorted((f.instance_id, f.side, f.shares, f.price) for f in fills) == \
        [(a, "buy", 4, CLOSE), (b, "sell", 4, CLOSE)]
    assert desk.store.open_orders() == []
    _, problem = desk.journal.place(lone, "AAPL", "buy", 1, MINUTE)
    assert WASH_TRADE_MESSAGE in problem
    assert desk.store.get_order(desk.journal.client_order_id(lone, MINUTE, "buy")).status == "rejected"
    assert all(i.faulted_reason is None for i in desk.store.all_instances())


def test_all_open_orders_are_settled_with_one_bounded_wait_and_stale_ones_canceled(desk):
    cards = [desk.card() for _ in range(12)]
    symbols = [f"Q{chr(65 + i)}A" for i in range(12)]
    for symbol in symbols:
        desk.fake.add_asset(symbol)
        desk.fake.set_price(symbol, "10")
    desk.fake.faults.status_path("new", final_status=None, times=12)  # Alpaca keeps them open
    problems = desk.journal.place_many([CardOrder(c, s, "buy", 1) for c, s in zip(cards, symbols)], MINUTE)
    assert not any(problems.values())
    desk.fake.clear_log()
    assert desk.journal.settle(0.6) == []
    # More open orders than requests in flight: each poll is one listing, not twelve look-ups.
    polls = desk.fake.count("/v2/orders", "GET")
    assert 1 <= polls <= 6 and desk.fake.count("/v2/orders:by_client_order_id") == 0
    assert len(desk.store.open_orders()) == 12
    desk.clock.advance(timedelta(minutes=5))
    desk.journal.settle(0)
    assert desk.store.open_orders() == []
    assert all(o["status"] == "canceled" for o in desk.fake.orders())
    notes = dict(desk.journal.drain_unfilled())
    assert set(notes) == set(cards)
    assert "still open at the broker after 5 minutes" in notes[cards[0]]
    assert wait_until(lambda: True, 0.1)


def test_a_minutes_orders_are_sent_side_by_side_at_most_the_brokers_concurrency_at_a_time(desk):
    import threading
    import time

    from app.engine.alpaca.broker import CONCURRENCY

    cards = [desk.card() for _ in range(CONCURRENCY + 4)]
    symbols = [f"Q{chr(65 + i)}B" for i in range(len(cards))]
    for symbol in symbols:
        desk.fake.add_asset(symbol)
        desk.fake.set_price(symbol, "10")
    # A roomy HTTP timeout: the held POSTs must outlast a slow machine's thread start-up.
    settings = Settings(api_key=desk.fake.key, secret=desk.fake.secret, paper=True, trading_url=desk.fake.origin)
    journal = OrderJournal(desk.store, AlpacaBroker.from_settings(settings, timeout_s=60, retry_wait_s=0.05),
                           desk.clock.now)
    released = desk.fake.faults.hang("/v2/orders", method="POST", times=None)
    seen: dict[str, int] = {}

    def watch() -> None:
        # The journal's SQLite belongs to this test's thread: it sends, this thread looks and releases.
        try:
            wait_until(lambda: desk.fake.faults.stalled() == CONCURRENCY, timeout=30)
            seen["held"], seen["answered"] = desk.fake.faults.stalled(), desk.fake.count("/v2/orders", "POST")
            time.sleep(0.3)  # a broken bound would let the other 4 in meanwhile
            seen["held later"] = desk.fake.faults.stalled()
        finally:
            released.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        problems = journal.place_many([CardOrder(c, s, "buy", 1) for c, s in zip(cards, symbols)], MINUTE)
        watcher.join(60)
        # The sends overlapped: the fake held CONCURRENCY of them at once, none answered yet, never more.
        assert seen == {"held": CONCURRENCY, "answered": 0, "held later": CONCURRENCY}
        assert problems == {c: None for c in cards}
        assert desk.fake.count("/v2/orders", "POST") == len(cards)
        assert len(journal.settle(5.0)) == len(cards) and desk.store.open_orders() == []
    finally:
        released.set()
        watcher.join(60)
        journal.close()


def test_stopping_a_card_cancels_its_netted_order_and_books_every_card_once(desk):
    a, b = desk.card(), desk.card(holding=2)
    desk.fake.faults.status_path("new", final_status=None)  # the netted buy stays open
    desk.place((a, "buy", 6), (b, "sell", 2))
    assert desk.journal.settle(0.3) == []
    share = desk.journal.client_order_id(a, MINUTE, "buy")
    after = desk.journal.cancel(share, 2.0)
    (order,) = desk.fake.orders()
    assert order["status"] == "canceled"
    # Nothing reached the broker; the 2 crossed shares are booked to both cards at the last close.
    assert (after.status, after.filled_qty) == ("partial", 2)
    assert desk.trades(a) == [("buy", 2, CLOSE)] and desk.trades(b) == [("sell", 2, CLOSE)]
    assert desk.store.open_orders() == []
    assert desk.fake.position_qty("AAPL") == 2 == desk.shares(a) + desk.shares(b)
    assert desk.journal.cancel(share, 2.0) == after  # closed already: nothing changes


def test_the_trading_minute_nets_cards_on_alpaca_and_shows_a_refusal_without_faulting(tmp_path):
    """The whole path: cycle, risk guard, netting, alpaca-py against the fake (wash-trade rule on)."""
    from datetime import date

    from app.engine.host.service import EngineService
    from app.engine.host.wiring import EngineOptions, EngineParts
    from app.engine.marketdata.calendar import MarketCalendar
    from app.engine.sim.market import SimMarket
    from app.storage.market_store import MarketStore
    from tests.engine.crash_child import write_algorithm
    from tests.engine.test_crash_safety import SEESAW_SOURCE

    algos = write_algorithm(tmp_path / "algos", "seesaw", SEESAW_SOURCE)
    cal = MarketCalendar()
    scratch = MarketStore(tmp_path / "scratch.db")
    sim = SimMarket(cal, scratch, seed=5)
    days = [*cal.sessions_between(date(2024, 5, 27), date(2024, 6, 3)), date(2024, 6, 4)]
    bars = [b for d in days for b in sim.session_bars("AAPL", d)]
    scratch.close()
    clock = ManualClock(MINUTE + timedelta(seconds=2))
    with FakeAlpaca(cash=50_000, fill_delay=0.05) as fake:
        fake.add_bars("AAPL", [tuple(b) for b in bars])
        fake.set_now(clock.now)
        settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, data_root=tmp_path / "data",
                            trading_url=fake.origin, data_url=fake.origin, stream_url=fake.stream_url,
                            algorithm_dirs=(algos,))
        broker = AlpacaBroker.from_settings(settings, timeout_s=5, retry_wait_s=0.05)
        parts = EngineParts.build(settings, clock=clock, broker=broker, options=EngineOptions(fill_wait_s=2.0))
        try:
            service = EngineService(parts)
            one = service.create_instance("AAPL", "seesaw", "5000", {"shares": "5"})
            two = service.create_instance("AAPL", "seesaw", "5000", {"shares": "3"})

            def step(minute: datetime):
                clock.set(minute + timedelta(seconds=2))
                parts.feed.set_symbols(["AAPL"])
                parts.feed.poll(clock.now())
                fake.set_price("AAPL", str(parts.market.latest_bar("AAPL").close))
                return parts.cycle.run_minute(minute)

            minutes = [MINUTE + timedelta(minutes=i) for i in range(1, 6)]
            results = [step(m) for m in minutes]
            assert all(r.faults == [] and r.refused == [] for r in results), [r.outcomes for r in results]
            # After the first minute one card buys while the other sells, every minute: one broker order.
            assert sum(1 for r in results for o in r.outcomes if o.action in ("buy", "sell")) == 9
            ours = fake.orders()
            assert len(ours) == 5 and all(o["status"] == "filled" for o in ours)
            assert sum(parts.journal.ids.is_net(o["client_order_id"]) for o in ours) == 4
            holdings = parts.cycle.holdings(parts.system.all_instances())
            assert fake.position_qty("AAPL") == holdings[one].shares + holdings[two].shares
            # Each card sees only its own fills.
            for card in (one, two):
                assert {t.algorithm_id for t in holdings[card].transactions} == {card}
                assert len(holdings[card].transactions) in (4, 5)

            # An order typed in by hand stays open on the side the next netted order needs.
            from alpaca.trading.enums import OrderSide, TimeInForce
            from alpaca.trading.requests import MarketOrderRequest
            fake.fill_delay = None
            nxt = MINUTE + timedelta(minutes=6)
            # Card one (5 shares) is always on the net side: it sells next if it holds, else it buys.
            net_side_buys = holdings[one].shares == 0
            fake.set_position("AAPL", fake.position_qty("AAPL") + 10, "90")
            broker._client.submit_order(MarketOrderRequest(
                symbol="AAPL", qty=1, side=OrderSide.SELL if net_side_buys else OrderSide.BUY,
                time_in_force=TimeInForce.DAY, client_order_id="typed-in-by-hand"))
            refused = step(nxt)
            assert refused.faults == []
            (problem,) = refused.refused
            assert problem.instance_id == one and problem.reason.startswith("broker rejected the netted order")
            assert WASH_TRADE_MESSAGE in problem.reason
            assert WASH_TRADE_MESSAGE in parts.cycle.refused[problem.instance_id]  # shown on its card
            assert all(i.faulted_reason is None for i in parts.system.all_instances())
            assert parts.system.open_orders() == []
        finally:
            parts.close()


def test_no_order_is_sent_against_an_opposite_one_of_ours_still_open(desk):
    a, b = desk.card(), desk.card(holding=5)
    desk.fake.fill_delay = None  # a's buy stays open at the broker
    assert desk.place((a, "buy", 3)) == {a: None}
    later = MINUTE + timedelta(minutes=1)
    problems = desk.journal.place_many([CardOrder(b, "AAPL", "sell", 5)], later, {"AAPL": CLOSE})
    assert "still open at the broker" in problems[b] and "wash trade" in problems[b]
    assert len(desk.fake.orders()) == 1  # Alpaca was never asked, so it never refused
    assert desk.store.get_order(desk.journal.client_order_id(b, later, "sell")) is None  # free to decide again


def test_a_day_trade_refusal_that_comes_back_is_shown_with_alpacas_reason(tmp_path):
    from tests.fakes.alpaca_server import PDT_MESSAGE

    with FakeAlpaca(cash=10_000, fill_delay=0.05, pdt_fields=True) as fake:
        desk = Desk(fake, tmp_path)
        try:
            a = desk.card()
            desk.fake.set_price("AAPL", "100")
            assert desk.journal.place(a, "AAPL", "buy", 2, MINUTE)[1] is None
            assert len(desk.journal.settle(2.0)) == 1
            fake.set_daytrade_count(3)  # a 4th day trade on equity under $25k
            _, problem = desk.journal.place(a, "AAPL", "sell", 2, MINUTE + timedelta(minutes=1))
            assert PDT_MESSAGE in problem and problem.startswith("broker rejected the order")
            row = desk.store.get_order(desk.journal.client_order_id(a, MINUTE + timedelta(minutes=1), "sell"))
            assert row.status == "rejected" and PDT_MESSAGE in row.error
            assert desk.shares(a) == 2 and desk.store.get_instance(a).faulted_reason is None
        finally:
            desk.close()
