"""Pytest fixture and alpaca-py client helpers for the fake Alpaca server.

Import into tests/conftest.py with ``from tests.fakes.fixtures import fake_alpaca``.
The helpers show the exact alpaca-py 0.44 internals production code needs:
``_retry`` / ``_retry_wait`` (REST retries), ``_session`` (a requests
Session with no timeout of its own), ``_reconnect_min_backoff`` (stream),
and how to stop a running StockDataStream promptly.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Optional

import pytest
from requests.adapters import HTTPAdapter

from tests.fakes.alpaca_server import FakeAlpaca


@pytest.fixture
def fake_alpaca() -> Iterator[FakeAlpaca]:
    """A started FakeAlpaca (fresh state), stopped at teardown."""
    with FakeAlpaca() as fake:
        yield fake


class TimeoutAdapter(HTTPAdapter):
    """requests adapter that applies a default timeout to every request.

    alpaca-py's RESTClient calls ``self._session.request(method, url, **opts)``
    without ``timeout``, so a hung server blocks forever; mounting this on the
    client's ``_session`` bounds every call (ReadTimeout/ConnectTimeout).
    """

    def __init__(self, timeout: float, **kwargs: Any) -> None:
        self._timeout = timeout
        super().__init__(**kwargs)

    def send(self, request: Any, **kwargs: Any) -> Any:  # noqa: D102 - adapter hook
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def tune_rest_client(client: Any, *, timeout: float = 5.0, retry_wait: float = 0.05,
                     retries: int = 3) -> Any:
    """Bound an alpaca-py REST client: session timeout and short retry wait."""
    adapter = TimeoutAdapter(timeout)
    client._session.mount("http://", adapter)
    client._session.mount("https://", adapter)
    client._retry = retries
    client._retry_wait = retry_wait
    return client


def trading_client(fake: FakeAlpaca, **tuning: Any) -> Any:
    """A real TradingClient pointed at ``fake`` (see tune_rest_client)."""
    from alpaca.trading.client import TradingClient

    client = TradingClient(fake.key, fake.secret, paper=True, url_override=fake.origin)
    return tune_rest_client(client, **tuning)


def data_client(fake: FakeAlpaca, **tuning: Any) -> Any:
    """A real StockHistoricalDataClient pointed at ``fake``."""
    from alpaca.data.historical.stock import StockHistoricalDataClient

    client = StockHistoricalDataClient(fake.key, fake.secret, url_override=fake.origin)
    return tune_rest_client(client, **tuning)


class StreamRunner:
    """Runs a real StockDataStream's ``run()`` in a thread; stops it promptly.

    ``stream.stop()`` alone takes up to 5 s (the consumer only checks its stop
    queue between 5-second recv timeouts), so after it we also close the
    socket's transport on the stream's loop, which wakes the consumer at once.
    """

    def __init__(self, fake: FakeAlpaca, *, key: Optional[str] = None,
                 secret: Optional[str] = None, url: Optional[str] = None,
                 min_backoff: float = 0.05, max_backoff: float = 0.2,
                 **stream_kwargs: Any) -> None:
        from alpaca.data.live.stock import StockDataStream

        self.stream = StockDataStream(
            key or fake.key, secret or fake.secret,
            url_override=url or fake.stream_url, **stream_kwargs,
        )
        self.stream._reconnect_min_backoff = min_backoff
        self.stream._reconnect_max_backoff = max_backoff
        self._thread = threading.Thread(target=self.stream.run, name="StockDataStream", daemon=True)

    def start(self) -> "StreamRunner":
        """Start ``stream.run()`` in its thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the stream and join its thread."""
        stream = self.stream
        loop = stream._loop
        if loop is not None and loop.is_running():
            try:
                stream.stop()
            except (RuntimeError, TimeoutError):
                pass  # loop ended between the check and the call
            ws = stream._ws
            if ws is not None and ws.transport is not None and loop.is_running():
                try:
                    # A plain callback (not a coroutine) so nothing is left un-awaited
                    # if the loop ends first; recv() then fails and run() returns.
                    loop.call_soon_threadsafe(ws.transport.close)
                except RuntimeError:
                    pass
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while ``run()`` has not returned."""
        return self._thread.is_alive()

    def __enter__(self) -> "StreamRunner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
