"""Backtest from the add dialog, against a real sim engine on its own thread and real worker threads:
results for the form's inputs, cancel, refusals, UI responsiveness while it runs, and the layout."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from PySide6.QtCore import QSize, QTimer

from app.engine.backtest.replay import BacktestCancelled, BacktestRequest, run_backtest
from app.engine.host.thread import EngineHost
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.portfolio.money import format_money
from app.ui.backtest_view import FAILED, RESULTS, RUNNING, EquityChart
from app.ui.kiosk_window import KioskWindow
from app.ui.screenshot import render_png
from tests.ui.test_flows import SLOW_MS, pass_pin, resolve
from tests.ui.test_layout import layout_problems

EXPLODES = '''
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    """Fails on its first minute."""

    name = "Explodes"
    description = "Raises on every call."

    def run(self, current_time, algo_id):
        raise RuntimeError("boom at the first minute")
'''


@pytest.fixture
def algo_dir(tmp_path) -> Path:
    folder = tmp_path / "algos"
    folder.mkdir()
    (folder / "explodes.py").write_text(EXPLODES, encoding="utf-8")
    return folder


@pytest.fixture
def host(tmp_path, qloop, algo_dir):
    h = EngineHost.for_tests(tmp_path / "data", algorithm_dirs=(algo_dir,))
    yield h
    h.stop()


@pytest.fixture
def kiosk(host, qtbot, tmp_path):
    cards = resolve(qtbot, host.client.call(host.service.cards))
    account = resolve(qtbot, host.client.call(host.service.account))
    win = KioskWindow(host.service, host.client, host.signals, windowed=True, cards=cards, account=account)
    qtbot.addWidget(win)
    render_png(win, QSize(800, 480), tmp_path / "w.png")
    return win


@pytest.fixture
def dialog(kiosk, qtbot):
    """The add dialog, open, with SMA crossover on AAPL and $10,000 filled in."""
    kiosk.strip.add_tile.click()
    pass_pin(kiosk, qtbot)
    add = kiosk.add_dialog
    qtbot.waitUntil(lambda: add.isVisible() and add.algorithms_loaded, timeout=SLOW_MS)
    add.select_algorithm("sma_crossover")
    add.type_into("ticker", "AAPL")
    add.type_into("capital", "10000")
    return add


def wait_for_page(dialog, qtbot, page: int) -> None:
    view = dialog.backtest_view
    qtbot.waitUntil(lambda: view.isVisible() and view.page == page, timeout=SLOW_MS)


def test_backtest_shows_the_result_for_the_form_inputs(dialog, host, qtbot):
    view = dialog.backtest_view
    dialog.backtest_button.click()
    qtbot.waitUntil(lambda: view.isVisible(), timeout=SLOW_MS)
    wait_for_page(dialog, qtbot, RESULTS)
    result = view.result
    assert (result.symbol, result.algorithm_type, result.capital) == ("AAPL", "sma_crossover", Decimal(10000))
    assert dict(result.params) == {"fast": 20, "slow": 50}  # the form's defaults, typed by the engine
    assert view.figure_text("pnl").startswith(format_money(result.pnl, signed=True))
    assert view.figure_text("buy_and_hold").startswith(format_money(result.buy_and_hold_pnl, signed=True))
    assert view.figure_text("trades") == f"{len(result.trades):,}"
    # What the figures rest on is said: the sim kiosk's AAPL has no real bars.
    assert result.data.text == "SIMULATED · 7,800 bars"
    assert view.note.text().startswith("Data: SIMULATED · 7,800 bars.") and view.note.isVisibleTo(view)
    # The last 20 sessions closed before the simulated now (Mon 3 Jun 2024, at the open); Memorial Day
    # (27 May) is not one of them.
    request = dialog.backtest_handle.request
    assert (request.start.isoformat(), request.end.isoformat()) == ("2024-05-03", "2024-05-31")
    assert len(MarketCalendar().sessions_between(request.start, request.end)) == 20
    assert result.minutes == 20 * 390
    # The same request replayed here, independently, gives the same figures the panel shows.
    again = run_backtest(BacktestRequest("sma_crossover", "AAPL", request.start, request.end, Decimal(10000),
                                         {"fast": 20, "slow": 50}), settings=host.settings,
                         now=host.clock.now())
    assert (again.pnl, len(again.trades), again.buy_and_hold_pnl) == (result.pnl, len(result.trades),
                                                                     result.buy_and_hold_pnl)
    # Both curves are drawn; buy-and-hold ends at capital + its P&L.
    assert view.chart.point_count == (len(result.equity_curve), len(result.equity_curve))
    assert result.benchmark_curve[-1][1] == pytest.approx(float(result.capital + result.buy_and_hold_pnl))
    assert view.table.model().rowCount() == min(50, len(result.trades)) > 0
    assert view.trades.text(0, 1) == result.trades[-1].side.upper()  # newest first

    view.back_button.click()
    assert not view.isVisible() and dialog.isVisible()
    assert (dialog.field("ticker").text, dialog.field("capital").text) == ("AAPL", "10000")
    assert dialog.selected_algorithm == "sma_crossover"
    assert resolve(qtbot, host.client.call(host.service.cards)) == ()


def test_create_card_from_the_results_commits_the_same_inputs(dialog, kiosk, host, qtbot):
    dialog.backtest_button.click()
    wait_for_page(dialog, qtbot, RESULTS)
    dialog.backtest_view.create_button.click()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=SLOW_MS)
    cards = resolve(qtbot, host.client.call(host.service.cards))
    assert [(c.ticker, c.algorithm_type, c.initial_capital) for c in cards] == [("AAPL", "sma_crossover", 10000)]


def test_another_period_reruns_with_the_same_inputs(dialog, qtbot):
    view = dialog.backtest_view
    dialog.backtest_button.click()
    wait_for_page(dialog, qtbot, RESULTS)
    view.period_buttons[5].click()
    wait_for_page(dialog, qtbot, RESULTS)
    qtbot.waitUntil(lambda: view.result is not None and view.result.minutes == 5 * 390, timeout=SLOW_MS)
    assert view.period_buttons[5].isChecked() and view.result.symbol == "AAPL"


def test_cancel_stops_a_running_backtest_and_returns_to_the_form(dialog, host, qtbot):
    view = dialog.backtest_view
    dialog.backtest(250)
    qtbot.waitUntil(lambda: dialog.backtest_handle is not None, timeout=SLOW_MS)
    handle = dialog.backtest_handle
    assert view.page == RUNNING and view.cancel_button.isVisible()
    view.cancel_button.click()
    assert not view.isVisible() and dialog.isVisible()
    qtbot.waitUntil(handle.future.done, timeout=SLOW_MS)
    with pytest.raises(BacktestCancelled):
        handle.future.result()
    qtbot.wait(50)
    assert not view.isVisible() and dialog.field("ticker").text == "AAPL" and dialog.error_text == ""


def test_bad_capital_shows_the_error_and_starts_nothing(dialog, host, qtbot):
    dialog.field("capital").box.click()
    dialog.numbers.buttons["CLEAR"].click()
    dialog.numbers.buttons["0"].click()
    dialog.backtest_button.click()
    qtbot.waitUntil(lambda: dialog.error_text != "" and not dialog.busy, timeout=SLOW_MS)
    assert "more than $0" in dialog.note_of("capital")
    assert not dialog.backtest_view.isVisible() and dialog.backtest_handle is None
    assert host.service.__dict__.get("_backtest_jobs") is None  # the engine never started a job


def test_engine_refusal_shows_on_the_form(dialog, host, qtbot):
    """fast >= slow passes the form's per-field checks; the engine refuses it and nothing runs."""
    dialog.field("param:fast").box.click()
    dialog.numbers.buttons["CLEAR"].click()
    for d in "90":
        dialog.numbers.buttons[d].click()
    dialog.backtest_button.click()
    qtbot.waitUntil(lambda: "fast" in dialog.error_text and not dialog.busy, timeout=SLOW_MS)
    assert not dialog.backtest_view.isVisible()
    assert host.service.__dict__.get("_backtest_jobs") is None


def test_a_failing_algorithm_is_shown_inline(dialog, qtbot):
    dialog.select_algorithm("explodes")
    dialog.backtest_button.click()
    wait_for_page(dialog, qtbot, FAILED)
    assert "boom at the first minute" in dialog.backtest_view.error_text
    assert dialog.backtest_view.back_button.isEnabled()


def test_the_ui_thread_is_never_blocked_while_a_backtest_runs(dialog, qtbot):
    view = dialog.backtest_view
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()
    progress: list[float] = []
    view.progress.valueChanged.connect(lambda v: progress.append(v / 1000))
    try:
        last[0] = started = time.perf_counter()
        dialog.backtest(120)  # bars simulated first, then 46,800 minutes replayed
        wait_for_page(dialog, qtbot, RESULTS)
        took = time.perf_counter() - started
    finally:
        timer.stop()
    assert view.result.minutes == 120 * 390
    assert len(gaps) > 20, len(gaps)
    # Run on the UI thread, the backtest would freeze the loop for its whole run. Off it, the loop
    # only waits for GIL hand-offs. Judged against the run itself, not a fixed number of ms, so a
    # busy machine slows both.
    worst = max(gaps)
    assert worst < took / 4, f"the UI loop stalled for {worst * 1000:.0f} ms of {took:.2f} s"
    assert any(0 < p < 1 for p in progress)  # the bar moved during the run


def test_the_equity_chart_draws_its_curves_in_loop_turns_of_their_own(qtbot):
    """A result's two 1000-point curves are drawn after ``set_data`` returns, one per loop turn, and
    the whole picture is what is shown then: white equity over grey buy-and-hold."""
    chart = EquityChart()
    qtbot.addWidget(chart)
    chart.resize(600, 280)
    chart.show()
    qtbot.waitExposed(chart)
    equity = [10_000 + 3 * i for i in range(1000)]  # rises: ends top right
    benchmark = [10_000 - 2 * i for i in range(1000)]  # falls: ends bottom right
    chart.set_data(equity, benchmark, 10_000, "02 Jan", "31 Dec")
    assert not chart.drawn  # nothing drawn inside set_data: the results page paints first
    qtbot.waitUntil(lambda: chart.drawn)
    assert chart.draw_turns == 2  # one turn per curve
    image = chart.grab().toImage()
    colors = {image.pixelColor(x, y).name() for x in range(image.width()) for y in range(image.height())}
    assert "#ffffff" in colors and "#9ca3af" in colors
    chart.set_data(equity, (), 10_000)  # no benchmark: one turn
    qtbot.waitUntil(lambda: chart.drawn)
    assert chart.draw_turns == 1
    chart.resize(500, 250)  # a new size draws again, the same way
    assert not chart.drawn
    qtbot.waitUntil(lambda: chart.drawn)


@pytest.mark.parametrize("size", [QSize(800, 480), QSize(1280, 720)], ids=lambda s: f"{s.width()}x{s.height()}")
def test_the_results_fit_without_clipping(dialog, kiosk, qtbot, tmp_path, size):
    view = dialog.backtest_view
    dialog.backtest_button.click()
    wait_for_page(dialog, qtbot, RESULTS)
    render_png(kiosk, size, tmp_path / "backtest.png")
    assert view.size() == size
    assert layout_problems(view) == []
    for btn in (view.back_button, view.create_button, *view.period_buttons.values()):
        assert btn.height() >= 48 and btn.width() >= 48
    assert view.chart.height() >= 80 and view.table.height() >= 2 * view.table.verticalHeader().defaultSectionSize()
    # Every figure reads in full: none is elided.
    for key, fig in view.figures.items():
        assert fig.fontMetrics().horizontalAdvance(fig.text()) <= fig.width(), key


def test_backtest_running_page_fits(dialog, kiosk, qtbot, tmp_path):
    view = dialog.backtest_view
    dialog.backtest(250)
    qtbot.waitUntil(lambda: view.isVisible(), timeout=SLOW_MS)
    render_png(kiosk, QSize(800, 480), tmp_path / "running.png")
    if view.page == RUNNING:
        assert layout_problems(view) == []
        assert view.cancel_button.height() >= 48
    qtbot.waitUntil(lambda: dialog.backtest_handle is not None, timeout=SLOW_MS)
    handle = dialog.backtest_handle
    dialog.close_backtest()
    qtbot.waitUntil(handle.future.done, timeout=SLOW_MS)
