"""One process of the multi-device and multi-process tests in test_distributed.py.

JAX fixes its device count and process group when it starts, so each case runs in a fresh
interpreter:

    python distributed_worker.py devices OUT
        (with XLA_FLAGS=--xla_force_host_platform_device_count=4) trains PBM, UBM and DBN for one
        epoch on one device, on four devices with replicated tables, and (PBM) on four devices with
        row-sharded tables, with dense SGD on every parameter and again with sparse SGD updates of
        the per-pair tables, then runs `clickjax train --shard-tables`; writes the parameters to
        OUT/parameters.npz and what it checked to OUT/devices.json.
    python distributed_worker.py process --process-id I --num-processes N --port P --train ... --test ... OUT [--sparse]
        joins a run of N processes on 127.0.0.1:P, trains on its share of the files (with sparse
        table updates given --sparse) and writes OUT/process-I.npz (parameters) and
        OUT/process-I.json (steps and test metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import optax
from flax import nnx

from clickjax import distributed
from clickjax.models import MODELS
from clickjax.training import Trainer

POSITIONS = 5
EXAMINATION = [0.95, 0.8, 0.6, 0.45, 0.3]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    devices = commands.add_parser("devices")
    devices.add_argument("output", type=Path)
    process = commands.add_parser("process")
    process.add_argument("--process-id", type=int, required=True)
    process.add_argument("--num-processes", type=int, required=True)
    process.add_argument("--port", type=int, required=True)
    process.add_argument("--train", nargs="+", required=True)
    process.add_argument("--test", nargs="+", required=True)
    process.add_argument("--batch-size", type=int, required=True)
    process.add_argument("--epochs", type=int, default=3)
    process.add_argument("--sparse", action="store_true", help="sparse SGD updates of the per-pair tables")
    process.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    if args.command == "devices":
        return run_devices(args.output)
    return run_process(args)


def parameters(model: nnx.Module) -> dict[str, np.ndarray]:
    """Return every parameter of the model as numpy, keyed by its path joined with `/`."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {"/".join(map(str, path)): np.asarray(variable.get_value()) for path, variable in flat}


def sgd_trainer(batch_size: int, epochs: int = 1, parallel=None, oov_rate: float = 0.01) -> Trainer:
    return Trainer(optax.sgd(0.5), epochs=epochs, batch_size=batch_size, oov_rate=oov_rate, parallel=parallel)


def sparse_sgd_trainer(batch_size: int, epochs: int = 1, parallel=None, oov_rate: float = 0.01) -> Trainer:
    """SGD on every parameter, with sparse updates of the per-pair tables."""
    return Trainer(
        "sgd", learning_rate=0.5, table_optimizer="sgd", table_learning_rate=0.5, sparse=True,
        epochs=epochs, batch_size=batch_size, oov_rate=oov_rate, parallel=parallel,
    )


def state_shardings(trainer: Trainer) -> list:
    """Return the shardings of the training state that the trainer's one compiled step was built for."""
    (step,) = trainer._compiled.values()
    return step.shardings


def run_devices(output: Path) -> int:
    import jax

    from simulation import simulate_pbm

    # 150 sessions in batches of 32: four full batches and a padded fifth.
    log, _ = simulate_pbm(150, 30, EXAMINATION, seed=3)
    rows = 32  # 30 pairs + 2, a multiple of 4
    checks = {"device_count": jax.device_count()}
    saved = {}
    variants = {
        "pbm": ("one", "replicated", "rows", "one-sparse", "replicated-sparse", "rows-sparse"),
        "ubm": ("one", "replicated", "one-sparse", "replicated-sparse"),
        "dbn": ("one", "replicated", "one-sparse", "replicated-sparse"),
    }
    for name, names in variants.items():
        for variant in names:
            placement, _, updates = variant.partition("-")
            parallel = None if placement == "one" else distributed.DataParallel(table_sharding=placement)

            def build(name=name):
                return MODELS[name](positions=POSITIONS, query_doc_pairs=rows, rngs=nnx.Rngs(0))

            model = build() if parallel is None else parallel.create_model(build)
            if variant == "rows":
                table = model.attraction.logits.get_value()
                checks["rows_shard_shapes_before"] = [list(shard.data.shape) for shard in table.addressable_shards]
            trainer = sparse_sgd_trainer(32, parallel=parallel) if updates == "sparse" else sgd_trainer(32, parallel=parallel)
            trainer.fit(model, log)
            if variant == "rows":
                table = model.attraction.logits.get_value()
                checks["rows_shard_shapes_after"] = [list(shard.data.shape) for shard in table.addressable_shards]
            if variant == "rows-sparse":
                table = model.attraction.logits.get_value()
                checks["rows_sparse_shard_shapes_after"] = [list(shard.data.shape) for shard in table.addressable_shards]
            for key, value in parameters(model).items():
                saved[f"{name}/{variant}/{key}"] = value

    # Where the trainer places its state. Adagrad's slot of a sparse table and dense Adam's moments
    # of a dense table should be split by rows like the table. Those of examination stay replicated.
    parallel = distributed.DataParallel(table_sharding="rows")
    model = parallel.create_model(lambda: MODELS["pbm"](positions=POSITIONS, query_doc_pairs=rows, rngs=nnx.Rngs(0)))
    trainer = Trainer(table_optimizer="adagrad", epochs=1, batch_size=32, parallel=parallel)
    trainer.fit(model, log)
    shardings = state_shardings(trainer)
    # The training state keeps a sparse table's logits and Adagrad slot in one [rows, 2] array.
    checks["sparse_table_spec"] = list(shardings.tables[0].spec)
    (step,) = trainer._compiled.values()
    checks["scratch_spec"] = [list(sharding.spec) for sharding in step.scratch_shardings]
    trainer = Trainer(optimizer="adam", table_optimizer="adam", sparse=False, epochs=1, batch_size=32, parallel=parallel)
    trainer.fit(model, log)
    adam_state = state_shardings(trainer).optimizer_state
    checks["dense_adam_specs"] = {
        jax.tree_util.keystr(key_path): list(sharding.spec)
        for key_path, sharding in jax.tree_util.tree_leaves_with_path(adam_state)
    }

    saved.update(run_resumed_on_devices(output, log, rows))

    parallel = distributed.DataParallel(table_sharding="rows")
    checks["table_rows_30"] = parallel.table_rows(30)
    checks["batch_size_error"] = error_message(lambda: sgd_trainer(30, parallel=parallel))
    checks["place_error"] = error_message(lambda: parallel.place({"weight": np.ones(6, np.float32)}))
    checks["uneven_table_error"] = error_message(
        lambda: parallel.create_model(lambda: MODELS["pbm"](positions=POSITIONS, query_doc_pairs=30, rngs=nnx.Rngs(0)))
    )
    checks.update(run_cli_on_devices(output, log))
    np.savez(output / "parameters.npz", **saved)
    (output / "devices.json").write_text(json.dumps(checks))
    return 0


class Interrupted(Exception):
    """Stops a training run from its epoch callback, as a crash would."""


def run_resumed_on_devices(output: Path, log, rows: int) -> dict[str, np.ndarray]:
    """Train PBM with row-sharded tables for 3 epochs, once straight and once stopped in epoch 2 and resumed."""
    parallel = distributed.DataParallel(table_sharding="rows")

    def build():
        return MODELS["pbm"](positions=POSITIONS, query_doc_pairs=rows, rngs=nnx.Rngs(0))

    def trainer(on_epoch=None):
        return Trainer(
            epochs=3, batch_size=32, parallel=parallel, checkpoint_dir=output / "checkpoints",
            checkpoint_every=2, on_epoch=on_epoch,
        )

    def stop_in_second(record):
        # Raised before the end-of-epoch checkpoint, so the latest one is from the middle of epoch 2.
        if record.epoch == 2:
            raise Interrupted

    straight = parallel.create_model(build)
    Trainer(epochs=3, batch_size=32, parallel=parallel).fit(straight, log)
    try:
        trainer(stop_in_second).fit(parallel.create_model(build), log)
    except Interrupted:
        pass
    resumed = parallel.create_model(build)
    fit = trainer().fit(resumed, log, resume=True)
    saved = {f"resume/straight/{key}": value for key, value in parameters(straight).items()}
    saved.update({f"resume/resumed/{key}": value for key, value in parameters(resumed).items()})
    saved["resume/resumed_from_step"] = np.asarray(fit.resumed_from_step)
    return saved


def run_cli_on_devices(output: Path, log) -> dict:
    """Run `clickjax train --shard-tables` on the four devices, once with a batch size they cannot split."""
    from clickjax.cli import main as cli_main
    from clickjax.writers import write_log

    path = output / "train.txt"
    write_log(path, log, "baidu")
    arguments = [
        "train", "--model", "pbm", "--format", "baidu", "--train", str(path), "--test", str(path),
        "--positions", str(POSITIONS), "--epochs", "1", "--shard-tables",
    ]
    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        rejected = cli_main([*arguments, "--batch-size", "30", "--output", str(output / "rejected")])
    trained = cli_main([*arguments, "--batch-size", "32", "--output", str(output / "cli")])
    return {
        "cli_rejected_exit_code": rejected,
        "cli_rejected_message": messages.getvalue(),
        "cli_rejected_output_exists": (output / "rejected").exists(),
        "cli_exit_code": trained,
        "cli_summary": json.loads((output / "cli" / "metrics.json").read_text()) if trained == 0 else None,
    }


def error_message(action) -> str | None:
    try:
        action()
    except ValueError as error:
        return str(error)
    return None


def run_process(args: argparse.Namespace) -> int:
    distributed.initialize(f"127.0.0.1:{args.port}", args.num_processes, args.process_id, initialization_timeout=60)
    from clickjax.data import Vocabulary

    vocabulary = Vocabulary()
    train = distributed.read_process_log("baidu", args.train, vocabulary, positions=POSITIONS)
    vocabulary.freeze()
    test = distributed.read_process_log("baidu", args.test, vocabulary, positions=POSITIONS)

    parallel = distributed.DataParallel()
    model = parallel.create_model(
        lambda: MODELS["pbm"](positions=POSITIONS, query_doc_pairs=vocabulary.pair_table_size, rngs=nnx.Rngs(0))
    )
    make_trainer = sparse_sgd_trainer if args.sparse else sgd_trainer
    trainer = make_trainer(args.batch_size, epochs=args.epochs, parallel=parallel, oov_rate=0.0)
    fit = trainer.fit(model, train)
    metrics = trainer.evaluate(model, test)
    parallel.gather_model(model)

    report = {
        "local_train_sessions": train.num_sessions,
        "local_steps": train.num_batches(parallel.local_batch_size(args.batch_size)),
        "steps": parallel.num_steps(train, args.batch_size),
        "train_losses": [record.train_loss for record in fit.history],
        "test_log_likelihood": metrics.log_likelihood,
        "test_perplexity": metrics.perplexity,
        "test_sessions": metrics.sessions,
        "pair_table_size": vocabulary.pair_table_size,
        # Beyond int32 and float32 precision, to show the sums run in 64 bits.
        "sum_of_large_counts": int(parallel.sum_across_processes(np.int64(2**40 + args.process_id))),
        "sum_of_fractions": float(parallel.sum_across_processes(np.float64(1.0 + 1e-12 * args.process_id))),
    }
    np.savez(args.output / f"process-{args.process_id}.npz", **parameters(model))
    (args.output / f"process-{args.process_id}.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
