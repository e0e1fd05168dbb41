#!/usr/bin/env bash
# The demo, with nothing on disk: installs what it needs (espeak-ng included), then runs
# `elp-fast demo`: spoken commands synthesised with espeak-ng, ELP vs a head-only baseline on
# held-out voices, a run directory with plots (about 3 minutes on 2 cores).
set -euo pipefail
ELP_EXTRAS="${ELP_EXTRAS:-dev}"  # same extras as the tests: one install serves both
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
exec "$VENV/bin/elp-fast" demo "$@"
