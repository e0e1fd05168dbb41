# Sourced by scripts/demo.sh and scripts/test.sh: creates .venv and installs elp_fast with the
# extras named in $ELP_EXTRAS (editable). Re-installs only when the packaging files change,
# so a second run starts in a second or two.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ELP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "elp_fast needs Python >= 3.10 (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv separately; this machine kind runs as root.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$VENV"
  fi
fi
stamp="$VENV/.elp_fast-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1) ${ELP_EXTRAS}"
if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
  echo "== installing elp_fast[${ELP_EXTRAS}] into $VENV (first run: a minute or two)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[${ELP_EXTRAS}]"
  echo "$want" > "$stamp"
fi
