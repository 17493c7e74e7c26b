# Sourced by demo.sh and test.sh: create a virtual environment, build the extension wheel once with
# the quick release profile, and install it with its dependencies.
# Usage: source scripts/build_env.sh VENV_DIR [EXTRAS]
set -euo pipefail

venv=$1
extras=${2:-}
# The interpreter: $PYTHON if set, else python3.11, else python3 if it is 3.11 or later.
python=${PYTHON:-}
if [ -z "$python" ]; then
    if command -v python3.11 >/dev/null; then
        python=python3.11
    else
        python=python3
    fi
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: $python is missing or older than Python 3.11; set PYTHON to a Python 3.11+ interpreter" >&2
    exit 1
fi
if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install a Rust toolchain (https://rustup.rs) to build from source" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# The zig extra brings zig from the ziglang package; ziglang 0.17 is the series tested with maturin 1.16.
"$venv/bin/python" -m pip install --quiet "maturin[zig]>=1.9,<2" "ziglang>=0.17,<0.18"

# On Linux, link with zig against glibc 2.28, so that the wheel carries the manylinux_2_28 tag of the
# published Linux wheels instead of the build machine's glibc version. maturin runs zig as
# `python3 -m ziglang`, so the virtual environment goes first on its PATH.
build_options=(--profile quick --interpreter "$venv/bin/python" --out dist)
if [ "$(uname -s)" = Linux ]; then
    build_options+=(--zig --compatibility manylinux_2_28)
fi
rm -rf dist
PATH="$venv/bin:$PATH" "$venv/bin/maturin" build "${build_options[@]}"
wheel=$(ls dist/clickjax-*.whl)
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel"
"$venv/bin/python" -m pip install --quiet "${wheel}${extras}"
