#!/usr/bin/env bash
# Accelerator check: install a prebuilt clickjax wheel and measure parsing and training throughput.
#
# For an x86_64 machine with a GPU and JAX's CUDA build already installed, with no Rust toolchain
# and no network. It installs the wheel without dependencies (jax, flax, optax, numpy and pyarrow
# must be there already), simulates a Baidu-format log with `clickjax simulate`, and reports
# sessions per second for parsing and for training PBM, UBM and DBN (see benches/gpu_check.py).
# About 2 to 3 minutes for the default 2,000,000 sessions is an estimate, since the check has
# not run on a GPU yet.
#
# Usage:
#   bash benches/gpu_check.sh [--wheel PATH | --no-install] [--python PYTHON] [--workdir DIR]
#                             [--sessions N] [--files N] [--batch-size N] [--allow-cpu] [--keep-log]
#
#   --wheel PATH   the wheel to install; default: the newest dist/clickjax-*.whl
#   --no-install   use the clickjax that PYTHON already imports (for example from PYTHONPATH)
#   --python       the interpreter whose environment has JAX; default: python3
#   --workdir      folder for the log files and results.json; default: gpu-check
#   other options  passed to benches/gpu_check.py (--sessions, --files, --batch-size,
#                  --allow-cpu to run without a GPU, --keep-log)
#
# Trial run on a CPU-only machine:
#   bash benches/gpu_check.sh --wheel /tmp/dist/clickjax-*.whl --sessions 20000 --allow-cpu
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repository="$(dirname "$here")"
python="python3"
wheel=""
install=1
workdir="gpu-check"
passed=()

while (($#)); do
    case "$1" in
        --wheel) wheel="${2:?--wheel needs a path}"; shift 2 ;;
        --no-install) install=0; shift ;;
        --python) python="${2:?--python needs an interpreter}"; shift 2 ;;
        --workdir) workdir="${2:?--workdir needs a folder}"; shift 2 ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) passed+=("$1"); shift ;;
    esac
done

if ! command -v "$python" > /dev/null; then
    echo "gpu_check: error: interpreter $python not found; pass --python with the one that has JAX" >&2
    exit 1
fi

if ((install)); then
    if [[ -z "$wheel" ]]; then
        wheel="$(ls -t "$repository"/dist/clickjax-*.whl 2> /dev/null | head -n 1 || true)"
        if [[ -z "$wheel" ]]; then
            echo "gpu_check: error: no wheel given and none found in $repository/dist; pass --wheel PATH or --no-install" >&2
            exit 1
        fi
    fi
    if [[ ! -f "$wheel" ]]; then
        echo "gpu_check: error: wheel $wheel not found; pass --wheel with the path of a built wheel" >&2
        exit 1
    fi
    echo "installing $wheel into $("$python" -c 'import sys; print(sys.prefix)')"
    # No index and no dependencies: the machine has no network, and JAX's CUDA build must stay.
    "$python" -m pip install --no-index --no-deps --force-reinstall --quiet "$wheel"
fi

# Run from the work folder so that a clickjax/ folder of the checkout cannot shadow the
# installed package.
mkdir -p "$workdir"
workdir="$(cd "$workdir" && pwd)"
cd "$workdir"
missing="$("$python" -c 'import importlib.util as u; print(" ".join(m for m in ("jax", "flax", "optax", "numpy", "pyarrow", "clickjax") if u.find_spec(m) is None))')"
if [[ -n "$missing" ]]; then
    echo "gpu_check: error: $python cannot import: $missing; install them first (the wheel is installed without dependencies)" >&2
    exit 1
fi
exec "$python" "$here/gpu_check.py" --workdir "$workdir" "${passed[@]}"
