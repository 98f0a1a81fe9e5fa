"""Alpaca keys and the PIN never reach a log file, stderr/stdout, an exception message or a repr.

Realistic paths run with distinctive test keys and PINs, logging configured exactly as the kiosk does
(``configure_logging`` into a log folder) but at DEBUG, and WITHOUT registering the secrets for
redaction: the redaction filter is a safety net, these paths must not even try to log them. Covered:
settings, the REST broker (401 wrong key, hung request, rejection, 429/5xx), the history client,
a paper engine against the fake Alpaca (card, fill, PIN verify right/wrong/change), the live stream
(good and wrong key), and the real CLI (set-pin, doctor, status, add, run) as child processes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from app.engine.system.logging_setup import clear_secrets, configure_logging, shutdown_logging
from app.engine.system.settings import Settings, SettingsError, load_settings
from tests.cli_helpers import run_cli
from tests.fakes.alpaca_server import FakeAlpaca

KEY = "PKTESTKEY123456"
SECRET = "sekritSECRET987654"
WRONG_KEY = "PKWRONGKEY777111"
WRONG_SECRET = "wrongSECRET335577"
# Eight digits so they cannot turn up by chance in ports, epoch seconds, dates or order ids.
PIN = "86429753"
WRONG_PIN = "75318642"
SECRETS = (KEY, SECRET, WRONG_KEY, WRONG_SECRET, PIN, WRONG_PIN)


def leaks(text: str) -> list[str]:
    """Which secrets occur in ``text``."""
    return [s for s in SECRETS if s in text]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class Audit:
    """Collects everything a path could leak through, and checks it all at the end."""

    def __init__(self, log_dir: Path, capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
        self.log_dir = log_dir
        self._capfd = capfd
        self._caplog = caplog
        self.texts: dict[str, str] = {}
        self.exceptions: list[BaseException] = []

    def raises(self, kind: type[BaseException] | tuple, fn: Callable[..., Any], *args: Any,
               **kwargs: Any) -> BaseException:
        """Call ``fn`` expecting ``kind``; keep the exception for the final check."""
        with pytest.raises(kind) as info:
            fn(*args, **kwargs)
        self.exceptions.append(info.value)
        return info.value

    def add(self, name: str, value: Any) -> None:
        """Something else shown to people (a repr, a status dict, a PinResult)."""
        self.texts[name] = value if isinstance(value, str) else f"{value!r} {value}"

    def check(self, *, expect_in_logs: tuple[str, ...] = ()) -> None:
        """No secret anywhere; and the logs (files or captured records) really hold what the paths
        said, so the check is not vacuous."""
        found: dict[str, list[str]] = {}
        logged = ""
        for path in sorted(p for p in self.log_dir.rglob("*") if p.is_file()):
            text = path.read_bytes().decode("utf-8", "replace")
            logged += text
            if leaks(text):
                found[f"log file {path.name}"] = leaks(text)
        out, err = self._capfd.readouterr()
        for name, text in (("stdout", out), ("stderr", err)):
            if leaks(text):
                found[name] = leaks(text)
        # pytest's own capture sees every logger (alpaca-py, urllib3, websockets...) at what level
        # the test set, without any redaction.
        for record in self._caplog.records:
            text = record.getMessage() + (record.exc_text or "")
            logged += text
            if leaks(text):
                found[f"log record {record.name}"] = leaks(text)
        for exc in self.exceptions:
            chain: list[BaseException] = []
            cur: BaseException | None = exc
            while cur is not None and cur not in chain:
                chain.append(cur)
                cur = cur.__cause__ or cur.__context__
            for item in chain:
                text = f"{item} {item!r}"
                if leaks(text):
                    found[f"exception {type(item).__name__}"] = leaks(text)
        for name, text in self.texts.items():
            if leaks(text):
                found[name] = leaks(text)
        assert not found, found
        for needle in expect_in_logs:
            assert needle in logged, f"{needle!r} not logged: the path did not run as intended"


@pytest.fixture
def audit(tmp_path: Path, capfd, caplog):
    log_dir = tmp_path / "logs"
    clear_secrets()  # nothing is redacted: the code itself must keep the secrets out
    configure_logging(log_dir, level=logging.DEBUG, stderr=True)
    caplog.set_level(logging.INFO)  # third-party loggers too (alpaca-py, urllib3...) from INFO up
    caplog.set_level(logging.DEBUG, logger="autotrader")  # last: the capture handler takes DEBUG
    try:
        yield Audit(log_dir, capfd, caplog)
    finally:
        shutdown_logging()
        logging.getLogger("autotrader").setLevel(logging.NOTSET)


@pytest.fixture
def fake():
    with FakeAlpaca(KEY, SECRET, cash=50_000, fill_delay=0.05) as server:
        yield server


def settings_for(fake: FakeAlpaca, tmp_path: Path, *, key: str = KEY, secret: str = SECRET, **over: Any) -> Settings:
    values: dict[str, Any] = dict(api_key=key, secret=secret, paper=True, data_root=tmp_path / "data",
                                  trading_url=fake.origin, data_url=fake.origin, stream_url=fake.stream_url)
    values.update(over)
    return Settings(**values)


# --- settings -----------------------------------------------------------------------------------


def test_settings_never_show_the_keys(audit, tmp_path):
    env = {"ALPACA_API_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_PAPER": "false"}
    settings = load_settings(env, dotenv_files=[])
    assert settings.mode == "live" and settings.api_key == KEY
    audit.add("repr(Settings)", settings)
    dotenv = tmp_path / "keys.env"
    dotenv.write_text(f"ALPACA_API_KEY={KEY}\nALPACA_SECRET={SECRET}\n")
    audit.add("repr(Settings from .env)", load_settings({}, dotenv_files=[dotenv]))
    audit.raises(SettingsError, load_settings, {"ALPACA_API_KEY": KEY}, dotenv_files=[])
    audit.raises(SettingsError, load_settings, {"ALPACA_SECRET": SECRET}, dotenv_files=[])
    audit.raises(SettingsError, Settings, api_key=KEY, secret=SECRET, feed="bogus")
    audit.check()


# --- REST: broker and history -------------------------------------------------------------------


def test_broker_failures_keep_the_keys_out(audit, fake, tmp_path):
    from app.engine.alpaca.broker import AlpacaBroker
    from app.engine.brokers.protocol import BrokerError, BrokerUnavailable, OrderRejected

    fake.add_asset("AAPL")
    fake.set_price("AAPL", "101.25")
    broker = AlpacaBroker.from_settings(settings_for(fake, tmp_path), timeout_s=3.0, retry_wait_s=0.01)
    audit.add("repr(broker)", broker)
    assert broker.account_cash() == 50_000
    assert broker.validate_symbol("AAPL") == "AAPL"
    state = broker.submit_market_order("secret-test-1", "AAPL", "buy", 3)
    assert broker.wait_for_final(state.client_order_id, 5).filled_qty == 3

    # Rejection: a typed error, or a final 'rejected' state, depending on when Alpaca says no.
    fake.faults.reject()
    try:
        rejected = broker.submit_market_order("secret-test-2", "AAPL", "buy", 1)
        rejected = broker.wait_for_final(rejected.client_order_id, 5)
        assert rejected.status == "rejected"
        audit.add("rejected order", rejected)
    except OrderRejected as exc:
        audit.exceptions.append(exc)

    # A hung request ends with a timeout, not a hang.
    fake.faults.hang("/v2/account")  # until released: only the client's timeout can end the call
    audit.raises(BrokerUnavailable, broker.account_cash)
    fake.faults.release_hangs()

    # 429 burst beyond the retries, then 5xx.
    fake.faults.rate_limit("/v2/account", times=10)
    audit.raises(BrokerUnavailable, broker.account_cash)
    fake.faults.reset()
    fake.faults.server_errors("/v2/positions", status=500, times=10)
    audit.raises(BrokerError, broker.position, "AAPL")
    fake.faults.reset()

    # 401: wrong key, and wrong secret.
    for key, secret in ((WRONG_KEY, SECRET), (KEY, WRONG_SECRET)):
        wrong = AlpacaBroker.from_settings(settings_for(fake, tmp_path, key=key, secret=secret),
                                           timeout_s=3.0, retry_wait_s=0.01)
        exc = audit.raises(BrokerError, wrong.account_cash)
        assert "refused the API key" in str(exc)
        audit.raises(BrokerError, wrong.submit_market_order, "secret-test-3", "AAPL", "buy", 1)
        audit.add("repr(wrong broker)", wrong)
    audit.check(expect_in_logs=("Alpaca PAPER trading",))


def test_history_failures_keep_the_keys_out(audit, fake, tmp_path):
    from app.engine.alpaca.history import AlpacaHistory, MarketDataError
    from app.engine.marketdata.calendar import MarketCalendar
    from app.storage.market_store import MarketStore

    cal = MarketCalendar()
    start = int(utc(2024, 6, 4, 14, 0).timestamp())
    with MarketStore(tmp_path / "stocks.db", minute_filter=cal.is_session_minute) as store:
        for key, secret in ((WRONG_KEY, SECRET), (KEY, WRONG_SECRET)):
            history = AlpacaHistory.from_settings(settings_for(fake, tmp_path, key=key, secret=secret), store, cal)
            audit.add("repr(history)", history)
            audit.raises((MarketDataError, Exception), history.fill_gap, "AAPL", start, start + 600)
        history = AlpacaHistory.from_settings(settings_for(fake, tmp_path), store, cal)
        fake.faults.server_errors("/v2/stocks", status=503, times=20)
        audit.raises((MarketDataError, Exception), history.fill_gap, "AAPL", start, start + 600)
    audit.check()


# --- a paper engine: cards, fills, PIN ----------------------------------------------------------

FLIPPER = '''\
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Flipper"
    description = "Buys when flat, sells when holding."

    def run(self, current_time, algo_id):
        held = self.position()
        if held > 0:
            return ("sell", held)
        price = self.last_price()
        return ("buy", 2) if price else ("hold", 0)
'''


def _history_bars(tmp_path: Path, symbol: str) -> list[tuple]:
    from app.engine.marketdata.calendar import MarketCalendar
    from app.engine.sim.market import SimMarket
    from app.storage.market_store import MarketStore

    cal = MarketCalendar()
    with MarketStore(tmp_path / "scratch.db") as scratch:
        sim = SimMarket(cal, scratch, seed=5)
        days = [*cal.sessions_between(date(2024, 5, 27), date(2024, 6, 3)), date(2024, 6, 4)]
        return [tuple(b) for d in days for b in sim.session_bars(symbol, d)]


def test_paper_engine_cards_fills_and_pin_keep_secrets_out(audit, fake, tmp_path):
    from app.engine.alpaca.broker import AlpacaBroker
    from app.engine.marketdata.clock import ManualClock
    from app.engine.host.client import ServiceError
    from app.engine.host.wiring import EngineParts
    from app.engine.host.service import EngineService

    algos = tmp_path / "algos"
    algos.mkdir()
    (algos / "flipper.py").write_text(FLIPPER)
    clock = ManualClock(utc(2024, 6, 4, 15, 0, 2))
    fake.add_asset("AAPL")
    fake.add_bars("AAPL", _history_bars(tmp_path, "AAPL"))
    fake.set_now(clock.now)
    fake.set_price("AAPL", "101.50")
    settings = settings_for(fake, tmp_path, algorithm_dirs=(algos,))
    broker = AlpacaBroker.from_settings(settings, timeout_s=5, retry_wait_s=0.05)
    parts = EngineParts.build(settings, clock=clock, broker=broker)
    try:
        service = EngineService(parts)
        audit.add("repr(parts)", parts)
        audit.raises(ServiceError, service.create_instance, "ZZZZ", "flipper", "1000")
        audit.raises(ServiceError, service.create_instance, "AAPL", "../flipper", "1000")
        card = service.create_instance("AAPL", "flipper", "5000")
        for minute in (utc(2024, 6, 4, 15, 1), utc(2024, 6, 4, 15, 2)):
            clock.set(minute + timedelta(seconds=2))
            parts.feed.set_symbols(["AAPL"])
            parts.feed.poll(clock.now())
            result = parts.cycle.run_minute(minute)
            assert len(result.fills) == 1
        assert len(parts.system.get_transactions(card)) == 2

        # The PIN: default, change, wrong, right, refused new PINs.
        assert service.verify_pin("2020").ok
        service.change_pin(PIN)
        wrong = service.verify_pin(WRONG_PIN)
        assert not wrong.ok
        audit.add("wrong PIN result", wrong)
        right = service.verify_pin(PIN)
        assert right.ok
        audit.add("right PIN result", right)
        audit.raises(ServiceError, service.change_pin, PIN + "123")  # too long
        audit.raises(ServiceError, service.change_pin, "86a4")
        audit.add("repr(pin guard)", parts.pin)
        status = service.status()
        audit.add("status", json.dumps(status, default=str))
        audit.add("cards", service.cards())
    finally:
        parts.close()

    # The same engine with a wrong secret: the status shows the broker error, not the secret.
    bad = EngineParts.build(settings_for(fake, tmp_path, secret=WRONG_SECRET, algorithm_dirs=(algos,)),
                            clock=clock)
    try:
        status = EngineService(bad).status()
        assert status["broker_error"] and status["broker_cash"] is None
        audit.add("status with a wrong secret", json.dumps(status, default=str))
    finally:
        bad.close()
    # Nothing under the data folder holds a key, a secret or a PIN in the clear either.
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            audit.add(f"data file {path.name}", path.read_bytes().decode("latin-1"))
    audit.check(expect_in_logs=("engine ready: mode PAPER", "created instance"))


# --- the live stream ----------------------------------------------------------------------------


def test_stream_good_and_wrong_keys_keep_secrets_out(audit, fake, tmp_path, qtbot):
    from app.engine.alpaca.bar_stream import BarStream
    from app.engine.marketdata.calendar import MarketCalendar

    cal = MarketCalendar()
    t0 = int(utc(2024, 6, 4, 15, 0).timestamp())
    streams = []
    try:
        for name, key, secret in (("good", KEY, SECRET), ("wrong key", WRONG_KEY, SECRET),
                                  ("wrong secret", KEY, WRONG_SECRET)):
            stream = BarStream(key, secret, url=fake.stream_url, feed="iex", store_path=tmp_path / "stocks.db",
                               calendar=cal, reconnect_backoff=(0.05, 0.2), flush_delay_s=0.05)
            streams.append(stream)
            received: list = []
            stream.bar_received.connect(received.append)
            stream.start()
            stream.acquire("NVDA")
            qtbot.waitUntil(lambda: stream.status.state in ("live", "failed"), timeout=5000)
            audit.add(f"repr(stream {name})", stream)
            audit.add(f"status {name}", stream.status)
            if name == "good":
                assert stream.status.state == "live"
                qtbot.waitUntil(lambda: fake.subscriptions() == {"NVDA"}, timeout=5000)
                fake.push_bar("NVDA", (t0, 100.0, 101.0, 99.5, 100.5, 100))
                qtbot.waitUntil(lambda: len(received) == 1, timeout=5000)
                fake.drop_connections()  # a reconnect re-authenticates
                qtbot.waitUntil(lambda: stream.status.state == "live" and fake.subscriptions() == {"NVDA"},
                                timeout=5000)
            else:
                assert stream.status.state == "failed"
            stream.stop()
    finally:
        for stream in streams:
            stream.stop()
    audit.check(expect_in_logs=("bar stream live", "bar stream failed"))


# --- the real command line ----------------------------------------------------------------------


def test_cli_set_pin_doctor_status_add_and_run_keep_secrets_out(audit, fake, tmp_path):
    data = tmp_path / "clidata"
    data.mkdir()
    fake.add_asset("AAPL")
    fake.add_bars("AAPL", _history_bars(tmp_path, "AAPL"))
    env = dict(ALPACA_API_KEY=KEY, ALPACA_SECRET=SECRET, ALPACA_PAPER="true", ALPACA_TRADING_URL=fake.origin,
               ALPACA_DATA_URL=fake.origin, ALPACA_STREAM_URL=fake.stream_url,
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    outputs: list[str] = []

    def cli(*args: str, stdin: str | None = None, expect: int = 0, **extra: str):
        done = run_cli(data, *args, stdin=stdin, timeout=90, **{**env, **extra})
        outputs.append(f"$ {' '.join(args)}\n{done.stdout}\n{done.stderr}")
        assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    assert "PIN changed" in cli("set-pin", stdin=f"{PIN}\n{PIN}\n").stdout
    assert "differ" in cli("set-pin", stdin=f"{PIN}\n{WRONG_PIN}\n", expect=2).stderr
    cli("set-pin", stdin=f"{PIN}123\n{PIN}123\n", expect=2)  # too long: refused without echoing it
    doctor = cli("doctor")
    assert "PAPER" in doctor.stdout
    status = json.loads(cli("status", "--json").stdout)
    assert status["mode"] == "paper" and status["broker_cash"] == "50000.00"
    cli("status")
    card = cli("add", "AAPL", "buy_and_hold", "1000").stdout.strip()
    assert card.isdigit()
    wrong = json.loads(cli("status", "--json", ALPACA_SECRET=WRONG_SECRET).stdout)
    assert wrong["broker_error"]
    cli("status", ALPACA_API_KEY=WRONG_KEY)
    cli("run", "--headless", "--exit-after", "2")  # the kiosk's engine and stream, logging to files
    logs = data / "paper" / "logs"
    assert (logs / "engine.log").read_text().count("PAPER") >= 1
    for path in data.rglob("*"):
        if path.is_file():
            audit.add(f"data file {path.relative_to(data)}", path.read_bytes().decode("latin-1"))
    for i, text in enumerate(outputs):
        audit.add(f"cli output {i}", text)
    audit.check()
