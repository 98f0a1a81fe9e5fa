"""Add a card: pick an algorithm, a ticker, the capital and parameters, all on on-screen keypads.

Every check shows next to its field; the ticker is checked by the engine in the background (the UI
never waits on it); nothing is created until every check has passed. BACKTEST replays the same
inputs over recent sessions first (on a worker thread) and shows the outcome beside buy-and-hold.
"""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QButtonGroup, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSizePolicy,
                               QStackedWidget, QVBoxLayout, QWidget)

from app.engine.algorithm_api import Param
from app.engine.plugins.loader import AlgorithmInfo
from app.engine.backtest.replay import BacktestCancelled, BacktestError
from app.engine.portfolio.money import format_money
from app.ui import theme
from app.ui.backtest_view import DEFAULT_SESSIONS, BacktestView
from app.ui.engine_calls import EngineCalls
from app.ui.keypads import LETTER_KEYS, NUMBER_KEYS, Keypad, edit_text
from app.ui.overlay import Overlay
from app.ui.tasks import TaskRunner, error_text
from app.ui.widgets import button, enable_kinetic_scrolling, label, separator

TICKER_CHECK_DELAY_MS = 500
# At most this often a backtest's progress hops to the UI loop: each hop makes the UI thread wait
# for the GIL the replay holds, so one hop per replayed session would starve the event loop.
PROGRESS_HOP_S = 0.05
LETTERS, NUMBER, TOGGLE, CHOICE = "letters", "number", "toggle", "choice"


class _BacktestRun:
    """One backtest the dialog started: its handle once the engine answers, and whether it was dropped."""

    __slots__ = ("sessions", "handle", "dropped", "fraction", "hopped_at")

    def __init__(self, sessions: int) -> None:
        self.sessions = sessions
        self.handle: Any = None
        self.dropped = threading.Event()  # read on the worker thread (progress), set on the UI thread
        self.fraction = 0.0  # the latest progress, written by the worker thread
        self.hopped_at = 0.0

    def drop(self) -> None:
        """Stop caring: cancel the job if it started (or as soon as it does)."""
        self.dropped.set()
        if self.handle is not None:
            self.handle.cancel()


class Field(QWidget):
    """A caption, a tappable value box and a note line (error in red, confirmation in green)."""

    def __init__(self, key: str, caption: str, kind: str, text: str = "", *, prefix: str = "",
                 help_text: str = "", choices: tuple = ()) -> None:
        super().__init__()
        self.key, self.kind, self.prefix, self.choices = key, kind, prefix, choices
        self._text = text
        self._active = False
        self.has_error = False
        self.caption = label(caption, size="small", dim=True)
        self.box: QPushButton = button("", kind="field")
        self.box.setObjectName(f"field_{key}")
        self.box.setCheckable(kind in (LETTERS, NUMBER))
        self.note = label("", size="small", wrap=True)
        self.note.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.caption)
        if help_text:
            layout.addWidget(label(help_text, size="small", dim=True, wrap=True))
        layout.addWidget(self.box)
        layout.addWidget(self.note)
        self._render()

    @property
    def text(self) -> str:
        """The raw value text."""
        return self._text

    def set_text(self, text: str) -> None:
        """Replace the value."""
        self._text = text
        self._render()

    def set_active(self, active: bool) -> None:
        """Show the typing cursor while the keypad edits this field."""
        self._active = active
        self.box.setChecked(active)
        self._render()

    def _render(self) -> None:
        cursor = "▏" if self._active else ""
        self.box.setText(f"{self.prefix}{self._text}{cursor}")

    def set_note(self, text: str, color: Any = None) -> None:
        """Show ``text`` under the box (``""`` hides it)."""
        self.has_error = False
        self.note.setText(text)
        self.note.setVisible(bool(text))
        theme.set_text_color(self.note, color or theme.DIM)

    def set_error(self, text: str) -> None:
        """A red note."""
        self.set_note(text, theme.RED)
        self.has_error = True

    @property
    def note_text(self) -> str:
        """The note currently shown ("" when none)."""
        return self.note.text() if self.note.isVisibleTo(self) else ""


class ChoiceButton(QPushButton):
    """A selectable two-line button (name, then description or error), each line elided to fit."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__()
        self._title, self._detail = title, detail
        self.setProperty("kind", "choice")
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setCheckable(True)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setText(f"{title}\n{detail}")  # two lines for the size hint; elided once laid out

    @property
    def lines(self) -> tuple[str, str]:
        """The full (unelided) title and detail."""
        return self._title, self._detail

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        fm = self.fontMetrics()
        width = max(10, self.width() - 2 * fm.averageCharWidth() - 8)
        self.setText("\n".join(fm.elidedText(t, Qt.TextElideMode.ElideRight, width)
                                for t in (self._title, self._detail)))


class AddDialog(Overlay):
    """The add-card panel. ``await run()`` returns the new instance id, or None when cancelled."""

    def __init__(self, parent: QWidget, metrics: theme.Metrics, calls: EngineCalls) -> None:
        super().__init__(parent, metrics)
        self.setObjectName("addDialog")
        self._calls = calls
        self._tasks = TaskRunner(self._show_form_error)
        self._algorithms: list[AlgorithmInfo] = []
        self._selected: AlgorithmInfo | None = None
        self._available: Decimal | None = None
        self._active: Field | None = None
        self._ticker_generation = 0
        self._ticker_checked: tuple[str, str] | None = None  # (typed text, normalised) once accepted
        self._busy = False
        self.param_fields: dict[str, Field] = {}

        # Left: the form, scrolling.
        self.title = label("NEW ALGORITHM CARD", size="large")
        self.algorithm_group = QButtonGroup(self)
        self.algorithm_group.setExclusive(True)
        self.algorithm_buttons: dict[str, QPushButton] = {}
        self._algo_box = QVBoxLayout()
        self._algo_box.setSpacing(4)
        self.algorithm_note = label("Loading algorithms…", size="small", dim=True, wrap=True)
        self.ticker = Field("ticker", "TICKER", LETTERS)
        self.capital = Field("capital", "CAPITAL", NUMBER, prefix="$ ")
        self.params_caption = label("PARAMETERS", size="small", dim=True)
        self._params_box = QVBoxLayout()
        self._params_box.setSpacing(6)
        for field in (self.ticker, self.capital):
            field.box.clicked.connect(lambda _=False, f=field: self._activate(f))

        form = QWidget()
        form_layout = QVBoxLayout(form)
        form_layout.setContentsMargins(0, 0, 6, 0)
        form_layout.addWidget(self.ticker)
        form_layout.addWidget(self.capital)
        form_layout.addWidget(separator())
        form_layout.addWidget(label("ALGORITHM", size="small", dim=True))
        form_layout.addLayout(self._algo_box)
        form_layout.addWidget(self.algorithm_note)
        form_layout.addWidget(separator())
        form_layout.addWidget(self.params_caption)
        form_layout.addLayout(self._params_box)
        form_layout.addStretch(1)
        self.form_scroll = QScrollArea()
        self.form_scroll.setWidgetResizable(True)
        self.form_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.form_scroll.setWidget(form)
        enable_kinetic_scrolling(self.form_scroll.viewport(), horizontal=False)

        left = QVBoxLayout()
        left.addWidget(self.title)
        left.addWidget(self.form_scroll, 1)

        # Right: the keypad for the field being edited, and the actions.
        self.letters = Keypad(LETTER_KEYS)
        self.numbers = Keypad(NUMBER_KEYS)
        self.letters.key.connect(self._key)
        self.numbers.key.connect(self._key)
        hint = label("Tap TICKER, CAPITAL or a parameter to type it here.", dim=True, wrap=True)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.keypads = QStackedWidget()
        self.keypads.addWidget(hint)
        self.keypads.addWidget(self.letters)
        self.keypads.addWidget(self.numbers)
        self.form_error = label("", wrap=True)
        theme.set_text_color(self.form_error, theme.RED)
        self.cancel_button = button("CANCEL")
        self.cancel_button.setObjectName("addCancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.backtest_button = button("BACKTEST")
        self.backtest_button.setObjectName("addBacktest")
        self.backtest_button.clicked.connect(lambda: self.backtest())
        self.create_button = button("CREATE", kind="primary")
        self.create_button.setObjectName("addCreate")
        self.create_button.clicked.connect(self.submit)
        actions = QHBoxLayout()
        actions.addWidget(self.cancel_button)
        actions.addWidget(self.backtest_button)
        actions.addWidget(self.create_button)
        right = QVBoxLayout()
        right.addWidget(self.keypads, 1)
        right.addWidget(self.form_error)
        right.addLayout(actions)

        self.body_layout = layout = QHBoxLayout(self.body)
        layout.addLayout(left, 1)
        layout.addWidget(separator(vertical=True))
        layout.addLayout(right, 0)

        self._ticker_timer = QTimer(self)
        self._ticker_timer.setSingleShot(True)
        self._ticker_timer.setInterval(TICKER_CHECK_DELAY_MS)
        self._ticker_timer.timeout.connect(self._start_ticker_check)

        # The backtest panel covers this dialog (it is its child): BACK uncovers the untouched form.
        self._backtest_run: _BacktestRun | None = None
        self._backtest_sessions = DEFAULT_SESSIONS
        self.backtest_view = BacktestView(self, metrics)
        self.backtest_view.cancel_requested.connect(self.close_backtest)
        self.backtest_view.back_requested.connect(self.close_backtest)
        self.backtest_view.create_requested.connect(self._create_from_backtest)
        self.backtest_view.period_chosen.connect(lambda n: self.backtest(n))
        self.apply_metrics(metrics)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Keypads keep full-size keys; the form takes the rest of the width."""
        super().apply_metrics(metrics)
        self.letters.apply_metrics(metrics)
        self.numbers.apply_metrics(metrics)
        width = self.letters.minimum_width(metrics)
        self.keypads.setFixedWidth(width)
        self.form_error.setFixedWidth(width)
        self.body_layout.setContentsMargins(metrics.pad_px, metrics.pad_px, metrics.pad_px, metrics.pad_px)
        self.backtest_view.apply_metrics(metrics)

    # -- opening ---------------------------------------------------------------------------------

    async def run(self) -> int | None:
        """Open with fresh algorithms and cash; the new instance id once created, None if cancelled."""
        self._reset()
        result = self.new_result()
        self.open_overlay()
        self._tasks.start(self._load(), name="loading algorithms")
        try:
            return await result
        finally:
            self._ticker_timer.stop()
            self.close_backtest()
            self._tasks.cancel_all()
            self.hide()

    def cancel(self) -> None:
        """Close without creating anything."""
        self.settle(None)

    def _reset(self) -> None:
        self._selected = None
        self._ticker_checked = None
        self._ticker_generation += 1
        self.ticker.set_text("")
        self.ticker.set_note("")
        self.capital.set_text("")
        self.capital.set_note("")
        self.form_error.setText("")
        self._set_params(None)
        self._activate(None)
        self._set_busy(False)
        self.close_backtest()
        self._backtest_sessions = DEFAULT_SESSIONS

    async def _load(self) -> None:
        try:
            algorithms, cash = await asyncio.gather(self._calls.available_algorithms(),
                                                    self._calls.available_cash())
        except Exception as exc:  # noqa: BLE001
            self.algorithm_note.setText(f"Cannot list algorithms: {error_text(exc)}")
            return
        self._available = cash
        self.capital.caption.setText("CAPITAL   available " + (format_money(cash) if cash is not None
                                                               else "unknown (broker unreachable)"))
        self.set_algorithms(algorithms)

    def set_algorithms(self, algorithms: tuple[AlgorithmInfo, ...] | list[AlgorithmInfo]) -> None:
        """List ``algorithms``: usable ones selectable, broken ones greyed with their error."""
        for btn in list(self.algorithm_buttons.values()):
            self.algorithm_group.removeButton(btn)
            self._algo_box.removeWidget(btn)
            btn.deleteLater()
        self.algorithm_buttons.clear()
        self._algorithms = list(algorithms)
        for info in self._algorithms:
            if info.ok:
                btn = ChoiceButton(info.name, info.description or info.algorithm_type)
            else:
                where = info.path.name if info.path else info.algorithm_type
                btn = ChoiceButton(f"{where}  (cannot load)", info.error or "")
            btn.setObjectName(f"algo_{info.algorithm_type}")
            btn.setEnabled(info.ok)
            btn.clicked.connect(lambda _=False, i=info: self.select_algorithm(i.algorithm_type))
            self.algorithm_group.addButton(btn)
            self._algo_box.addWidget(btn)
            self.algorithm_buttons[info.algorithm_type] = btn
        usable = [i for i in self._algorithms if i.ok]
        broken = len(self._algorithms) - len(usable)
        self.algorithm_note.setText(
            "No algorithm files found." if not self._algorithms else
            f"{broken} file(s) cannot be loaded (greyed out)." if broken else "")
        self.algorithm_note.setVisible(bool(self.algorithm_note.text()))

    def select_algorithm(self, algorithm_type: str) -> None:
        """Choose an algorithm (a usable one) and show its parameters with their defaults."""
        info = next((i for i in self._algorithms if i.algorithm_type == algorithm_type and i.ok), None)
        if info is None:
            return
        self._selected = info
        self.algorithm_buttons[algorithm_type].setChecked(True)
        self.form_error.setText("")
        self._set_params(info)

    @property
    def selected_algorithm(self) -> str | None:
        """The chosen algorithm type."""
        return self._selected.algorithm_type if self._selected else None

    def _set_params(self, info: AlgorithmInfo | None) -> None:
        for field in self.param_fields.values():
            self._params_box.removeWidget(field)
            field.deleteLater()
        if self._active is not None and self._active.key.startswith("param:"):
            self._activate(None)
        self.param_fields = {}
        params = dict(info.parameters) if info else {}
        self.params_caption.setText("PARAMETERS" if params else "PARAMETERS  (none)")
        for name, param in params.items():
            field = self._param_field(name, param)
            self._params_box.addWidget(field)
            self.param_fields[name] = field

    def _param_field(self, name: str, param: Param) -> Field:
        if param.type is bool:
            kind, text = TOGGLE, "true" if param.default else "false"
        elif param.choices:
            kind, text = CHOICE, str(param.default)
        elif param.type in (int, float):
            kind, text = NUMBER, str(param.default)
        else:
            kind, text = LETTERS, str(param.default)
        field = Field(f"param:{name}", name.upper(), kind, text, help_text=param.help,
                      choices=tuple(param.choices or ()))
        field.box.clicked.connect(lambda _=False, f=field: self._tap_param(f))
        return field

    def _tap_param(self, field: Field) -> None:
        if field.kind == TOGGLE:
            field.set_text("false" if field.text == "true" else "true")
        elif field.kind == CHOICE:
            options = [str(c) for c in field.choices]
            at = options.index(field.text) if field.text in options else -1
            field.set_text(options[(at + 1) % len(options)])
        else:
            self._activate(field)
            return
        field.set_note("")

    # -- typing ----------------------------------------------------------------------------------

    def _activate(self, field: Field | None) -> None:
        if self._active is not None and self._active is not field:
            self._active.set_active(False)
        self._active = field
        if field is None:
            self.keypads.setCurrentIndex(0)
            return
        field.set_active(True)
        self.keypads.setCurrentWidget(self.letters if field.kind == LETTERS else self.numbers)
        self.form_scroll.ensureWidgetVisible(field)

    def field(self, key: str) -> Field:
        """``"ticker"``, ``"capital"`` or ``"param:<name>"``."""
        if key == "ticker":
            return self.ticker
        if key == "capital":
            return self.capital
        return self.param_fields[key.removeprefix("param:")]

    def type_into(self, key: str, text: str) -> None:
        """Tap ``key``'s field and press each character of ``text`` on its keypad (as a finger would)."""
        field = self.field(key)
        field.box.click()
        pad = self.letters if field.kind == LETTERS else self.numbers
        for char in text:
            pad.buttons[char].click()

    def _key(self, key: str) -> None:
        field = self._active
        if field is None:
            return
        max_len = 10 if field is self.ticker else 16
        field.set_text(edit_text(field.text, key, max_len=max_len))
        if field is self.ticker:
            self._ticker_edited()
        elif field is self.capital:
            self._check_capital(quiet_empty=True)
        else:
            self._check_param(field)

    # -- checks ----------------------------------------------------------------------------------

    def _ticker_edited(self) -> None:
        self._ticker_generation += 1
        self._ticker_checked = None
        self.ticker.set_note("")
        if self.ticker.text.strip():
            self._ticker_timer.start()
        else:
            self._ticker_timer.stop()

    def _start_ticker_check(self) -> None:
        self._tasks.start(self._check_ticker(), name="checking the ticker")

    async def _check_ticker(self) -> str | None:
        """The normalised ticker, or None (its note says why); stale answers are ignored."""
        text = self.ticker.text.strip()
        if not text:
            self.ticker.set_error("Enter a ticker symbol.")
            return None
        if self._ticker_checked and self._ticker_checked[0] == text:
            return self._ticker_checked[1]
        generation = self._ticker_generation
        self.ticker.set_note("checking…")
        try:
            normalised = await self._calls.validate_ticker(text)
        except Exception as exc:  # noqa: BLE001 - the message is the validation result
            if generation == self._ticker_generation:
                self.ticker.set_error(error_text(exc))
            return None
        if generation != self._ticker_generation:
            return None  # the user kept typing; a newer check will answer
        self._ticker_checked = (text, normalised)
        self.ticker.set_note(f"✓ {normalised}", theme.GREEN)
        return normalised

    def _check_capital(self, *, quiet_empty: bool = False) -> Decimal | None:
        text = self.capital.text.strip()
        if not text:
            if quiet_empty:
                self.capital.set_note("")
            else:
                self.capital.set_error("Enter the capital to give this card.")
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation:
            self.capital.set_error(f"'{text}' is not an amount.")
            return None
        if not amount.is_finite() or amount <= 0:
            self.capital.set_error("Capital must be more than $0.")
            return None
        if amount != amount.quantize(Decimal("0.01")):
            self.capital.set_error("Capital can have at most two decimals (cents).")
            return None
        if self._available is not None and amount > self._available:
            self.capital.set_error(f"Only {format_money(self._available)} is available.")
            return None
        self.capital.set_note("")
        return amount

    def _check_param(self, field: Field) -> bool:
        if self._selected is None:
            return False
        name = field.key.removeprefix("param:")
        param = self._selected.parameters[name]
        try:
            param.coerce(field.text, name)
        except (ValueError, TypeError) as exc:
            field.set_error(str(exc))
            return False
        field.set_note("")
        return True

    def _show_form_error(self, text: str) -> None:
        self.form_error.setText(text)

    def _set_busy(self, busy: bool, text: str = "CREATING…") -> None:
        self._busy = busy
        self.create_button.setEnabled(not busy)
        self.backtest_button.setEnabled(not busy)
        self.create_button.setText(text if busy else "CREATE")

    async def _checked_inputs(self) -> tuple[str, str, Decimal, dict[str, str]] | None:
        """(ticker, algorithm type, capital, parameter texts) once every check passed, else None with
        the problems marked on the form."""
        self.form_error.setText("")
        problems = 0
        if self._selected is None:
            self.form_error.setText("Choose an algorithm.")
            problems += 1
        self._ticker_timer.stop()
        ticker = await self._check_ticker()
        problems += ticker is None
        capital = self._check_capital()
        problems += capital is None
        for field in self.param_fields.values():
            problems += not self._check_param(field)
        if problems:
            if not self.form_error.text():
                self.form_error.setText("Fix the fields marked in red.")
            bad = [f for f in (self.ticker, self.capital, *self.param_fields.values()) if f.has_error]
            if bad:
                self.form_scroll.ensureWidgetVisible(bad[0])
            return None
        params = {name: field.text for name, field in self.param_fields.items()}
        assert ticker is not None and capital is not None and self._selected is not None  # no problems above
        return ticker, self._selected.algorithm_type, capital, params

    # -- backtesting -----------------------------------------------------------------------------

    def backtest(self, sessions: int | None = None) -> None:
        """Check the form, then replay its inputs over the last ``sessions`` sessions (default: the
        period last chosen, 20 at first) on a worker thread, showing progress and then the outcome."""
        if not self._busy:
            self._tasks.start(self._backtest(sessions or self._backtest_sessions), name="running a backtest")

    def close_backtest(self) -> None:
        """Cancel the running backtest, if any, and uncover the form as it was."""
        run, self._backtest_run = self._backtest_run, None
        if run is not None:
            run.drop()
        self.backtest_view.hide()

    @property
    def backtest_handle(self) -> Any:
        """The handle of the backtest shown or running (None before the engine answered)."""
        return self._backtest_run.handle if self._backtest_run else None

    @property
    def backtest_running(self) -> bool:
        """True while a backtest this dialog started has not been shown or dropped."""
        return self._backtest_run is not None and self.backtest_view.page == 0 and self.backtest_view.isVisible()

    async def _backtest(self, sessions: int) -> None:
        self._set_busy(True, "CHECKING…")
        try:
            inputs = await self._checked_inputs()
        finally:
            self._set_busy(False)
        if inputs is None:
            return
        ticker, algorithm_type, capital, params = inputs
        if self._backtest_run is not None:
            self._backtest_run.drop()
        run = self._backtest_run = _BacktestRun(sessions)
        self._backtest_sessions = sessions
        view = self.backtest_view
        name = self._selected.name if self._selected else algorithm_type
        heading = f"BACKTEST  {ticker} · {name}"
        view.show_running(heading, f"{format_money(capital)} · the last {sessions} sessions", sessions)
        loop = asyncio.get_running_loop()

        def progress(fraction: float) -> None:  # on the backtest's worker thread: hop to the UI loop
            run.fraction = fraction
            now = time.monotonic()
            if run.dropped.is_set() or now - run.hopped_at < PROGRESS_HOP_S:
                return
            run.hopped_at = now
            loop.call_soon_threadsafe(self._backtest_progress, run)

        # Shielded: if this task is cancelled while the engine is starting the job, the handle still
        # arrives, and ``drop`` cancels it instead of leaving the replay running for nobody.
        starting = asyncio.ensure_future(self._calls.start_backtest(ticker, algorithm_type, capital, params,
                                                                    sessions, progress))

        def started(future: asyncio.Future) -> None:
            if not future.cancelled() and future.exception() is None:
                run.handle = future.result()
                if run.dropped.is_set():
                    run.handle.cancel()

        starting.add_done_callback(started)
        try:
            handle = await asyncio.shield(starting)
        except asyncio.CancelledError:
            run.drop()
            raise
        except Exception as exc:  # noqa: BLE001 - refused before anything ran: back to the form, say why
            if self._backtest_run is run:
                self.close_backtest()
                self.form_error.setText(error_text(exc))
            return
        run.handle = handle
        if run.dropped.is_set():
            handle.cancel()
            return
        request = handle.request
        view.set_detail(f"{format_money(capital)} · the last {sessions} sessions, "
                        f"{request.start:%a %d %b %Y} to {request.end:%a %d %b %Y}")
        try:
            result = await asyncio.wrap_future(handle.future)
        except asyncio.CancelledError:
            run.drop()
            raise
        except BacktestCancelled:
            return
        except BacktestError as exc:
            if self._backtest_run is run:
                view.show_error(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug in the replay: shown, not raised into Qt
            if self._backtest_run is run:
                view.show_error(error_text(exc))
            return
        if self._backtest_run is run and not run.dropped.is_set():
            view.show_result(result)

    def _backtest_progress(self, run: _BacktestRun) -> None:
        if run is self._backtest_run and not run.dropped.is_set() and self.backtest_view.page == 0:
            self.backtest_view.set_progress(run.fraction)

    def _create_from_backtest(self) -> None:
        """CREATE CARD on the results: the normal add flow with the same (untouched) inputs."""
        self.close_backtest()
        self.submit()

    # -- creating --------------------------------------------------------------------------------

    def submit(self) -> None:
        """Run every check, then create the card (in the background)."""
        if not self._busy:
            self._tasks.start(self._submit(), name="creating the card")

    async def _submit(self) -> None:
        self._set_busy(True)
        try:
            inputs = await self._checked_inputs()
            if inputs is None:
                return
            ticker, algorithm_type, capital, params = inputs
            try:
                instance_id = await self._calls.create_instance(ticker, algorithm_type, capital, params)
            except Exception as exc:  # noqa: BLE001 - nothing was created; say why
                self.form_error.setText(error_text(exc))
                return
            self.settle(int(instance_id))
        finally:
            self._set_busy(False)

    @property
    def busy(self) -> bool:
        """True while a create (or its checks) is in flight."""
        return self._busy

    @property
    def error_text(self) -> str:
        """The form-level error line."""
        return self.form_error.text()

    @property
    def available(self) -> Decimal | None:
        """Available cash as loaded when the dialog opened."""
        return self._available

    @property
    def algorithms_loaded(self) -> bool:
        """True once the algorithm list arrived."""
        return bool(self._algorithms)

    def note_of(self, key: str) -> str:
        """The note under a field (tests and accessibility)."""
        return self.field(key).note_text

    def caption_of(self, key: str) -> QLabel:
        """The caption label of a field."""
        return self.field(key).caption
