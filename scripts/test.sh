#!/usr/bin/env bash
# Run the whole test suite: the Rust core's tests, then one quick release build of the wheel,
# installed into .venv-test, and pytest against that installed package.
# Tests on the real click logs run when CLICKJAX_DATA_DIR names the data folder; otherwise they skip.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --profile quick -p clickjax-core

source scripts/build_env.sh .venv-test "[test]"

export JAX_PLATFORMS=cpu
# Run from tests/ so that the source tree's python/ folder cannot shadow the installed package.
cd tests
../.venv-test/bin/python -m pytest -p no:cacheprovider "$@"
