#!/usr/bin/env bash
# The test suite: installs what it needs (and builds the native extension), then runs pytest
# (extra arguments go to pytest).
set -euo pipefail
ELP_EXTRAS="${ELP_EXTRAS:-dev}"
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
# The extension was just built: its tests must run, not skip (unless the build was switched off).
[ "${ELP_FAST_BUILD_EXT:-auto}" = "0" ] || export ELP_FAST_REQUIRE_NATIVE=1
exec "$VENV/bin/python" -m pytest "$@"
