# Sourced by scripts/demo.sh and scripts/test.sh: creates .venv, installs elp_fast (editable) with
# the extras named in $ELP_EXTRAS and builds its native extension (elp_fast._C) in place.
# Re-installs only when the packaging files change and rebuilds (incrementally) only when csrc/
# changes, so a second run starts in a second or two.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ELP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "elp_fast needs Python >= 3.10 (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
apt_install() {  # Debian packages, only when missing (this machine kind runs as root)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "elp_fast: please install the Debian packages: $*" >&2
  fi
}
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    apt_install python3-venv  # Debian ships venv separately
    "$PY" -m venv "$VENV"
  fi
fi
command -v g++ >/dev/null || apt_install g++  # the native extension's compiler
command -v espeak-ng >/dev/null || apt_install espeak-ng  # the demo's speech synthesiser
export PATH="$VENV/bin:$PATH"                  # ninja from the venv, for torch's extension builder

stamp="$VENV/.elp_fast-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1) ${ELP_EXTRAS}"
if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
  echo "== installing elp_fast[${ELP_EXTRAS}] into $VENV and building its native extension (first run: a few minutes)"
  pip_q=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  # torch first: the extension builds against the torch in this venv (--no-build-isolation).
  "${pip_q[@]}" "torch>=2.11,<2.14" "setuptools>=70" wheel ninja
  "${pip_q[@]}" --no-build-isolation -e "$ROOT[${ELP_EXTRAS}]"
  echo "$want" > "$stamp"
fi
# csrc/ changed since the extension was built (or it never was): rebuild in place (ninja only
# recompiles what changed). ELP_FAST_BUILD_EXT=0 skips the extension altogether.
if [ "${ELP_FAST_BUILD_EXT:-auto}" != "0" ] && ! "$VENV/bin/python" - "$ROOT" <<'EOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
sys.path.insert(0, str(root / "elp_fast"))
import native_build  # standard library only
record = root / "elp_fast" / native_build.RECORD_NAME
ok = record.is_file() and json.loads(record.read_text()).get("source_hash") == native_build.source_hash(root / "csrc")
sys.exit(0 if ok else 1)
EOF
then
  echo "== building the native extension (csrc/ changed)"
  # (setuptools' deprecation banners about running setup.py directly are filtered out)
  (cd "$ROOT" && "$VENV/bin/python" setup.py -q build_ext --inplace 2>&1 \
    | grep -vE "^(copying|running)|Deprecat|!!|^\s*\*+|setup.py install|^$" || true)
fi
