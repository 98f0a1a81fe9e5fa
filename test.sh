#!/usr/bin/env bash
# Run the whole test suite headless. Extra arguments go to pytest.
source "$(dirname "$0")/scripts/bootstrap.sh"
cd "$here"
export QT_QPA_PLATFORM=offscreen
# Two worker processes (AUTOTRADER_TEST_WORKERS, 0 for none): the suite's long end-to-end tests
# (soak, power cuts, kills) then run side by side, and every test is written for a busy machine.
# loadgroup hands tests out one at a time in collection order, and tests/conftest.py collects the
# longest first, so they start at once on different workers instead of ending the run one by one.
exec "$venv/bin/python" -m pytest -n "${AUTOTRADER_TEST_WORKERS:-2}" --dist loadgroup "$@"
