#!/usr/bin/env bash
# The main job on the embedded default: installs what it needs, then runs `elp-fast demo`
# (WavLM Base+ parameter report, a short ELP training run, adapter save + reload check).
set -euo pipefail
ELP_EXTRAS="${ELP_EXTRAS:-dev}"  # same extras as the tests: one install serves both
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"
exec "$VENV/bin/elp-fast" demo "$@"
