"""Alerts off the wall through Apprise (ntfy, Telegram, e-mail, webhooks…), sent off the engine thread.

``send`` only queues: one worker thread talks to the network, so a slow or dead target never
delays a trading minute. Each alert has a key ("halt", "fault:3", "feed" …); a key sends at most once
per ``per_key_s``, and all keys together at most ``burst`` alerts per ``window_s`` — a flapping feed
or a card that faults every minute cannot flood a phone. What is dropped is counted.

The URLs hold secrets (tokens, passwords, topics): they are registered for redaction in every log
record, Apprise's own logger is kept quiet, and messages and ``describe`` name targets only by
their scheme.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

from app.engine.system.logging_setup import register_secret

log = logging.getLogger("autotrader.engine.notify")

PER_KEY_S = 600.0
BURST = 10
WINDOW_S = 600.0
_QUEUE_MAX = 100
_STOP = object()


@dataclass(frozen=True, slots=True)
class Alert:
    """One message for the person away from the wall."""

    key: str
    title: str
    body: str


def url_secrets(url: str) -> list[str]:
    """The parts of an Apprise URL that may be secret: the URL, its user and password, its host and
    path segments (tokens, topics and chat ids live there)."""
    found = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    after_scheme = url.partition("://")[2]
    found.append(after_scheme)
    for value in (parts.username, parts.password, parts.hostname, parts.query):
        if value:
            found.extend({value, unquote(value)})
    for segment in parts.path.split("/"):
        if segment:
            found.extend({segment, unquote(segment)})
    # Loopback and bare ports are not secrets, and redacting them would blank every log line naming them.
    return [s for s in found if s not in ("127.0.0.1", "localhost", "::1") and not s.isdigit()]


def scheme_of(url: str) -> str:
    """``json`` for ``json://…`` (what may be said about a target)."""
    return url.partition("://")[0].lower() or "?"


class Notifier:
    """Queues alerts and sends them to every configured Apprise URL on its own thread."""

    def __init__(self, urls: Sequence[str], *, per_key_s: float = PER_KEY_S, burst: int = BURST,
                 window_s: float = WINDOW_S, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._urls = tuple(urls)
        for url in self._urls:
            for secret in url_secrets(url):
                register_secret(secret)
        self._per_key_s = per_key_s
        self._burst = burst
        self._window_s = window_s
        self._monotonic = monotonic
        self._last_by_key: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_sent: datetime | None = None
        self.last_error: str | None = None
        self.unknown: list[str] = []  # schemes Apprise did not accept
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_MAX)
        self._thread: threading.Thread | None = None
        if self._urls:
            logging.getLogger("apprise").setLevel(logging.CRITICAL)  # it may print a URL on failure
            self._thread = threading.Thread(target=self._work, name="alerts", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        """True when at least one URL is configured."""
        return bool(self._urls)

    def describe(self) -> str:
        """One line for the settings panel and ``status``: targets by scheme, last sent, problems."""
        if not self._urls:
            return "off (set AUTOTRADER_NOTIFY to Apprise URLs)"
        schemes = ", ".join(sorted({scheme_of(u) for u in self._urls}))
        parts = [f"{len(self._urls)} target(s): {schemes}"]
        if self.last_sent is not None:
            parts.append(f"last sent {self.last_sent.astimezone():%a %H:%M}")
        if self.last_error:
            parts.append(f"last failure: {self.last_error}")
        if self.unknown:
            parts.append(f"not understood: {', '.join(self.unknown)}")
        if self.dropped:
            parts.append(f"{self.dropped} held back (rate limit)")
        return " · ".join(parts)

    def send(self, alert: Alert) -> bool:
        """Queue ``alert`` unless its key or the burst limit holds it back; never blocks."""
        if not self._urls:
            return False
        now = self._monotonic()
        with self._lock:
            last = self._last_by_key.get(alert.key)
            while self._recent and now - self._recent[0] >= self._window_s:
                self._recent.popleft()
            if (last is not None and now - last < self._per_key_s) or len(self._recent) >= self._burst:
                self.dropped += 1
                return False
            self._last_by_key[alert.key] = now
            self._recent.append(now)
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False
        return True

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alert was tried (tests, shutdown); True if it got there."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks

    def close(self) -> None:
        """Stop the worker after what is queued (bounded: a dead target does not hold up a quit)."""
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass
        self._thread.join(timeout=5)
        self._thread = None

    def _work(self) -> None:
        import apprise  # imported here: the first alert, not the start-up, pays for it

        targets = apprise.Apprise()
        for url in self._urls:
            if not targets.add(url):
                self.unknown.append(scheme_of(url))
                log.warning("AUTOTRADER_NOTIFY: a %s:// URL is not one Apprise understands; ignored",
                            scheme_of(url))
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._deliver(targets, item)
            finally:
                self._queue.task_done()

    def _deliver(self, targets, alert: Alert) -> None:
        # One target at a time, so a dead one is named (by scheme) and does not hide the others' success.
        delivered, failed = 0, []
        for target in list(targets):
            try:
                ok = bool(target.notify(body=alert.body, title=alert.title))
            except Exception:  # noqa: BLE001 - an alert must never take the engine down
                ok = False
            if ok:
                delivered += 1
            else:
                failed.append(f"{_protocol(target)}://")
        total = delivered + len(failed)
        if delivered:
            self.sent += 1
            self.last_sent = datetime.now(timezone.utc)
            log.info("alert sent: %s (%d of %d target(s))", alert.title, delivered, total)
        if failed or not total:
            self.failed += 1
            self.last_error = f"{', '.join(failed) or 'no target'} did not take the last alert"
            log.warning("alert %r not delivered to %s", alert.key, ", ".join(failed) or "any target")
        else:
            self.last_error = None


def _protocol(target) -> str:
    """An Apprise target's scheme (plugins give a string or a tuple of them)."""
    protocol = getattr(target, "protocol", None)
    if isinstance(protocol, (tuple, list)):
        protocol = protocol[0] if protocol else None
    return str(protocol) if protocol else "?"
