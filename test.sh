#!/usr/bin/env bash
# Run the whole test suite headless. Extra arguments go to pytest.
source "$(dirname "$0")/scripts/bootstrap.sh"
cd "$here"
export QT_QPA_PLATFORM=offscreen
exec "$venv/bin/python" -m pytest "$@"
