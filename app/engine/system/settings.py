"""Settings from the environment and ``.env`` files: Alpaca keys, paper/live, feed, data folder.

Precedence: real environment variables, then ``./.env`` (working directory), then
``.env`` in the user config folder (platformdirs, appname ``autotrader``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlparse

import platformdirs
from dotenv import dotenv_values

APP_NAME = "autotrader"
MODES = ("sim", "paper", "live")
FEEDS = ("iex", "sip")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class SettingsError(ValueError):
    """A setting is missing or malformed. The message is one line naming the setting and what it accepts."""


def default_data_root() -> Path:
    """The per-user data folder used when AUTOTRADER_DATA_DIR is not set."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_dotenv_files() -> list[Path]:
    """``.env`` files read by default, highest precedence first."""
    return [Path.cwd() / ".env", Path(platformdirs.user_config_dir(APP_NAME)) / ".env"]


def _check_url(name: str, value: str | None, schemes: tuple[str, ...]) -> None:
    if value is None:
        return
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.netloc:
        accepted = " or ".join(f"{s}://" for s in schemes)
        raise SettingsError(f"{name} must be a URL starting with {accepted} (got {value!r})")


@dataclass(frozen=True, kw_only=True, repr=False)
class Settings:
    """Everything the app reads from its environment. Never shows the key or secret in repr/str."""

    api_key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    paper: bool = True
    feed: str = "iex"
    data_root: Path = field(default_factory=default_data_root)
    trading_url: str | None = None
    data_url: str | None = None
    stream_url: str | None = None
    algorithm_dirs: tuple[Path, ...] = ()
    sim_forced: bool = False  # --sim given: keys were dropped even if configured
    screen_sleep_min: int = 10  # off-hours minutes without a touch before the wall's screen sleeps; 0: never
    idle_lock_s: int = 60  # seconds without a touch before a PIN-opened panel closes back to the wall; 0: never
    # Alerts off the wall (Apprise URLs: secrets; never in repr, logs or on screen).
    notify_urls: tuple[str, ...] = field(default=(), repr=False)
    notify_feed_min: int = 10  # alert when the live feed has been down this many minutes
    notify_fills: bool = False  # also alert on every fill
    card_loss_limit: Decimal | None = None  # alert when a card's day P&L falls to −this many dollars
    account_loss_limit: Decimal | None = None  # the same for the sum of the cards' day P&L
    sim_bars_keep_days: int = 365  # simulated bars older than this are pruned daily (real bars never)
    worker_memory_mb: int = 512  # address-space limit of each algorithm worker process
    evening_check: bool = True  # after each close, replay every card's day and compare it with live
    start_timeout_s: int = 120  # how long the kiosk waits for the engine to open, reconcile and warm up

    def __post_init__(self) -> None:
        for name in ("api_key", "secret"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        if (self.api_key is None) != (self.secret is None):
            missing = "ALPACA_SECRET" if self.secret is None else "ALPACA_API_KEY"
            present = "ALPACA_API_KEY" if self.secret is None else "ALPACA_SECRET"
            raise SettingsError(f"{missing} is not set but {present} is: set both, or neither for sim mode")
        if self.feed not in FEEDS:
            raise SettingsError(f"ALPACA_FEED must be 'iex' or 'sip' (got {self.feed!r})")
        if not isinstance(self.paper, bool):
            raise SettingsError(f"ALPACA_PAPER must be true or false (got {self.paper!r})")
        _check_url("ALPACA_TRADING_URL", self.trading_url, ("http", "https"))
        _check_url("ALPACA_DATA_URL", self.data_url, ("http", "https"))
        _check_url("ALPACA_STREAM_URL", self.stream_url, ("ws", "wss"))
        if isinstance(self.screen_sleep_min, bool) or not isinstance(self.screen_sleep_min, int) \
                or not 0 <= self.screen_sleep_min <= 1440:
            raise SettingsError("AUTOTRADER_SCREEN_SLEEP_MIN must be whole minutes from 0 (never) to 1440 "
                                f"(got {self.screen_sleep_min!r})")
        if isinstance(self.idle_lock_s, bool) or not isinstance(self.idle_lock_s, int) \
                or not (self.idle_lock_s == 0 or 10 <= self.idle_lock_s <= 3600):
            raise SettingsError("AUTOTRADER_IDLE_LOCK_S must be whole seconds from 10 to 3600, or 0 (never) "
                                f"(got {self.idle_lock_s!r})")
        if isinstance(self.notify_feed_min, bool) or not isinstance(self.notify_feed_min, int) \
                or not 1 <= self.notify_feed_min <= 1440:
            raise SettingsError("AUTOTRADER_NOTIFY_FEED_MIN must be whole minutes from 1 to 1440 "
                                f"(got {self.notify_feed_min!r})")
        for index, url in enumerate(self.notify_urls, 1):
            scheme, sep, rest = str(url).partition("://")
            if not sep or not scheme.replace("+", "").isalnum() or not rest:
                # The entry itself is not repeated: it may hold a token.
                raise SettingsError(f"AUTOTRADER_NOTIFY entry {index} is not an Apprise URL "
                                    "(scheme://…, e.g. ntfy://topic or json://host:port)")
        object.__setattr__(self, "notify_urls", tuple(self.notify_urls))
        if isinstance(self.sim_bars_keep_days, bool) or not isinstance(self.sim_bars_keep_days, int) \
                or not 1 <= self.sim_bars_keep_days <= 36500:
            raise SettingsError("AUTOTRADER_SIM_BARS_KEEP_DAYS must be whole days from 1 to 36500 "
                                f"(got {self.sim_bars_keep_days!r})")
        if isinstance(self.start_timeout_s, bool) or not isinstance(self.start_timeout_s, int) \
                or not 10 <= self.start_timeout_s <= 86_400:
            raise SettingsError("AUTOTRADER_START_TIMEOUT_S must be whole seconds from 10 to 86400 "
                                f"(got {self.start_timeout_s!r})")
        if isinstance(self.worker_memory_mb, bool) or not isinstance(self.worker_memory_mb, int) \
                or not 64 <= self.worker_memory_mb <= 1_000_000:
            raise SettingsError("AUTOTRADER_WORKER_MEMORY_MB must be a whole number of MB from 64 "
                                f"(got {self.worker_memory_mb!r})")
        object.__setattr__(self, "data_root", Path(self.data_root))
        object.__setattr__(self, "algorithm_dirs", tuple(Path(p) for p in self.algorithm_dirs))

    @property
    def has_keys(self) -> bool:
        """True when both Alpaca keys are configured."""
        return self.api_key is not None and self.secret is not None

    @property
    def mode(self) -> str:
        """'sim' without keys (or when forced), else 'paper' or 'live'."""
        if self.sim_forced or not self.has_keys:
            return "sim"
        return "paper" if self.paper else "live"

    def data_dir(self, mode: str | None = None) -> Path:
        """``data_root/<mode>``: sim, paper and live records never share a folder. Not created here."""
        mode = self.mode if mode is None else mode
        if mode not in MODES:
            raise SettingsError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        return self.data_root / mode

    @property
    def log_dir(self) -> Path:
        """``data_dir()/logs`` for the current mode."""
        return self.data_dir() / "logs"

    def __repr__(self) -> str:
        return (
            f"Settings(mode={self.mode!r}, api_key={'set' if self.api_key else 'unset'}, "
            f"secret={'set' if self.secret else 'unset'}, paper={self.paper}, feed={self.feed!r}, "
            f"data_root={str(self.data_root)!r}, trading_url={self.trading_url!r}, "
            f"data_url={self.data_url!r}, stream_url={self.stream_url!r}, "
            f"algorithm_dirs={tuple(str(p) for p in self.algorithm_dirs)!r}, sim_forced={self.sim_forced}, "
            f"notify={len(self.notify_urls)} url(s))"
        )

    __str__ = __repr__


def _parse_bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false (got {raw!r})")


def _parse_minutes(name: str, raw: str | None, default: int, unit: str = "minutes") -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number of {unit} (got {raw!r})") from None


def _parse_dollars(name: str, raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(raw.replace(",", "").replace("$", "").strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise SettingsError(f"{name} must be a positive amount of dollars, e.g. 250 (got {raw!r})")
    return value


def _split_urls(raw: str | None) -> tuple[str, ...]:
    """Apprise URLs separated by spaces, commas or new lines."""
    return tuple(part for part in (raw or "").replace(",", " ").split() if part)


def _parse_mb(name: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number of MB (got {raw!r})") from None


def _merged(env: Mapping[str, str], dotenv_files: Sequence[Path]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    # Lowest precedence first so later updates win.
    for path in reversed(list(dotenv_files)):
        path = Path(path)
        if path.is_file():
            values.update(dotenv_values(path))
    values.update(env)
    return values


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    dotenv_files: Sequence[Path] | None = None,
    force_sim: bool = False,
) -> Settings:
    """Read settings from ``env`` (default ``os.environ``) over ``dotenv_files`` (default: ./.env, then the
    user config folder's .env). Blank values count as unset. Raises SettingsError on malformed values.
    """
    values = _merged(os.environ if env is None else env,
                     default_dotenv_files() if dotenv_files is None else dotenv_files)

    def get(name: str) -> str | None:
        raw = values.get(name)
        if raw is None:
            return None
        raw = raw.strip()
        return raw or None

    api_key, secret = get("ALPACA_API_KEY"), get("ALPACA_SECRET")
    if force_sim:
        # Sim never talks to Alpaca; dropping the keys makes that impossible by construction.
        api_key = secret = None

    feed_raw = get("ALPACA_FEED")
    feed = "iex" if feed_raw is None else feed_raw.lower()
    if feed not in FEEDS:
        raise SettingsError(f"ALPACA_FEED must be 'iex' or 'sip' (got {feed_raw!r})")

    data_dir = get("AUTOTRADER_DATA_DIR")
    data_root = Path(data_dir).expanduser().absolute() if data_dir else default_data_root()

    dirs_raw = get("AUTOTRADER_ALGORITHM_DIRS")
    algorithm_dirs = tuple(
        Path(part.strip()).expanduser() for part in (dirs_raw or "").split(os.pathsep) if part.strip()
    )

    def url(name: str) -> str | None:
        value = get(name)
        return value.rstrip("/") if value else None

    return Settings(
        api_key=api_key,
        secret=secret,
        paper=_parse_bool("ALPACA_PAPER", get("ALPACA_PAPER"), True),
        feed=feed,
        data_root=data_root,
        trading_url=url("ALPACA_TRADING_URL"),
        data_url=url("ALPACA_DATA_URL"),
        stream_url=url("ALPACA_STREAM_URL"),
        algorithm_dirs=algorithm_dirs,
        sim_forced=force_sim,
        screen_sleep_min=_parse_minutes("AUTOTRADER_SCREEN_SLEEP_MIN", get("AUTOTRADER_SCREEN_SLEEP_MIN"), 10),
        idle_lock_s=_parse_minutes("AUTOTRADER_IDLE_LOCK_S", get("AUTOTRADER_IDLE_LOCK_S"), 60, "seconds"),
        notify_urls=_split_urls(get("AUTOTRADER_NOTIFY")),
        notify_feed_min=_parse_minutes("AUTOTRADER_NOTIFY_FEED_MIN", get("AUTOTRADER_NOTIFY_FEED_MIN"), 10),
        notify_fills=_parse_bool("AUTOTRADER_NOTIFY_FILLS", get("AUTOTRADER_NOTIFY_FILLS"), False),
        card_loss_limit=_parse_dollars("AUTOTRADER_CARD_DAILY_LOSS_LIMIT", get("AUTOTRADER_CARD_DAILY_LOSS_LIMIT")),
        account_loss_limit=_parse_dollars("AUTOTRADER_ACCOUNT_DAILY_LOSS_LIMIT",
                                          get("AUTOTRADER_ACCOUNT_DAILY_LOSS_LIMIT")),
        sim_bars_keep_days=_parse_minutes("AUTOTRADER_SIM_BARS_KEEP_DAYS", get("AUTOTRADER_SIM_BARS_KEEP_DAYS"),
                                          365, "days"),
        worker_memory_mb=_parse_mb("AUTOTRADER_WORKER_MEMORY_MB", get("AUTOTRADER_WORKER_MEMORY_MB"), 512),
        evening_check=_parse_bool("AUTOTRADER_EVENING_CHECK", get("AUTOTRADER_EVENING_CHECK"), True),
        start_timeout_s=_parse_minutes("AUTOTRADER_START_TIMEOUT_S", get("AUTOTRADER_START_TIMEOUT_S"), 120, "seconds"),
    )
