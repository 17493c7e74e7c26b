#!/usr/bin/env bash
# Run the whole test suite: the Rust core's tests, then one quick release build of the wheel,
# installed into .venv-test with the test and docs extras, and pytest against that installed package
# with no Rust toolchain on PATH.
# Tests on the real click logs run when CLICKJAX_DATA_DIR names the data folder; otherwise they skip.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --profile quick -p clickjax-core

source scripts/build_env.sh .venv-test "[test,docs]"

# pytest runs as a user of the wheel would: every PATH entry that contains cargo or rustc is left out,
# so a test that needs the Rust toolchain fails here. CLICKJAX_RELEASE_CHECKS turns on the tests
# that pass only in this setup (the wheel's tag, no toolchain on PATH, the docs tools installed).
# NOTE: where cargo comes from a distribution package in /usr/bin, all of /usr/bin is left out.
test_path=
IFS=: read -ra path_entries <<< "$PATH"
for entry in "${path_entries[@]}"; do
    if [ -z "$entry" ] || [ -e "$entry/cargo" ] || [ -e "$entry/rustc" ]; then
        continue
    fi
    test_path=${test_path:+$test_path:}$entry
done

export JAX_PLATFORMS=cpu
export CLICKJAX_RELEASE_CHECKS=1
# Run from tests/ so that the source tree's python/ folder cannot shadow the installed package.
cd tests
PATH=$test_path ../.venv-test/bin/python -m pytest -p no:cacheprovider "$@"
