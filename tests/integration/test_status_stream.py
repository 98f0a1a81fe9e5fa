"""`autotrader status` prints the stream state the running kiosk recorded, not "unknown"."""

from __future__ import annotations

from app.engine.events import StreamStatus
from app.engine.host.thread import EngineHost
from tests.cli_helpers import run_cli
from tests.engine.test_orchestrator import engine_call


def recorded_stream(host: EngineHost) -> dict | None:
    return engine_call(host, lambda: host.service.status()["stream"])


def test_status_shows_the_recorded_stream_state(tmp_path, qtbot):
    host = EngineHost.for_tests(tmp_path)
    try:
        qtbot.waitUntil(lambda: (recorded_stream(host) or {}).get("state") == "no stream: sim", timeout=20_000)
        # The live bar stream reports from the UI thread; the engine thread records it.
        host.signals.stream_changed.emit(StreamStatus("reconnecting", reason="connection lost: reconnecting"))
        qtbot.waitUntil(lambda: (recorded_stream(host) or {}).get("state") == "reconnecting", timeout=20_000)
    finally:
        host.stop()
    assert recorded_stream_after_stop(tmp_path)["reason"] == "connection lost: reconnecting"
    out = run_cli(tmp_path, "status", "--sim")
    assert out.returncode == 0, out.stderr
    line = next(row for row in out.stdout.splitlines() if row.startswith("stream"))
    assert "reconnecting: connection lost: reconnecting (since 20" in line
    assert "unknown" not in out.stdout


def recorded_stream_after_stop(root) -> dict:
    import json

    out = run_cli(root, "status", "--sim", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["stream"]


def test_status_before_any_kiosk_run_says_so(tmp_path):
    out = run_cli(tmp_path, "status", "--sim")
    assert out.returncode == 0, out.stderr
    assert "stream    not recorded yet" in out.stdout
