#!/usr/bin/env bash
# The test suite: installs what it needs, then runs pytest (extra arguments go to pytest).
set -euo pipefail
ELP_EXTRAS="${ELP_EXTRAS:-dev}"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
