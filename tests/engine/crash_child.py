"""A real sim engine driven minute by minute, as the engine tests and the crash-safety test use it.

Importable: :class:`SimRig` is the engine's own parts (EngineParts, EngineService) on a
ManualClock, stepped one market minute at a time exactly as the orchestrator's ``run_cycle`` does
(publish the sim bars completed by ``minute + 2 s``, then ``TradingCycle.run_minute``).

Runnable: ``python tests/engine/crash_child.py DATA_ROOT ALGO_DIR START [--minutes N] [--finish]``
(the crash test runs ``main()`` from ``python -c`` instead: see test_crash_safety.CHILD_MAIN)
reconciles the journal with the persisted SimBroker book (as the orchestrator does at start),
prints one ``READY {...}`` line with what reconciliation found, then trades minute after minute
from where the last run stopped (progress is kept in system.db) until killed or ``N`` minutes
are done. ``--finish`` only reconciles, publishes the last decided minute's fill bars, records
their fills and exits. The crash test SIGKILLs the running child at random moments.
"""

from __future__ import annotations

import argparse
import json
import time
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.engine.marketdata.clock import ManualClock  # noqa: E402
from app.engine.host.wiring import EngineOptions, EngineParts  # noqa: E402
from app.engine.host.service import EngineService  # noqa: E402
from app.engine.system.settings import Settings  # noqa: E402
from app.engine.minute.cycle import CycleResult  # noqa: E402
from app.storage.timefmt import from_epoch, parse_utc_text, utc_text  # noqa: E402

WAKE_OFFSET = timedelta(seconds=2)
PROGRESS_KEY = "crash_child_next_minute"

# An order every minute for every card: buy as much as the card's cash buys when flat, sell
# everything when holding. Written into a test folder; never shipped.
FLIPPER_SOURCE = '''\
"""Test algorithm: flat -> buy, holding -> sell all, every minute."""
from app.engine.algorithm_api import AlgorithmBase, Param


class Algorithm(AlgorithmBase):
    name = "Flipper"
    description = "Buys when flat and sells everything when holding, every minute."
    parameters = {"shares": Param(0, int, "shares per buy (0: all the cash buys)", min=0)}

    def run(self, current_time, algo_id):
        held = self.position()
        if held > 0:
            return ("sell", held)
        price = self.last_price()
        if price is None:
            return ("hold", 0)
        shares = self.params["shares"] or self.affordable_shares(price)
        return ("buy", shares) if shares > 0 else ("hold", 0)
'''

# Fails the card unless the newest *stored* bar at decision time is the previous minute (or the
# previous session's last bar at the open): the engine never publishes a bar before it completes.
PEEKER_SOURCE = '''\
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Peeker"
    description = "Faults if it can find a bar of the current minute or later."

    def run(self, current_time, algo_id):
        minute = int(current_time.timestamp()) // 60 * 60
        stored = self._context.last_bars(self.ticker, 1, 2 ** 40)  # everything stored
        newest = stored[-1].ts if stored else None
        if newest is None or newest >= minute:
            raise RuntimeError(f"newest stored bar {newest} at decision minute {minute}")
        if newest != minute - 60 and minute - newest < 3600:
            raise RuntimeError(f"bar {minute - 60} missing at decision minute {minute}")
        if self.bars_before(1)[-1].ts != newest:
            raise RuntimeError("bars_before does not end at the newest stored bar")
        return ("hold", 0)
'''


def coid_minute(client_order_id: str) -> datetime:
    """The decision minute encoded in a client order id (``...-YYYYMMDDTHHMM-side``)."""
    stamp = client_order_id.rsplit("-", 2)[1]
    return datetime.strptime(stamp, "%Y%m%dT%H%M").replace(tzinfo=timezone.utc)


def write_algorithm(folder: Path, algorithm_type: str, source: str) -> Path:
    """Write a test algorithm file ``folder/<algorithm_type>.py``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{algorithm_type}.py").write_text(source)
    return folder


class SimRig:
    """A sim-mode engine over ``data_root`` whose clock moves only when a minute is stepped."""

    def __init__(self, data_root: Path, start: datetime, *, algorithm_dirs: tuple[Path, ...] = (),
                 options: EngineOptions | None = None) -> None:
        self.clock = ManualClock(start)
        self.settings = Settings(data_root=Path(data_root), sim_forced=True, algorithm_dirs=algorithm_dirs)
        self.parts = EngineParts.build(self.settings, clock=self.clock,
                                       options=options or EngineOptions(time_budget_s=5.0))
        self.service = EngineService(self.parts)

    @property
    def system(self):
        """The engine's SystemStore."""
        return self.parts.system

    @property
    def market(self):
        """The engine's MarketStore (sim bars)."""
        return self.parts.market

    def add(self, ticker: str, algorithm_type: str, capital: str | int, **params: object) -> int:
        """Create a card through the service (validated like the kiosk does)."""
        return self.service.create_instance(ticker, algorithm_type, str(capital),
                                            {k: str(v) for k, v in params.items()})

    def running_symbols(self) -> list[str]:
        """Tickers the feed must carry: running cards' and those of open orders (as the orchestrator)."""
        symbols = {i.ticker for i in self.system.all_instances("running")}
        return sorted(symbols | {o.symbol for o in self.parts.journal.open_orders()})

    def start(self) -> list:
        """What the orchestrator does at start: reconcile (journal, then broker), then make history ready.

        Returns the fills booked; the whole reconciliation (notices too) is kept in ``reconciled``.
        """
        self.reconciled = self.parts.reconcile_at_start()
        fills = self.reconciled.fills
        symbols = self.running_symbols()
        self.parts.feed.set_symbols(symbols)
        self.parts.feed.ensure_ready(symbols, self.clock.now())
        return fills

    def publish(self, now: datetime) -> None:
        """Publish the sim bars of the running cards' symbols completed by ``now``."""
        self.parts.feed.set_symbols(self.running_symbols())
        self.parts.feed.poll(now)

    def step(self, minute: datetime) -> CycleResult:
        """The orchestrator's cycle for ``minute``: wake at minute + 2 s, publish bars, trade."""
        self.clock.set(minute + WAKE_OFFSET)
        self.publish(self.clock.now())
        return self.parts.cycle.run_minute(minute)

    def session_minutes(self, day) -> list[datetime]:
        """Every cycle minute of session ``day``."""
        return [from_epoch(ts) for ts in self.parts.calendar.session_minutes(day)]

    def next_minute(self, minute: datetime) -> datetime:
        """The next cycle minute after ``minute`` (across closes, weekends and holidays)."""
        candidate = minute + timedelta(minutes=1)
        cal = self.parts.calendar
        return candidate if cal.is_open(candidate) else cal.next_open(candidate)

    def close(self) -> None:
        """Close the engine's connections and worker threads."""
        self.parts.close()


def _run(args: argparse.Namespace) -> int:
    data_root = Path(args.data_root)
    start = parse_utc_text(args.start)
    rig = SimRig(data_root, start, algorithm_dirs=(Path(args.algo_dir),),
                 options=EngineOptions(time_budget_s=5.0))
    try:
        saved = rig.system.get_config(PROGRESS_KEY)
        minute = parse_utc_text(saved) if saved else start
        rig.clock.set(minute + WAKE_OFFSET)
        open_before = len(rig.parts.journal.open_orders())
        netted_before = len(rig.system.open_net_orders())  # netted orders a kill left open at the broker
        fills = rig.start()
        info = {"minute": utc_text(minute), "open_orders": open_before, "open_netted": netted_before,
                "reconciled_fills": len(fills), "still_open": len(rig.parts.journal.open_orders())}
        print("READY " + json.dumps(info), flush=True)
        if args.hold_at_fill or args.hold_at_netted_fill:
            _hold_at_first_fill(rig.parts.journal, netted_only=args.hold_at_netted_fill)
        if args.finish:
            # Orders of the minute before `minute` (or of `minute` itself, when the kill came after its
            # cycle but before the progress was saved) fill at their bars: let both minutes complete.
            rig.clock.set(minute + timedelta(minutes=1) + WAKE_OFFSET)
            rig.publish(rig.clock.now())
            done = rig.parts.journal.settle(0)
            print("FINISHED " + json.dumps({"fills": len(done),
                                            "open": len(rig.parts.journal.open_orders())}), flush=True)
            return 0
        for _ in range(args.minutes):
            rig.step(minute)
            minute = rig.next_minute(minute)
            rig.system.set_config(PROGRESS_KEY, utc_text(minute))
        return 0
    finally:
        rig.close()


def _hold_at_first_fill(journal, *, netted_only: bool = False) -> None:
    """Stop for good just before the journal records the first fill the broker reports (printing
    HOLDING): a kill then lands, on any machine, between a fill at the broker and its record.
    ``netted_only``: the first fill of a netted order (its cards' shares all unbooked)."""
    for name in ("apply", "apply_fills"):
        real = getattr(journal, name)

        def held(state, *args, _real=real, **kwargs):
            if state.is_final and state.filled_qty > 0 and (
                    not netted_only or journal.ids.is_net(state.client_order_id)):
                print("HOLDING " + state.client_order_id, flush=True)
                time.sleep(3600)
            return _real(state, *args, **kwargs)

        setattr(journal, name, held)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the child."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("algo_dir")
    parser.add_argument("start", help="first cycle minute, UTC text (used until progress is saved)")
    parser.add_argument("--minutes", type=int, default=10_000)
    parser.add_argument("--finish", action="store_true")
    parser.add_argument("--hold-at-fill", action="store_true", help="stop before recording the first fill")
    parser.add_argument("--hold-at-netted-fill", action="store_true",
                        help="stop before recording the first fill of a netted order")
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

