# Sourced by kiosk.sh and test.sh: make sure .venv exists and holds this checkout's dependencies.
# Re-installs only when pyproject.toml changed, so a restart of the kiosk costs no network.
set -eu
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.venv"
stamp="$venv/.install-stamp"

pick_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    echo "AutoTrader needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

want="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)-${AUTOTRADER_EXTRAS:-test}"

# BOOTSTRAP_CHECK_ONLY=1: only say what would be done (missing | stale | current), change nothing.
if [ "${BOOTSTRAP_CHECK_ONLY:-0}" = 1 ]; then
    if [ ! -x "$venv/bin/python" ]; then bootstrap_state=missing
    elif [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then bootstrap_state=stale
    else bootstrap_state=current
    fi
    return 0
fi

if [ ! -x "$venv/bin/python" ]; then
    py="$(pick_python)"
    echo "Creating virtual environment in $venv" >&2
    "$py" -m venv "$venv"
fi

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing AutoTrader and its dependencies into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$here[${AUTOTRADER_EXTRAS:-test}]"
    echo "$want" > "$stamp"
fi
