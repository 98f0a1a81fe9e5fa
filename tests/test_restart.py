"""Power cuts: SIGKILL the whole app process at random instants, restart it, and audit what it kept.

Sim part (20 kills): ``python -m app run --sim --headless --speed 600`` with cards that trade every
few minutes, so there are nearly always orders in flight (a sim order fills at the next bar). After
every kill: system.db and the sim book pass ``PRAGMA integrity_check``; after every restart: the
first cycle comes within seconds, for a session minute after the last one cycled before the kill;
every transaction recorded before the kill is still there unchanged; the running cards are the same;
the engine's symbol set (its ``symbols:`` log line, what symbols_changed carries) is the cards'
tickers. At the end every sim-book fill is recorded exactly once with the broker's side, quantity
and price, nothing is recorded that the book did not fill, and each symbol's book position equals
the cards' shares.

Alpaca part (6 kills), against the fake Alpaca server with the real alpaca-py clients, paper mode on
the real clock. The engine only trades during a real XNYS session and the product has no way to move
its clock, so this part does not depend on cycles: before each start the test leaves orders in
flight exactly as a killed cycle would (through the product's OrderJournal and AlpacaBroker: a
journal row never submitted, orders submitted and filled at the fake but not recorded, an order
still open), slows the fake's order look-ups, and kills the app at a random instant of its start
(reconciliation, history, stream subscription) — or, every other round, right after it has come
up. It checks the same books invariants against the fake's orders and positions, and that the
websocket subscription set at the fake comes back as the cards' tickers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.commands.kiosk import sim_start
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.portfolio.money import card_figures
from app.storage.sim_book_store import SimBookStore
from app.storage.system_store import SystemStore
from app.storage.timefmt import parse_utc_text
from bench.soak import TICKERS, add_cards, add_instances, app_command, app_env, instance_args
from tests.engine.crash_child import FLIPPER_SOURCE, write_algorithm
from tests.engine.netting_helpers import card_fills
from tests.engine.test_crash_safety import broker_fills
from tests.fakes.alpaca_server import wait_until

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
SPEED = 600
KILLS = 20
CARDS = 8  # shipped algorithms
FLIPPERS = 4  # plus cards of a test algorithm (a configured algorithm folder) that trade every minute
START_TIMEOUT_S = 30.0
ALPACA_KILLS = 6


# --- shared helpers ---------------------------------------------------------------------------


def start_app(root: Path, env: dict[str, str], *args: str, name: str) -> subprocess.Popen:
    """``python -m app ARGS`` in ``root`` with output to ``root/name.out``/``.err``."""
    out = (root / f"{name}.out").open("w")
    err = (root / f"{name}.err").open("w")
    proc = subprocess.Popen(app_command(*args), stdout=out, stderr=err, env=env, cwd=root)
    out.close()
    err.close()
    return proc


def power_cut(proc: subprocess.Popen) -> bool:
    """SIGKILL (no handler, no cleanup: what a power cut leaves) and reap; also the cleanup of every start.

    Returns True when it was the SIGKILL that ended the app (it was still running).
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return proc.wait(10) == -signal.SIGKILL


def stop_cleanly(proc: subprocess.Popen, err: Path) -> None:
    """SIGTERM: the app stops by itself, with exit status 0, within 30 s."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, err.read_text()[-3000:]


def last_cycle_text(system_db: Path) -> str | None:
    """system.db's ``last_cycle`` JSON text (None before any cycle)."""
    with SystemStore(system_db) as store:
        return store.get_config("last_cycle")


def snapshot(system_db: Path) -> dict:
    """What a person would see after a restart: running cards, their shares, every transaction."""
    with SystemStore(system_db) as store:
        ok, detail = store.integrity_check()
        running = store.all_instances("running")
        txs = store.all_transactions()
        return {
            "integrity": (ok, detail),
            "running": {inst.id: inst.ticker for inst in running},
            "shares": {inst.id: card_figures(inst.initial_capital, store.get_transactions(inst.id), None).shares
                       for inst in running},
            "txs": {tx.id: (tx.algorithm_id, tx.type, tx.shares, tx.price, tx.client_order_id) for tx in txs},
            # Orders open at the broker: plain ones, and netted ones (not each card's share of them).
            "open": {**{o.client_order_id: o.symbol for o in store.open_orders() if o.parent_id is None},
                     **{n.client_order_id: n.symbol for n in store.open_net_orders()}},
        }


def symbols_logged(log_file: Path, offset: int) -> list[set[str]]:
    """Every ``symbols:`` set the engine logged after byte ``offset`` of engine.log."""
    sets = []
    for line in log_since(log_file, offset).splitlines():
        if "autotrader.engine.orchestrator: symbols: " in line:
            words = line.split("symbols: ", 1)[1].split()
            sets.append(set() if words == ["none"] else set(words))
    return sets


def log_since(log_file: Path, offset: int) -> str:
    """The text appended to ``log_file`` after byte ``offset``."""
    if not log_file.exists():
        return ""
    with log_file.open("rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def assert_fills_once(txs: dict, broker: dict[str, tuple], note: str) -> None:
    """Transactions have unique client ids, each one a broker fill with the same side, qty and price."""
    counts = Counter(coid for *_, coid in txs.values())
    assert None not in counts, f"a transaction without an order {note}"
    doubled = [c for c, n in counts.items() if n > 1]
    assert not doubled, f"fills recorded twice {note}: {doubled[:5]}"
    for _, side, shares, price, coid in txs.values():
        assert coid in broker, f"{coid} recorded but the broker never filled it {note}"
        b_side, b_qty, b_price = broker[coid]
        assert (side, shares) == (b_side, b_qty), f"{coid}: recorded {side} {shares}, broker {b_side} {b_qty} {note}"
        assert abs(Decimal(str(price)) - Decimal(str(b_price))) < Decimal("0.000001"), \
            f"{coid}: recorded at {price}, broker filled at {b_price} {note}"


def test_sim_start_resumes_after_the_last_cycled_minute():
    """A restarted simulation never replays minutes it already traded (its own client order ids)."""
    cal = MarketCalendar()
    saturday = datetime(2024, 6, 8, 12, 0, tzinfo=timezone.utc)
    friday_open = datetime(2024, 6, 7, 13, 30, tzinfo=timezone.utc)
    assert sim_start(cal, saturday) == friday_open
    last = datetime(2024, 6, 7, 15, 41, tzinfo=timezone.utc)
    assert sim_start(cal, saturday, resume_after=last) == last + timedelta(minutes=1)
    # Real time already past the last run: start at the newest open, not in the past.
    assert sim_start(cal, saturday, resume_after=datetime(2024, 6, 3, 15, 0, tzinfo=timezone.utc)) == friday_open


# --- sim: 20 power cuts ------------------------------------------------------------------------


def wait_new_cycle(system_db: Path, before: str | None, proc: subprocess.Popen, err: Path) -> tuple[dict, float]:
    """Wait for the restarted engine's first cycle; returns it and the real seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < START_TIMEOUT_S:
        assert proc.poll() is None, f"the app exited with {proc.returncode}:\n{err.read_text()[-3000:]}"
        text = last_cycle_text(system_db)
        if text and text != before:
            return json.loads(text), time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"no cycle within {START_TIMEOUT_S:.0f} s of the restart:\n{err.read_text()[-3000:]}")


def test_sim_app_survives_20_power_cuts(tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    note = f"(random seed {seed})"
    algos = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    env = app_env(tmp_path, AUTOTRADER_ALGORITHM_DIRS=str(algos))
    cards = add_cards(tmp_path, instance_args(CARDS) + [["add", ticker, "flipper", "4000", "--sim"]
                                                         for ticker in TICKERS[:FLIPPERS]], env=env)
    sim = tmp_path / "sim"
    system_db, book_db, engine_log = sim / "system.db", sim / "sim_broker.db", sim / "logs" / "engine.log"
    cal = MarketCalendar()
    tickers = {TICKERS[i % len(TICKERS)] for i in range(CARDS)}
    in_flight = 0
    starts: list[float] = []
    minutes: list[datetime] = []

    def one_run(i: int, kill: bool) -> None:
        nonlocal in_flight
        before_text = last_cycle_text(system_db)
        before = snapshot(system_db)
        offset = engine_log.stat().st_size if engine_log.exists() else 0
        proc = start_app(tmp_path, env, "run", "--sim", "--headless", "--speed", str(SPEED), name=f"run-{i}")
        try:
            cycle, waited = wait_new_cycle(system_db, before_text, proc, tmp_path / f"run-{i}.err")
            starts.append(waited)
            minute = parse_utc_text(cycle["minute"])
            started = parse_utc_text(cycle["started"])
            assert cal.is_session_minute(int(minute.timestamp())), f"cycled {minute}, not a session minute"
            if before_text:
                last = parse_utc_text(json.loads(before_text)["minute"])
                assert minute > last, f"restart {i} cycled {minute}, not after {last} {note}"
            # On schedule: after its minute completed (+2 s wake), and for the current minute.
            assert timedelta(seconds=2) <= started - minute < timedelta(seconds=62), cycle
            minutes.append(minute)

            after = snapshot(system_db)
            assert after["running"] == before["running"] == {c: after["running"][c] for c in cards}
            changed = {k: v for k, v in before["txs"].items() if after["txs"].get(k) != v}
            assert not changed, f"transactions lost or altered by restart {i} {note}: {changed}"
            logged = symbols_logged(engine_log, offset)
            assert logged and logged[0] == tickers | set(before["open"].values()), (logged, tickers)

            if kill:
                time.sleep(rng.uniform(0.1, 2.5))  # 1-25 simulated minutes of trading
                assert proc.poll() is None, (tmp_path / f"run-{i}.err").read_text()[-3000:]
                power_cut(proc)
                cut = snapshot(system_db)
                assert cut["integrity"] == (True, "ok"), f"system.db damaged by kill {i}: {cut['integrity']}"
                with SimBookStore(book_db) as book:
                    assert book.integrity_check() == (True, "ok")
                in_flight += bool(cut["open"])
            else:
                time.sleep(1.0)
                stop_cleanly(proc, tmp_path / f"run-{i}.err")
        finally:
            power_cut(proc)

    # The sim starts at the latest session open; when that session is over in real time its bars are
    # all stored already and orders fill at once. Run fast into the next session, whose bars (and so
    # fills) come minute by minute: from then on nearly every instant has orders in flight.
    proc = start_app(tmp_path, env, "run", "--sim", "--headless", "--speed", "6000", name="warm-up")
    try:
        first, _ = wait_new_cycle(system_db, None, proc, tmp_path / "warm-up.err")
        wait_until(lambda: json.loads(last_cycle_text(system_db))["minute"][:10] != first["minute"][:10],
                   timeout=60, interval=0.05)
        stop_cleanly(proc, tmp_path / "warm-up.err")
    finally:
        power_cut(proc)

    for i in range(KILLS):
        one_run(i, kill=True)
    one_run(KILLS, kill=False)  # the final reconciliation, then a clean stop

    assert in_flight >= KILLS // 2, f"only {in_flight} of {KILLS} kills had orders in flight {note}"
    # Seconds, not minutes: a restart that waited for the next session would take far longer. The
    # bound holds on a busy 2-core machine (a cold start imports Qt and opens the stores).
    assert max(starts) < 45, f"slowest restart to first cycle: {max(starts):.1f} s"
    assert minutes == sorted(minutes) and len(set(minutes)) == len(minutes)

    book = broker_fills(book_db)
    positions = book.pop("__positions__")
    book_open = book.pop("__open__")
    final = snapshot(system_db)
    assert len(book) >= KILLS, f"too few fills to mean anything: {len(book)} {note}"
    by_card = card_fills(system_db, {c: (s, q, p) for c, (_, s, q, p) in book.items()})
    assert_fills_once(final["txs"], by_card, note)
    recorded = {coid for *_, coid in final["txs"].values()}
    missing = set(by_card) - recorded
    assert not missing, f"sim-book fills never recorded {note}: {sorted(missing)[:5]}"
    assert len(final["open"]) == book_open, "journal and sim book disagree on what is still open"
    held: dict[str, int] = defaultdict(int)
    for inst_id, ticker in final["running"].items():
        assert final["shares"][inst_id] >= 0
        held[ticker] += final["shares"][inst_id]
    for ticker in tickers:
        assert positions.get(ticker, 0) == held[ticker], f"{ticker}: sim book vs cards {note}"
    print(f"{KILLS} kills ({in_flight} with orders in flight), {len(book)} fills, restarts to first cycle "
          f"{min(starts):.1f}-{max(starts):.1f} s")


# --- Alpaca (fake server, real alpaca-py): 6 power cuts during start ---------------------------


def alpaca_env(root: Path, fake) -> dict[str, str]:
    """Paper mode against the fake: real alpaca-py clients, loopback only."""
    return app_env(root, ALPACA_API_KEY=fake.key, ALPACA_SECRET=fake.secret, ALPACA_PAPER="true",
                   ALPACA_TRADING_URL=fake.origin, ALPACA_DATA_URL=fake.origin, ALPACA_STREAM_URL=fake.stream_url)


def fake_fills(fake) -> dict[str, tuple]:
    """client order id -> (side, filled qty, avg price) for every order the fake filled (even partly)."""
    out = {}
    for order in fake.orders():
        if int(order["filled_qty"]) > 0:
            out[order["client_order_id"]] = (order["side"], int(order["filled_qty"]), order["filled_avg_price"])
    return out


def leave_orders_in_flight(root: Path, env: dict[str, str], fake, cards: dict[int, str], round_no: int,
                           rng: random.Random) -> None:
    """What a cycle killed half-way leaves behind, made with the product's own journal and broker:
    a journal row never submitted, orders the fake filled that were never recorded, one still open."""
    from app.engine.alpaca.broker import AlpacaBroker
    from app.engine.minute.journal import OrderJournal
    from app.engine.system.settings import load_settings

    settings = load_settings(env, dotenv_files=[])
    minute = datetime(2024, 1, 2, 15, 0, tzinfo=timezone.utc) + timedelta(minutes=round_no)
    with SystemStore(root / "paper" / "system.db") as store:
        journal = OrderJournal(store, AlpacaBroker.from_settings(settings, timeout_s=5.0), lambda: minute)
        ids = list(cards)
        rng.shuffle(ids)
        pending, *placed = ids[:4]
        store.journal_order(journal.client_order_id(pending, minute, "buy"), pending, cards[pending], "buy", 1,
                            "2024-01-02T15:00:00Z")
        # An order left open by an earlier round may fill while the app is down.
        for order in fake.orders():
            if order["status"] == "new" and rng.random() < 0.5:
                fake.fill_order(order["client_order_id"])
        fake.fill_delay = 0.05
        filled = []
        for inst_id in placed[:2]:
            row, problem = journal.place(inst_id, cards[inst_id], "buy", rng.randint(1, 5), minute)
            assert problem is None, problem
            filled.append(row.client_order_id)
        # Filled at the broker, never recorded: the cut came between the fill and its record.
        wait_until(lambda: all(fake.order(c)["status"] == "filled" for c in filled), timeout=5)
        fake.fill_delay = None  # accepted, never filled by the fake: still open at the restart
        row, problem = journal.place(placed[2], cards[placed[2]], "buy", 1, minute)
        assert problem is None, problem
        wait_until(lambda: fake.order(row.client_order_id)["status"] == "new", timeout=5)
        fake.fill_delay = 0.05


def test_alpaca_app_survives_power_cuts_during_start(tmp_path, fake_alpaca):
    fake = fake_alpaca
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    note = f"(random seed {seed})"
    env = alpaca_env(tmp_path, fake)
    tickers = TICKERS[:4]  # the cards add_instances makes
    for i, symbol in enumerate(tickers):
        fake.set_price(symbol, 50 + 10 * i)
    ids = add_instances(tmp_path, len(tickers), env=env, extra=())
    paper = tmp_path / "paper"
    with SystemStore(paper / "system.db") as store:
        cards = {inst.id: inst.ticker for inst in store.all_instances("running")}
    assert sorted(cards) == sorted(ids) and set(cards.values()) == set(tickers)

    engine_log = paper / "logs" / "engine.log"
    kills = 0
    came_up = 0
    cut_reconciling = 0
    for round_no in range(ALPACA_KILLS):
        leave_orders_in_flight(tmp_path, env, fake, cards, round_no, rng)
        # Slow order reads (look-ups by client id, and the listings the journal and the broker-side
        # pass use when many orders are open) so that reconciliation takes over a second.
        # Round 0 holds every order read until the cut, so one cut lands inside reconciliation on any machine.
        fake.faults.hang("/v2/orders", seconds=None if round_no == 0 else 0.3, times=None, method="GET")
        offset = engine_log.stat().st_size if engine_log.exists() else 0
        proc = start_app(tmp_path, env, "run", "--headless", name=f"alpaca-{round_no}")
        err = tmp_path / f"alpaca-{round_no}.err"
        try:
            if round_no == 0:
                # The cut while reconciliation waits on its first order read: nothing from the broker is recorded yet.
                wait_until(lambda: proc.poll() is not None or fake.faults.stalled() >= 1, timeout=START_TIMEOUT_S)
            elif round_no % 2 == 0:
                # A random instant from the moment the engine has opened its stores and broker:
                # mostly inside reconciliation, sometimes in history or stream start.
                wait_until(lambda: proc.poll() is not None or "engine ready" in log_since(engine_log, offset),
                           timeout=START_TIMEOUT_S)
                time.sleep(rng.uniform(0.0, 1.0))
            else:
                # Up and trading-ready: every open order resolved and the stream subscribed again.
                wait_until(lambda: proc.poll() is not None or fake.subscriptions("bars") == set(tickers),
                           timeout=START_TIMEOUT_S)
                assert proc.poll() is None, err.read_text()[-3000:]
                assert fake.subscriptions("bars") == set(tickers)
                came_up += 1
                time.sleep(rng.uniform(0.0, 1.0))
            assert proc.poll() is None, f"the app exited by itself:\n{err.read_text()[-3000:]}"
            kills += power_cut(proc)  # counts only cuts that really killed a running app
        finally:
            fake.faults.reset()
            power_cut(proc)
            # The fake drops the dead app's stream only once its loop has read the closed socket: until
            # then its subscriptions would make the next start look up before it is.
            wait_until(lambda: fake.connection_count() == 0, timeout=START_TIMEOUT_S)
        cut = snapshot(paper / "system.db")
        assert cut["integrity"] == (True, "ok"), f"system.db damaged by kill {round_no}: {cut['integrity']}"
        assert cut["running"] == cards
        assert_fills_once(cut["txs"], card_fills(paper / "system.db", fake_fills(fake)), note)
        reconciling = bool(set(cut["open"]) & set(fake_fills(fake)))  # filled there, not recorded yet
        assert reconciling or round_no != 0, f"the cut on a held order read found the fills recorded {note}"
        cut_reconciling += reconciling

    # The final start: nothing killed; reconciliation completes and the subscriptions come back.
    proc = start_app(tmp_path, env, "run", "--headless", name="alpaca-final")
    try:
        wait_until(lambda: proc.poll() is not None or fake.subscriptions("bars") == set(tickers),
                   timeout=START_TIMEOUT_S)
        assert proc.poll() is None, (tmp_path / "alpaca-final.err").read_text()[-3000:]

        def settled() -> bool:
            final = {o["client_order_id"]: (o["side"], int(o["filled_qty"]), o["filled_avg_price"])
                     for o in fake.orders() if o["status"] == "filled"}
            by_card = card_fills(paper / "system.db", final)
            return set(by_card) <= {coid for *_, coid in snapshot(paper / "system.db")["txs"].values()}
        wait_until(settled, timeout=START_TIMEOUT_S, interval=0.1)
        stop_cleanly(proc, tmp_path / "alpaca-final.err")
    finally:
        power_cut(proc)

    final = snapshot(paper / "system.db")
    fills = card_fills(paper / "system.db", fake_fills(fake))
    assert_fills_once(final["txs"], fills, note)
    recorded = {coid for *_, coid in final["txs"].values()}
    assert set(fills) <= recorded, f"fake fills never recorded {note}: {sorted(set(fills) - recorded)[:5]}"
    open_at_fake = {o["client_order_id"] for o in fake.orders() if o["status"] not in ("filled", "canceled",
                                                                                          "expired", "rejected")}
    assert set(final["open"]) == open_at_fake, "journal and broker disagree on what is still open"
    with SystemStore(paper / "system.db") as store:
        failed = [o for inst in cards for o in store.orders_for(inst) if o.status == "failed"]
    assert len(failed) == ALPACA_KILLS, "each never-submitted journal row is closed as failed, once"
    for ticker in tickers:
        held = sum(final["shares"][i] for i, t in final["running"].items() if t == ticker)
        assert fake.position_qty(ticker) == held, f"{ticker}: fake position vs cards {note}"
    assert kills == ALPACA_KILLS and came_up == ALPACA_KILLS // 2
    assert cut_reconciling >= 1, f"no kill landed before reconciliation had recorded the fills {note}"
    print(f"{kills} kills against the fake Alpaca server, {cut_reconciling} before reconciliation was done, "
          f"{len(fills)} fills recorded once")
