"""The kiosk window: header, halt banner, card strip and notice line, plus the PIN/add/detail/settings panels.

It updates only from the engine's signals and does every user action as an asyncio task through the
engine client, so the UI thread never waits on SQL or the network, and a failure becomes a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from PySide6.QtCore import QPoint, QRect, QSize, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

from app.engine.events import AccountSummary, CardSnapshot, CardsUpdate, MarketStatus, Notice, StreamStatus
from app.engine.system.maintenance import STOPPED_PREFIX
from app.ui import theme
from app.ui.add_dialog import AddDialog
from app.ui.card_strip import CardStrip
from app.ui.detail_view import DetailView
from app.ui.engine_calls import EngineCalls
from app.ui.header import Header, stream_text
from app.ui.history_view import HistoryView
from app.ui.idle_lock import IdleLock
from app.ui.notice_bar import NoticeBar
from app.ui.pin_dialog import PinDialog
from app.ui.screen_sleep import ScreenSleep, platform_commands
from app.ui.settings_view import SettingsView, lock_text, sleep_text
from app.ui.tasks import TaskRunner, error_text
from app.ui.widgets import separator

WINDOWED_SIZE = QSize(1024, 600)
# Room a compositor's panel and Qt's own window decorations take on Wayland (weston: a 32 px panel,
# a 30 px title bar and 3 px borders), which the client cannot see before it is shown.
WAYLAND_FRAME_ROOM = QSize(64, 96)
HALT_TEXT = "TRADING HALTED — no orders are sent until RESUME"


class KioskWindow(QWidget):
    """The whole kiosk. ``service``/``client``/``signals`` may be None for a display-only window (screenshots).

    ``cards``, ``market``, ``stream`` and ``account`` are the host's last known values, shown at once.
    ``screen_sleep_s``: off-hours idle seconds before the screen sleeps; ``idle_lock_s``: idle seconds
    before every open panel (PIN, settings, add, detail) closes back to the wall. 0: never.
    """

    def __init__(self, service: Any, client: Any, signals: Any, *, windowed: bool = False,
                 cards: Iterable[CardSnapshot] = (), market: MarketStatus | None = None,
                 stream: StreamStatus | None = None, account: AccountSummary | None = None,
                 screen_sleep_s: float = 0, idle_lock_s: float = 0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("kioskWindow")
        self.setWindowTitle("AutoTrader")
        self.windowed = windowed
        if not windowed:
            self.setWindowFlag(Qt.WindowType.FramelessWindowHint, True)
        self.calls = EngineCalls(service, client)
        self.tasks = TaskRunner(self.show_error)
        self._snapshots: dict[int, CardSnapshot] = {}
        self._stream: StreamStatus | None = None
        self._broker_error: str | None = None
        self._stopped: str | None = None  # "trading stopped: <reason>" (data disk), until a restart
        self._flow_busy = False
        self._stopping: int | None = None
        self._screen: QScreen | None = None  # the screen a presented window follows
        self._watching = False

        self.metrics = theme.Metrics.for_size(QSize(800, 480))
        theme.install_palette()
        self.setPalette(theme.base_palette())
        self.setAutoFillBackground(True)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)

        mode = account.mode if account is not None else self.calls.mode
        self.header = Header(mode)
        self.halt_banner = QLabel(HALT_TEXT)
        self.halt_banner.setObjectName("haltBanner")
        self.halt_banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.halt_banner.hide()
        self.strip = CardStrip(self.metrics)
        self.notice_bar = NoticeBar()

        self._layout = layout = QVBoxLayout(self)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(separator())
        layout.addWidget(self.halt_banner)
        layout.addWidget(self.strip, 1)
        layout.addWidget(separator())
        layout.addWidget(self.notice_bar)

        self.detail = DetailView(self, self.metrics)
        self.add_dialog = AddDialog(self, self.metrics, self.calls)
        self.settings = SettingsView(self, self.metrics, mode)
        self.history = HistoryView(self, self.metrics)
        self.exit_request: str | None = None  # 'quit' or 'restart' once asked for from the settings
        self._screen_sleep_s = screen_sleep_s
        self._idle_lock_s = idle_lock_s
        self.pin = PinDialog(self, self.metrics, verify=self.calls.verify_pin, change=self.calls.change_pin)

        self.header.halt_requested.connect(lambda: self._flow(self._halt, "halting"))
        self.header.resume_requested.connect(lambda: self._flow(self._resume_trading, "resuming trading"))
        self.header.settings_requested.connect(lambda: self._flow(self._open_settings, "opening settings"))
        self.settings.change_pin_requested.connect(lambda: self._flow(self._change_pin, "changing the PIN"))
        self.settings.history_requested.connect(self.open_history)
        self.settings.restart_requested.connect(lambda: self.request_exit("restart"))
        self.settings.quit_requested.connect(lambda: self.request_exit("quit"))
        self.strip.add_requested.connect(lambda: self._flow(self._add, "adding a card"))
        self.strip.card_tapped.connect(self.open_detail)
        self.detail.stop_requested.connect(lambda i: self._flow(lambda: self._authorise_stop(i), "stopping"))
        self.detail.stop_chosen.connect(lambda i, sell: self._flow(lambda: self._stop(i, sell), "stopping"))
        self.detail.resume_requested.connect(lambda i: self._flow(lambda: self._resume_instance(i), "resuming"))

        if signals is not None:
            signals.cards_changed.connect(self.on_cards)
            signals.market_changed.connect(self.on_market)
            signals.stream_changed.connect(self.on_stream)
            signals.account_changed.connect(self.on_account)
            signals.notice.connect(self.on_notice)

        # Off-hours sleep (0: never, as in screenshots and tests that do not ask for it).
        self.screen_sleep: ScreenSleep | None = None
        if screen_sleep_s > 0:
            self.screen_sleep = ScreenSleep(self, delay_s=screen_sleep_s, now=self.header.now,
                                            commands=platform_commands())

        self.idle_lock = IdleLock(self.lock_panels, delay_s=idle_lock_s, parent=self)

        self._apply_metrics(self.metrics, force=True)
        self.on_cards(tuple(cards))
        self.on_market(market)
        self.on_stream(stream)
        if account is not None:
            self.on_account(account)

    # -- showing ---------------------------------------------------------------------------------

    def present(self) -> None:
        """Cover the screen the window starts on (kiosk), or open a normal window inside it (``windowed``).

        Full screen is asked of the window manager *and* set as the geometry: on a bare X server there
        is no window manager to honour ``showFullScreen`` (measured: 533×155 on an 800×480 panel). The
        layout metrics come from that screen before the first frame, and again whenever the screen or
        its size changes, so no launch shows the 800×480 layout on a bigger panel.
        """
        screen = self.screen() or QGuiApplication.primaryScreen()
        if self.windowed:
            available = screen.availableGeometry()
            rect = QRect(QPoint(0, 0), WINDOWED_SIZE.boundedTo(available.size()))
            rect.moveCenter(available.center())
            self.setGeometry(rect)
            self._apply_metrics(theme.Metrics.for_size(rect.size()))
            if QGuiApplication.platformName().startswith("wayland") and not _fits(WINDOWED_SIZE + WAYLAND_FRAME_ROOM,
                                                                                   available.size()):
                # A Wayland client can neither place itself nor see the panel: only the compositor
                # knows the room left, and maximizing hands it the fitting (measured under weston:
                # 800×480 plus decorations overran an 800×480 output by 65 px).
                self.showMaximized()
            else:
                self.show()
                # A window manager frames the window some time after it is shown, and Qt gets no
                # event for it: look again once it has had time to.
                for delay_ms in (300, 1000, 3000):
                    QTimer.singleShot(delay_ms, self._keep_inside)
        else:
            self.setCursor(Qt.CursorShape.BlankCursor)  # a touch panel: no stray arrow on the wall
            self.setGeometry(screen.geometry())
            self._apply_metrics(theme.Metrics.for_size(screen.geometry().size()))
            self.showFullScreen()
        handle = self.windowHandle()
        if handle is not None and not self._watching:
            self._watching = True
            handle.screenChanged.connect(self._follow_screen)
            self._follow_screen(handle.screen())

    def _follow_screen(self, screen: QScreen | None) -> None:
        """Track the size of the screen the window is on (a panel re-plugged, a resolution change)."""
        if self._screen is not None:
            self._screen.geometryChanged.disconnect(self._fit_screen)
        self._screen = screen
        if screen is not None:
            screen.geometryChanged.connect(self._fit_screen)
            self._fit_screen()

    def _fit_screen(self, *_args) -> None:
        screen = self._screen
        if screen is None:
            return
        if self.windowed:
            self._keep_inside()
            self._apply_metrics(theme.Metrics.for_size(self.size()))
            return
        if self.geometry() != screen.geometry():
            self.setGeometry(screen.geometry())
        self._apply_metrics(theme.Metrics.for_size(screen.geometry().size()))

    def _keep_inside(self) -> None:
        """A window manager's frame (known only once it is drawn) must fit the screen too: shrink to fit."""
        screen = self._screen
        if screen is None or not self.isVisible():
            return
        available, frame = screen.availableGeometry(), self.frameGeometry()
        if available.contains(frame):
            return
        extra = frame.size() - self.size()
        size = self.size().boundedTo(available.size() - extra)
        self.resize(size)
        left = min(max(frame.left(), available.left()), available.right() + 1 - (size + extra).width())
        top = min(max(frame.top(), available.top()), available.bottom() + 1 - (size + extra).height())
        self.move(left, top)

    def moveEvent(self, event) -> None:  # noqa: N802
        super().moveEvent(event)
        if self.windowed:
            self._keep_inside()

    def resizeEvent(self, event) -> None:  # noqa: N802
        # A kiosk follows its screen (see _fit_screen): a window manager that briefly hands the
        # window another size must not switch the layout back and forth.
        if self.windowed or self._screen is None:
            self._apply_metrics(theme.Metrics.for_size(event.size()))
        if self.screen_sleep is not None:
            self.screen_sleep.overlay.setGeometry(self.rect())
        super().resizeEvent(event)

    def _apply_metrics(self, metrics: theme.Metrics, *, force: bool = False) -> None:
        if metrics == self.metrics and not force:
            return
        self.metrics = metrics
        self.setStyleSheet(theme.stylesheet(metrics))
        pad = metrics.pad_px
        self._layout.setContentsMargins(pad, pad // 2, pad, pad // 2)
        self.header.setContentsMargins(0, 0, 0, pad // 2)
        self.strip.apply_metrics(metrics)
        for overlay in (self.detail, self.add_dialog, self.settings, self.history, self.pin):
            overlay.apply_metrics(metrics)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.tasks.cancel_all()
        super().closeEvent(event)

    # -- engine signals --------------------------------------------------------------------------

    def on_cards(self, update: CardsUpdate | Iterable[CardSnapshot]) -> None:
        """cards_changed: the changed cards are updated in place, a slice per loop turn (a plain list
        is shown whole, at once); refresh the detail view if its card is among them."""
        if isinstance(update, CardsUpdate):
            self._snapshots = update.apply(self._snapshots)
            self.strip.apply(update)
        else:
            snapshots = tuple(update)
            self._snapshots = {s.instance_id: s for s in snapshots}
            self.strip.set_cards(snapshots)
        shown = self.detail.instance_id
        if shown is None or not self.detail.isVisible():
            return
        snap = self._snapshots.get(shown)
        if snap is None:
            self.detail.close_view()
            if shown != self._stopping:  # stopped elsewhere (CLI); our own stop reports its sentence
                self.notice_bar.show_message(f"Card #{shown} is no longer running.")
            return
        self.detail.show_snapshot(snap)
        if self.detail.needs_transactions:
            self.tasks.start(self._load_transactions(shown), name="loading transactions")

    def on_market(self, status: MarketStatus | None) -> None:
        """market_changed (also what lets the screen sleep or wakes it)."""
        self.header.set_market(status)
        if self.screen_sleep is not None:
            self.screen_sleep.set_market(status)

    def on_stream(self, status: StreamStatus | None) -> None:
        """stream_changed: header line; a new failure or reconnect also goes to the notice line with its reason."""
        previous, self._stream = self._stream, status
        self.header.set_stream(status)
        feed, color = stream_text(status)
        reason = f": {status.reason}" if status is not None and status.reason else ""
        self.settings.set_fact("feed", feed + reason, color)
        if status is None or (previous is not None and previous.state == status.state
                              and previous.reason == status.reason):
            return
        if status.state in ("failed", "reconnecting", "limited"):
            reason = f": {status.reason}" if status.reason else ""
            self.notice_bar.show_message(f"Live price feed {status.state}{reason}",
                                         "error" if status.state == "failed" else "refused")

    def on_account(self, account: AccountSummary | None) -> None:
        """account_changed: mode, P&L, cash, halt banner; a new broker error goes to the notice line."""
        self.header.set_account(account)
        self.halt_banner.setVisible(bool(account and account.halted) or self._stopped is not None)
        error = account.broker_error if account else None
        if error and error != self._broker_error:
            self.notice_bar.show_message(f"Broker unreachable: {error}", "error")
        self._broker_error = error

    def on_notice(self, notice: Notice) -> None:
        """notice: shown on the bottom line; "trading stopped" (nothing can be recorded) also holds the banner."""
        self.notice_bar.show_notice(notice)
        if notice.kind == "error" and notice.message.startswith(STOPPED_PREFIX):
            self._stopped = notice.message
            self.halt_banner.setText(notice.message.upper())
            self.halt_banner.show()

    def show_error(self, text: str) -> None:
        """Any failed action ends here: shown, never raised."""
        self.notice_bar.show_message(text, "error")

    # -- actions ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a PIN-protected action runs (further taps on actions are ignored)."""
        return self._flow_busy

    def _flow(self, action: Callable[[], Awaitable[Any]], name: str) -> None:
        if self._flow_busy:
            return

        async def run() -> None:
            self._flow_busy = True
            try:
                await action()
            finally:
                self._flow_busy = False

        self.tasks.start(run(), name=name)

    @property
    def panels_open(self) -> bool:
        """True while any panel covers the wall (PIN, settings, add, detail)."""
        return any(p.isVisible() for p in (self.pin, self.settings, self.history, self.add_dialog, self.detail))

    def lock_panels(self) -> None:
        """Back to the wall: cancel a PIN entry and close every panel (the idle lock)."""
        if not self.panels_open:
            return
        if self.pin.isVisible():
            self.pin.cancel()
        if self.add_dialog.isVisible():
            self.add_dialog.cancel()
        if self.history.isVisible():
            self.history.close_overlay()
        if self.settings.isVisible():
            self.settings.close_overlay()
        if self.detail.isVisible():
            self.detail.close_view()
        self.notice_bar.show_message("Back to the wall: nobody touched the screen for a while.")

    async def _halt(self) -> None:
        # One tap, no PIN: stopping trading must be quicker than anything that could go wrong.
        # Resuming is what needs the PIN.
        await self.calls.halt()
        self.notice_bar.show_message("Trading halted: no new orders will be sent. RESUME needs the PIN.")

    async def _resume_trading(self) -> None:
        if await self.pin.authorise("resume trading"):
            await self.calls.resume_trading()
            self.notice_bar.show_message("Trading resumed.")

    async def _open_settings(self) -> None:
        if await self.pin.authorise("open settings"):
            self.settings.set_message("")
            self.settings.set_fact("sleep", sleep_text(self._screen_sleep_s))
            self.settings.set_fact("lock", lock_text(self._idle_lock_s))
            self.settings.open_overlay()
            try:
                self.settings.set_info(await self.calls.wall_info())
            except Exception as exc:  # noqa: BLE001 - the panel works without the facts
                self.settings.set_message(f"Cannot read the engine's facts: {error_text(exc)}")

    def open_history(self) -> None:
        """The stopped cards and their realised P&L (over the settings panel)."""
        self.history.open_loading()

        async def load() -> None:
            try:
                cards = await self.calls.history()
            except Exception as exc:  # noqa: BLE001
                self.history.set_error(error_text(exc))
                return
            self.history.set_cards(cards)

        self.tasks.start(load(), name="loading the history")

    def request_exit(self, what: str) -> None:
        """Quit the kiosk, or restart it ('quit' / 'restart'); the settings panel asked, after the PIN.

        ``autotrader run`` reads :attr:`exit_request` once the loop ends: a restart starts the same
        command again in this process, a quit exits with a code ``supervise`` does not restart.
        """
        self.exit_request = what
        self.notice_bar.show_message("Restarting…" if what == "restart" else "Quitting…")
        app = QApplication.instance()
        if app is not None:
            QTimer.singleShot(0, app.quit)

    async def _change_pin(self) -> None:
        if await self.pin.choose_new_pin():
            self.settings.set_message("PIN changed.")

    async def _add(self) -> None:
        if not await self.pin.authorise("add a card"):
            return
        instance_id = await self.add_dialog.run()
        if instance_id is not None:
            self.notice_bar.show_message(f"Card #{instance_id} created.")

    def open_detail(self, instance_id: int) -> None:
        """Show a card's details and start loading its transactions."""
        snap = self._snapshots.get(instance_id)
        if snap is None:
            return
        self.detail.show_snapshot(snap)
        self.detail.open_overlay()
        self.tasks.start(self._load_transactions(instance_id), name="loading transactions")

    async def _load_transactions(self, instance_id: int) -> None:
        try:
            transactions = await self.calls.transactions(instance_id)
        except Exception as exc:  # noqa: BLE001
            if self.detail.instance_id == instance_id:
                self.detail.set_transactions_error(error_text(exc))
            return
        if self.detail.instance_id == instance_id:
            self.detail.set_transactions(transactions)
        try:
            chart = await self.calls.card_chart(instance_id)
        except Exception:  # noqa: BLE001 - the figures and the table stand without the chart
            return
        if self.detail.instance_id == instance_id:
            self.detail.set_chart(chart)
        try:
            check = await self.calls.day_check(instance_id)
        except Exception:  # noqa: BLE001 - a report only
            return
        if self.detail.instance_id == instance_id:
            self.detail.set_day_check(check)

    async def _authorise_stop(self, instance_id: int) -> None:
        if await self.pin.authorise("stop this card") and self.detail.instance_id == instance_id:
            self.detail.show_stop_choice()

    async def _stop(self, instance_id: int, liquidate: bool) -> None:
        self.detail.setEnabled(False)
        self._stopping = instance_id
        try:
            sentence = await self.calls.stop_instance(instance_id, liquidate)
        except Exception as exc:  # noqa: BLE001 - the card keeps running; say why
            self.detail.show_info()
            self.show_error(error_text(exc))
            return
        finally:
            self.detail.setEnabled(True)
            self._stopping = None
        if self.detail.instance_id == instance_id:
            self.detail.close_view()
        self.notice_bar.show_message(sentence)

    async def _resume_instance(self, instance_id: int) -> None:
        if await self.pin.authorise("resume this card"):
            await self.calls.resume_instance(instance_id)
            self.notice_bar.show_message(f"Card #{instance_id} resumed.")


def _fits(size: QSize, room: QSize) -> bool:
    return size.width() <= room.width() and size.height() <= room.height()
