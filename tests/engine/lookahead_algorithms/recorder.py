"""Fixture: records every bar it is given and faults on any bar at or after its decision minute.

It asks as widely as it can — the last million bars, a 1970-2100 range, a time a month ahead,
and the raw context with no cut-off — and trades a share every few minutes so its own
transactions are checked too (a fill must never be known before its bar has closed).
"""

from datetime import datetime, timedelta, timezone

from app.engine.algorithm_api import AlgorithmBase, Param, parse_utc_text

FAR_PAST = datetime(1970, 1, 2, tzinfo=timezone.utc)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)


class Algorithm(AlgorithmBase):
    name = "Recorder"
    description = "Records what it sees; faults on any bar or fill from its own minute or later."
    parameters = {"trade_every": Param(7, int, "minutes between trades", min=1)}
    seen: list = []  # (decision ts, newest bar ts seen or None, bars returned) per run

    def run(self, current_time, algo_id):
        now = int(current_time.timestamp())
        asked = [
            self.bars_before(1_000_000),
            self.bars_before(1_000_000, current_time + timedelta(days=30)),
            self.bars_between(FAR_PAST, FAR_FUTURE),
            self._context.last_bars(self.ticker, 1_000_000, 2 ** 40),
            self._context.bars_between(self.ticker, 0, 2 ** 40),
        ]
        stamps = [bar.ts for bars in asked for bar in bars]
        newest = max(stamps, default=None)
        type(self).seen.append((now, newest, sum(len(bars) for bars in asked)))
        if newest is not None and newest >= now:
            raise RuntimeError(f"saw the bar of {newest} at decision minute {now}")
        for tx in self.transactions():
            if int(parse_utc_text(tx.timestamp).timestamp()) >= now:
                raise RuntimeError(f"saw a fill of {tx.timestamp} at decision minute {now}")
        if (now // 60) % self.params["trade_every"]:
            return ("hold", 0)
        held = self.position()
        if held:
            return ("sell", held)
        return ("buy", 1) if self.affordable_shares(self.last_price()) >= 1 else ("hold", 0)
