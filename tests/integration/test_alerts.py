"""Alerts off the wall, end to end: a real sim engine, real Apprise, a local HTTP receiver (json://).

Covers HALT and a card's fault reaching the receiver, the rate limit, that queuing never waits for a
slow target, and that the URLs' secrets (user, password, token path) reach no log line and no text
the wall shows.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.engine.events import AccountSummary, CardSnapshot, Notice, StreamStatus
from app.engine.host.alerts import AlertWatch
from app.engine.system.logging_setup import clear_secrets, configure_logging, shutdown_logging
from app.engine.system.notify import Alert, Notifier
from app.engine.system.settings import Settings, SettingsError, load_settings

BROKEN = Path(__file__).resolve().parents[1] / "engine" / "broken_algorithms"
USER, PASSWORD, TOKEN = "alertuser", "TopSecretPass4242", "tokenQ7xk29PzLm"


class Receiver:
    """A tiny HTTP server collecting the JSON bodies Apprise posts; ``hold`` makes it wait before answering."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.hold.wait(10)
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self) -> str:
        return f"json://{USER}:{PASSWORD}@127.0.0.1:{self.port}/hook/{TOKEN}"

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    def titles(self) -> list[str]:
        return [b.get("title", "") for b in self.bodies]

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def logs(tmp_path):
    folder = tmp_path / "logs"
    configure_logging(folder, level=10, stderr=False)
    yield folder
    shutdown_logging()
    clear_secrets()


def _log_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def _leaks(text: str) -> list[str]:
    return [s for s in (USER, PASSWORD, TOKEN) if s in text]


def test_setting_takes_a_list_and_never_shows_it(receiver):
    url = receiver.url()
    settings = load_settings({"AUTOTRADER_NOTIFY": f"{url}, ntfy://mytopic123456"}, dotenv_files=[])
    assert settings.notify_urls == (url, "ntfy://mytopic123456")
    assert not _leaks(repr(settings)) and "mytopic" not in repr(settings)
    with pytest.raises(SettingsError, match="AUTOTRADER_NOTIFY entry 2") as info:
        load_settings({"AUTOTRADER_NOTIFY": f"{url} {TOKEN}"}, dotenv_files=[])
    assert not _leaks(str(info.value))
    with pytest.raises(SettingsError, match="AUTOTRADER_CARD_DAILY_LOSS_LIMIT"):
        load_settings({"AUTOTRADER_CARD_DAILY_LOSS_LIMIT": "-5"}, dotenv_files=[])
    assert load_settings({"AUTOTRADER_ACCOUNT_DAILY_LOSS_LIMIT": "$1,500"},
                         dotenv_files=[]).account_loss_limit == Decimal("1500")


@pytest.fixture
def qloop(qapp):
    """A qasync loop marked as running, so the engine client's futures resolve inside ``qtbot.waitUntil``."""
    import asyncio

    import qasync
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.events._set_running_loop(loop)
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)


def test_engine_sends_halt_and_fault_to_a_local_receiver_without_leaking_the_url(receiver, logs, qtbot, qloop,
                                                                               tmp_path):
    pytest.importorskip("PySide6")
    from app.engine.host.thread import EngineHost
    from app.engine.marketdata.clock import SimClock

    dead = "json://127.0.0.1:9/nobody-listens"  # a refused target: its failure must not leak either
    settings = Settings(data_root=tmp_path / "data", sim_forced=True, algorithm_dirs=(BROKEN,),
                        notify_urls=(receiver.url(), dead))
    host = EngineHost(settings, SimClock(datetime(2024, 6, 3, 13, 30, tzinfo=timezone.utc), speed=60))
    host.start()
    try:
        def call(fn, *args):
            future = host.client.call(fn, *args)
            qtbot.waitUntil(future.done, timeout=30_000)
            return future.result()

        call(host.service.halt)
        assert receiver.wait_for(lambda: any("trading halted" in t for t in receiver.titles()))
        call(host.service.resume_trading)
        card = call(host.service.create_instance, "AAPL", "raises", "1000", {})
        assert receiver.wait_for(lambda: any(f"card #{card} faulted" in t for t in receiver.titles()), 60)
        assert all(p == f"/hook/{TOKEN}" for p in receiver.paths)  # it really went to the URL given
        info = call(host.service.wall_info)
        assert info.alerts.startswith("2 target(s): json")
        assert not _leaks(info.alerts)
    finally:
        host.stop()
    text = _log_text(logs)
    assert "alert sent" in text  # the log says what happened…
    assert not _leaks(text)  # …and never where to


def test_queuing_never_waits_for_a_slow_target(receiver):
    notifier = Notifier([receiver.url()])
    try:
        receiver.hold.clear()  # the receiver takes the request and does not answer
        assert notifier.send(Alert("a", "first", "body"))
        assert notifier.send(Alert("b", "second", "body"))
        # Both returned while the first is still in flight: delivery happens on the worker thread.
        assert notifier._queue.unfinished_tasks >= 1 and receiver.bodies == []
        receiver.hold.set()
        assert notifier.wait_idle(20)
        assert receiver.titles() == ["first", "second"]
    finally:
        notifier.close()


def test_rate_limit_per_key_and_burst():
    clock = [0.0]
    notifier = Notifier(["json://127.0.0.1:9/x"], per_key_s=600, burst=3, window_s=600,
                        monotonic=lambda: clock[0])
    try:
        assert notifier.send(Alert("feed", "t", "b"))
        assert not notifier.send(Alert("feed", "t", "b"))  # the same key within 10 min
        assert notifier.send(Alert("fault:1", "t", "b")) and notifier.send(Alert("fault:2", "t", "b"))
        assert not notifier.send(Alert("fault:3", "t", "b"))  # the burst is spent
        clock[0] = 601.0
        assert notifier.send(Alert("feed", "t", "b"))
        assert notifier.dropped == 2 and "2 held back" in notifier.describe()
    finally:
        notifier.close()


class _Sink:
    def __init__(self):
        self.alerts: list[Alert] = []

    def send(self, alert):
        self.alerts.append(alert)
        return True


def _card(day_pnl: str, trades: int = 1) -> CardSnapshot:
    z = Decimal(0)
    return CardSnapshot(instance_id=4, display_name="x", ticker="NVDA", algorithm_type="sma_crossover",
                        algorithm_name="SMA crossover", initial_capital=Decimal(1000), shares=3, trade_count=trades,
                        price=Decimal(1), price_time=None, value=z, uninvested=z, pnl=z, pnl_pct=z,
                        last_action="BUY 3 @ 101.20 at 14:32", day_pnl=Decimal(day_pnl), label="SMA 20/50")


def test_watch_rules_feed_loss_loss_limits_fills_and_disk():
    now = [datetime(2024, 6, 3, 14, 0, tzinfo=timezone.utc)]
    sink = _Sink()
    watch = AlertWatch(sink, mode="paper", feed_down_min=10, fills=True, card_loss_limit=Decimal(100),
                       account_loss_limit=Decimal(500), now=lambda: now[0])
    watch.on_stream(StreamStatus("reconnecting", "connection lost"))
    now[0] += timedelta(minutes=9)
    watch.check_feed()
    assert sink.alerts == []  # 9 minutes: not yet
    now[0] += timedelta(minutes=2)
    watch.check_feed()
    watch.check_feed()
    assert [a.key for a in sink.alerts] == ["feed"] and "11 min" in sink.alerts[0].body
    watch.on_stream(StreamStatus("live"))
    assert sink.alerts[-1].key == "feed-back"

    watch.on_cards((_card("-50"),))
    watch.on_cards((_card("-120", trades=2),))  # a loss past the limit, and a new fill
    watch.on_cards((_card("-130", trades=2),))  # once a day only
    keys = [a.key for a in sink.alerts]
    assert keys.count("loss:4") == 1 and "fill:4:2" in keys
    assert any(a.title == "AutoTrader PAPER: NVDA · SMA 20/50: BUY 3 @ 101.20 at 14:32" for a in sink.alerts)

    base = dict(mode="paper", available_cash=Decimal(1), total_pnl=Decimal(0))
    watch.on_account(AccountSummary(halted=False, day_pnl=Decimal(-600), **base))
    watch.on_account(AccountSummary(halted=True, day_pnl=Decimal(-600), **base))
    keys = [a.key for a in sink.alerts]
    assert keys.count("loss:account") == 1 and keys.count("halt") == 1

    from app.engine.system.maintenance import stopped_notice
    watch.on_notice(stopped_notice("the data disk is full", at=now[0]))
    watch.on_notice(Notice("refused", "buy refused: market closed", 4))
    assert [a.key for a in sink.alerts][-1] == "stopped"
