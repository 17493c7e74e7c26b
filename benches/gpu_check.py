"""Measure parsing and training throughput of an installed clickjax; benches/gpu_check.sh runs it.

Steps: simulate a Baidu-format log in several plain-text files with `clickjax simulate` (parallel
processes on the CPU), parse every file with the Rust reader, and train PBM, UBM and DBN for two
epochs each on the whole log. Training throughput is the sessions of the second epoch divided by
its wall time, so compilation is left out but the host-to-device copy of every batch is in.

Run `bash benches/gpu_check.sh --help` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODELS = ("pbm", "ubm", "dbn")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="clickjax parsing and training throughput check")
    parser.add_argument("--sessions", type=int, default=2_000_000, help="sessions in the simulated log (default: 2,000,000)")
    parser.add_argument("--files", type=int, default=8, help="files the log is split into, simulated in parallel (default: 8)")
    parser.add_argument("--batch-size", type=int, default=65_536, help="sessions per training step (default: 65,536)")
    parser.add_argument("--workdir", type=Path, required=True, help="folder for the log files and results.json")
    parser.add_argument("--allow-cpu", action="store_true", help="run even when JAX has no GPU (for a trial run)")
    parser.add_argument("--keep-log", action="store_true", help="keep the simulated log files (removed by default)")
    args = parser.parse_args(argv)
    for option in ("sessions", "files", "batch_size"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")

    import jax

    device = jax.devices()[0]
    if device.platform != "gpu" and not args.allow_cpu:
        print(
            f"gpu_check: error: JAX's first device is {device} ({device.platform}), not a GPU; install JAX's "
            "CUDA build, or pass --allow-cpu for a trial run on the CPU",
            file=sys.stderr,
        )
        return 1

    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "device": str(device),
        "device_kind": device.device_kind,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "sessions": args.sessions,
        "batch_size": args.batch_size,
    }
    import clickjax

    results["clickjax"] = clickjax.__version__
    print(f"clickjax {clickjax.__version__}, jax {jax.__version__}, device {device} ({device.device_kind})", flush=True)

    paths, results["simulate_seconds"] = simulate_log(args.workdir, args.sessions, min(args.files, args.sessions))
    results["log_bytes"] = sum(path.stat().st_size for path in paths)
    print(f"simulated {args.sessions} sessions in {len(paths)} files ({results['log_bytes'] / 1e6:.0f} MB) "
          f"in {results['simulate_seconds']:.1f} s", flush=True)

    results["parsing"] = measure_parsing(paths)
    print(f"parsing: {results['parsing']['sessions_per_second']:,.0f} sessions/s, "
          f"{results['parsing']['megabytes_per_second']:,.0f} MB/s", flush=True)

    results["training"] = measure_training(paths, args.batch_size)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {args.workdir / 'results.json'}")
    if not args.keep_log:
        for path in paths:
            path.unlink()
            Path(f"{path}.truth.json").unlink(missing_ok=True)
    return 0


def simulate_log(workdir: Path, sessions: int, files: int) -> tuple[list[Path], float]:
    """Write `sessions` DBN sessions as `files` plain-text Baidu logs, one `clickjax simulate` process each."""
    counts = [sessions // files + (1 if index < sessions % files else 0) for index in range(files)]
    paths = [workdir / f"part-{index:05d}.txt" for index in range(files)]
    # The simulation runs on the CPU, so that parallel processes do not each claim the GPU's memory.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    commands = [
        [
            sys.executable, "-m", "clickjax", "simulate", "--model", "dbn", "--format", "baidu",
            "--sessions", str(count), "--queries", "2000", "--documents-per-query", "50",
            "--seed", str(index), "--output", str(path),
        ]
        for index, (count, path) in enumerate(zip(counts, paths))
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=files) as pool:
        finished = list(pool.map(lambda command: subprocess.run(command, env=env, capture_output=True, text=True), commands))
    for result in finished:
        if result.returncode != 0:
            raise SystemExit(f"gpu_check: error: {' '.join(result.args)} failed:\n{result.stderr}")
    return paths, time.perf_counter() - started


def measure_parsing(paths: list[Path]) -> dict:
    """Parse every file into Arrow batches of 8,192 sessions, as training reads them."""
    from clickjax.data import Vocabulary, read_batches

    started = time.perf_counter()
    reader = read_batches("baidu", paths, Vocabulary(), batch_size=8192)
    sessions = sum(batch.num_rows for batch in reader)
    seconds = time.perf_counter() - started
    size = sum(path.stat().st_size for path in paths)
    return {
        "sessions": sessions,
        "seconds": seconds,
        "sessions_per_second": sessions / seconds,
        "megabytes_per_second": size / 1e6 / seconds,
    }


def measure_training(paths: list[Path], batch_size: int) -> dict:
    """Train each model for two epochs and time the second one."""
    import optax
    from flax import nnx

    from clickjax.data import ClickLog, Vocabulary
    from clickjax.models import MODELS as MODEL_CLASSES
    from clickjax.training import Trainer

    vocabulary = Vocabulary()
    log = ClickLog.read("baidu", paths, vocabulary)
    measured = {}
    for name in MODELS:
        model = MODEL_CLASSES[name](positions=log.positions, query_doc_pairs=vocabulary.pair_table_size, rngs=nnx.Rngs(0))
        trainer = Trainer(optax.adam(0.05), epochs=2, batch_size=batch_size)
        fit = trainer.fit(model, log)
        first, second = fit.history
        measured[name] = {
            "first_epoch_seconds": first.seconds,
            "epoch_seconds": second.seconds,
            "sessions_per_second": log.num_sessions / second.seconds,
            "train_loss": second.train_loss,
        }
        print(f"training {name}: {measured[name]['sessions_per_second']:,.0f} sessions/s", flush=True)
    return measured


def print_table(results: dict) -> None:
    print(f"\n| step | seconds | sessions per second |\n|---|---|---|")
    parsing = results["parsing"]
    print(f"| parse {parsing['sessions']:,} sessions | {parsing['seconds']:.2f} | {parsing['sessions_per_second']:,.0f} |")
    for name, measured in results["training"].items():
        print(f"| train {name.upper()}, one epoch (after one to compile) | {measured['epoch_seconds']:.2f} | "
              f"{measured['sessions_per_second']:,.0f} |")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
