"""The UI's one place that names engine service methods; each runs on the engine thread via the client.

Views take an :class:`EngineCalls` (or plain async callables from it), so none of them can call the
service directly on the UI thread by mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from app.engine.host.client import ServiceError

NOT_CONNECTED = "The engine is not connected."


class EngineCalls:
    """Awaitable wrappers around ``client.call(service.<method>, ...)``."""

    def __init__(self, service: Any, client: Any) -> None:
        self._service = service
        self._client = client

    @property
    def connected(self) -> bool:
        """False for a display-only window (screenshots): every call then raises ServiceError."""
        return self._service is not None and self._client is not None

    @property
    def mode(self) -> str:
        """'sim', 'paper' or 'live' (a plain attribute of the service, safe to read here)."""
        return str(getattr(self._service, "mode", "sim") or "sim")

    async def _call(self, name: str, *args: Any) -> Any:
        if not self.connected:
            raise ServiceError(NOT_CONNECTED)
        return await self._client.call(getattr(self._service, name), *args)

    async def verify_pin(self, pin: str) -> Any:
        """PinResult for one attempt."""
        return await self._call("verify_pin", pin)

    async def change_pin(self, new_pin: str) -> None:
        """Store a new PIN (after a verified entry)."""
        await self._call("change_pin", new_pin)

    async def available_algorithms(self) -> tuple:
        """AlgorithmInfo for every algorithm file, broken ones included."""
        return tuple(await self._call("available_algorithms"))

    async def available_cash(self) -> Decimal | None:
        """Cash a new card may take."""
        return await self._call("available_cash")

    async def validate_ticker(self, text: str) -> str:
        """The normalised ticker; ServiceError when it is not tradable."""
        return await self._call("validate_ticker", text)

    async def create_instance(self, ticker: str, algorithm_type: str, capital: Decimal,
                              params: dict[str, str]) -> int:
        """Create and start a card; its instance id."""
        return await self._call("create_instance", ticker, algorithm_type, capital, params)

    async def start_backtest(self, ticker: str, algorithm_type: str, capital: Decimal, params: dict[str, str],
                             sessions: int, on_progress: Callable[[float], None] | None = None) -> Any:
        """Start a backtest over the last ``sessions`` sessions; its BacktestHandle, at once.

        The replay runs on a worker thread (neither the engine's nor this one): await
        ``asyncio.wrap_future(handle.future)`` for the result. ``on_progress`` is called on that
        worker thread, so it must hop to the UI loop itself (``loop.call_soon_threadsafe``).
        """
        return await self._call("start_backtest", ticker, algorithm_type, capital, params, sessions, on_progress)

    async def stop_instance(self, instance_id: int, liquidate: bool) -> str:
        """Stop a card, selling its shares at market when ``liquidate``; a sentence saying what happened."""
        result = await self._call("stop_instance", instance_id, liquidate)
        text = getattr(result, "message", result)  # the service returns a StopResult(instance_id, message)
        return str(text) if text else f"Card #{instance_id} stopped."

    async def resume_instance(self, instance_id: int) -> None:
        """Restart a faulted card."""
        await self._call("resume_instance", instance_id)

    async def transactions(self, instance_id: int) -> tuple:
        """A card's fills, newest first."""
        return tuple(await self._call("transactions", instance_id))

    async def history(self) -> tuple:
        """Stopped cards (StoppedCard) with their realised P&L, the most recently stopped first."""
        return tuple(await self._call("history"))

    async def wall_info(self) -> Any:
        """WallInfo: version, last backup, free disk, alert status, day-trade figures."""
        return await self._call("wall_info")

    async def card_chart(self, instance_id: int, sessions: int = 5) -> Any:
        """CardChart of a card's last sessions (None before any bar)."""
        return await self._call("card_chart", instance_id, sessions)

    async def day_check(self, instance_id: int) -> str | None:
        """The card's last evening check against its backtest, in one line (None before its first)."""
        return await self._call("day_check", instance_id)

    async def halt(self) -> None:
        """Account-wide halt: no further orders."""
        await self._call("halt")

    async def resume_trading(self) -> None:
        """Lift the halt."""
        await self._call("resume_trading")
