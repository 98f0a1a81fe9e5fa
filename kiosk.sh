#!/usr/bin/env bash
# Start the AutoTrader kiosk. With no Alpaca keys configured it trades a simulated market.
# Extra arguments go to `autotrader run` (e.g. --windowed, --speed 60).
source "$(dirname "$0")/scripts/bootstrap.sh"
exec "$venv/bin/autotrader" run "$@"
