"""alpaca-py's private members are checked in one place; a mismatch is one sentence at start."""

from __future__ import annotations

import pytest
from alpaca.data.live.stock import StockDataStream
from alpaca.trading.client import TradingClient

from app.engine.alpaca import sdk
from app.engine.alpaca.clients import TimeoutAdapter, tune_client


def test_installed_alpaca_py_passes_the_check():
    assert sdk.check_sdk().startswith("0.44")


@pytest.mark.parametrize("found", ["0.45.0", "0.43.2", "1.0.0"])
def test_a_version_outside_the_tested_range_is_refused(monkeypatch, found):
    monkeypatch.setattr(sdk, "installed_version", lambda: found)
    expected = rf"alpaca-py {found} is installed but AutoTrader is tested with 0\.44"
    with pytest.raises(sdk.AlpacaSdkMismatch, match=expected):
        sdk.check_sdk()


def test_a_renamed_member_is_named_not_silently_ignored():
    client = TradingClient("PKTEST", "secret", paper=True, raw_data=True)
    del client._retry_wait  # what a rename in a new SDK release looks like on the instance
    with pytest.raises(sdk.AlpacaSdkMismatch, match="lacks _retry_wait"):
        tune_client(client)


def test_tune_client_sets_timeout_and_retries_on_the_real_client():
    client = tune_client(TradingClient("PKTEST", "secret", paper=True, raw_data=True), timeout_s=2.5,
                         retries=1, retry_wait_s=0.25)
    assert (client._retry, client._retry_wait) == (1, 0.25)
    adapter = client._session.get_adapter("http://127.0.0.1:1/v2/account")
    assert isinstance(adapter, TimeoutAdapter) and adapter.timeout_s == 2.5


def test_stream_members_are_used_only_through_sdk():
    stream = StockDataStream("PKTEST", "secret", raw_data=True)
    sdk.set_stream_backoff(stream, 0.1, 2.0)
    assert (stream._reconnect_min_backoff, stream._reconnect_max_backoff) == (0.1, 2.0)
    assert sdk.stream_loop(stream) is None and sdk.stream_transport(stream) is None
    assert not sdk.stream_set_up(stream)


def test_no_other_module_touches_sdk_private_members():
    import pathlib
    import re
    engine = pathlib.Path(sdk.__file__).resolve().parents[1]
    names = "|".join(re.escape(n) for n in sdk.REST_MEMBERS + sdk.STREAM_MEMBERS)
    pattern = re.compile(rf"(?<!self)\.({names})\b")
    offenders = [str(p.relative_to(engine)) for p in engine.rglob("*.py")
                 if p.name != "sdk.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
