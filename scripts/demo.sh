#!/usr/bin/env bash
# Set up clickjax in .venv (build and install the wheel) and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
# The plot extra brings matplotlib for clickjax plot.
source scripts/build_env.sh .venv "[plot]"
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
.venv/bin/clickjax demo "$@"
