"""alpaca-py REST clients built from Settings, bounded in time, and their errors made readable.

alpaca-py 0.44 facts this module designs around:

* alpaca-py calls its ``requests.Session`` without ``timeout``: a hung server
  blocks forever, so every client gets an adapter that fills in a default timeout. A timeout
  raises ``requests.exceptions.ReadTimeout``/``ConnectTimeout`` (not APIError, never retried).
* Retries live in ``_retry`` (count), ``_retry_wait`` (seconds) and ``_retry_codes`` ([429, 504]);
  TradingClient's constructor does not expose them, so they are set on the instance.
* ``APIError.code``/``.message`` parse the body as JSON, but 502/503/504 bodies are HTML pages:
  :func:`classify_error` never lets that JSONDecodeError escape.
* ``url_override`` is the bare origin (``http://host:port``); the SDK appends ``/v2``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from app.engine.alpaca import sdk
from app.engine.system.settings import Settings

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 3  # the SDK's own default
DEFAULT_RETRY_WAIT_S = 3.0  # the SDK's own default
_MAX_MESSAGE = 200


class AlpacaSetupError(ValueError):
    """The settings cannot make an Alpaca client (no keys: sim mode)."""


class TimeoutAdapter(HTTPAdapter):
    """A requests adapter that gives every request a default timeout (alpaca-py sets none)."""

    def __init__(self, timeout_s: float, **kwargs: Any) -> None:
        self.timeout_s = timeout_s
        super().__init__(**kwargs)

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]  # adapter hook: passes all on
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().send(request, **kwargs)


def tune_client(client: Any, *, timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                retry_wait_s: float = DEFAULT_RETRY_WAIT_S) -> Any:
    """Bound an alpaca-py REST client: a timeout on every request, and the retry count/wait."""
    if not timeout_s > 0:
        raise ValueError(f"the HTTP timeout must be positive, got {timeout_s!r}")
    if retries < 0 or retry_wait_s < 0:
        raise ValueError("retries and retry wait must not be negative")
    sdk.mount_rest_adapter(client, TimeoutAdapter(timeout_s))
    sdk.set_rest_retries(client, retries, retry_wait_s)
    return client


def bare_origin(url: str | None) -> str | None:
    """``url_override`` wants ``scheme://host[:port]``: drop a trailing ``/`` or ``/v2`` people paste."""
    if not url:
        return None
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v2") else url


def _require_keys(settings: Settings) -> tuple[str, str]:
    if not settings.has_keys or settings.mode == "sim":
        raise AlpacaSetupError("Alpaca needs ALPACA_API_KEY and ALPACA_SECRET; without them the app runs in sim mode")
    return settings.api_key, settings.secret  # type: ignore[return-value]


def make_trading_client(settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                        retries: int = DEFAULT_RETRIES, retry_wait_s: float = DEFAULT_RETRY_WAIT_S) -> Any:
    """A TradingClient (paper or live per settings; raw dict responses) with timeout and retries set."""
    from alpaca.trading.client import TradingClient  # deferred: importing alpaca-py costs ~0.3 s

    key, secret = _require_keys(settings)
    client = TradingClient(key, secret, paper=settings.paper, raw_data=True,
                           url_override=bare_origin(settings.trading_url))
    return tune_client(client, timeout_s=timeout_s, retries=retries, retry_wait_s=retry_wait_s)


def make_data_client(settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                     retries: int = DEFAULT_RETRIES, retry_wait_s: float = DEFAULT_RETRY_WAIT_S) -> Any:
    """A StockHistoricalDataClient returning raw dicts (pydantic models cost more than the network)."""
    from alpaca.data.historical.stock import StockHistoricalDataClient

    key, secret = _require_keys(settings)
    client = StockHistoricalDataClient(key, secret, raw_data=True, url_override=bare_origin(settings.data_url))
    return tune_client(client, timeout_s=timeout_s, retries=retries, retry_wait_s=retry_wait_s)


def client_secrets(client: Any) -> tuple[str, ...]:
    """The key and secret a client holds, for scrubbing them out of any text we show."""
    return tuple(s for s in (getattr(client, "_api_key", None), getattr(client, "_secret_key", None)) if s)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, slots=True)
class ApiFailure:
    """What went wrong with one Alpaca call, safe to show (no keys, no HTML)."""

    status: int | None  # HTTP status; None when no answer came back
    code: int | None  # Alpaca's error code from a JSON body
    message: str  # one short sentence
    transient: bool  # timeout, connection failure, 429 or 5xx: worth asking again later

    @property
    def duplicate_client_id(self) -> bool:
        """Alpaca's answer to a second order with a client_order_id it already has."""
        text = self.message.lower()
        return self.status == 422 and "client_order_id" in text and "unique" in text


def classify_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> ApiFailure | None:
    """Turn an alpaca-py/requests exception into an :class:`ApiFailure`; None if it is neither."""
    from alpaca.common.exceptions import APIError

    if isinstance(exc, requests.exceptions.Timeout):
        return ApiFailure(None, None, "Alpaca did not answer in time", True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ApiFailure(None, None, "cannot connect to Alpaca (network down or server unreachable)", True)
    if isinstance(exc, requests.exceptions.RequestException):
        return ApiFailure(None, None, f"the request to Alpaca failed ({type(exc).__name__})", True)
    if not isinstance(exc, APIError):
        return None
    status = exc.status_code
    code: int | None = None
    message = ""
    try:
        # 502/503/504 come back as HTML gateway pages: APIError.code would raise JSONDecodeError.
        body = json.loads(str(exc))
        if isinstance(body, dict):
            raw_code = body.get("code")
            code = raw_code if isinstance(raw_code, int) else None
            message = str(body.get("message") or "")
    except (ValueError, TypeError):
        pass
    if not message:
        reason = getattr(exc.response, "reason", "") or "error"
        message = f"HTTP {status} {reason}" if status else "an unreadable answer"
    message = scrub(" ".join(message.split())[:_MAX_MESSAGE], secrets)
    transient = status is None or status == 429 or status >= 500
    return ApiFailure(status, code, message, transient)
