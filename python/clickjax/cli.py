"""The `clickjax` command line: train click models on raw logs and print their metrics.

    clickjax train --model pbm --format wscd --train trainSample --test testSample --output runs/pbm
    clickjax demo
    clickjax simulate --model dbn --sessions 100000 --format baidu --output simulated.txt.gz

The commands are a thin layer over the Python API (`clickjax.data`, `clickjax.models`,
`clickjax.training`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from importlib import resources
from pathlib import Path

from clickjax import __version__
from clickjax.data import FORMATS
from clickjax.errors import ClickjaxError
from clickjax.models import MODELS
from clickjax.run import TrainingConfig, train_and_evaluate
from clickjax.simulation import SimulationConfig, run_simulation, truth_path
from clickjax.training import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_TABLE_LEARNING_RATE,
    DEFAULT_TABLE_OPTIMIZER,
    OPTIMIZERS,
    SCHEDULES,
    TABLE_OPTIMIZERS,
)
from clickjax.writers import WRITE_FORMATS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except OSError as error:
        if error.filename is not None and error.strerror is not None:
            print(f"clickjax: error: {error.strerror}: {error.filename}; check the file and folder paths", file=sys.stderr)
        else:
            print(f"clickjax: error: {error}", file=sys.stderr)
        return 1
    except (ClickjaxError, ValueError, FloatingPointError) as error:
        print(f"clickjax: error: {error}", file=sys.stderr)
        return 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clickjax", description="Fit click models to search-engine click logs."
    )
    parser.add_argument("--version", action="version", version=f"clickjax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a click model and evaluate it on test data")
    train.add_argument("--model", required=True, choices=sorted(MODELS), help="click model to train")
    train.add_argument("--format", required=True, choices=FORMATS, help="format of the log files")
    train.add_argument("--train", required=True, nargs="+", metavar="PATH", help="training log files")
    train.add_argument(
        "--validation", nargs="+", default=[], metavar="PATH",
        help="validation log files for early stopping (without them, train for --epochs)",
    )
    train.add_argument("--test", required=True, nargs="+", metavar="PATH", help="test log files")
    train.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder for metrics and parameters")
    train.add_argument(
        "--document-key", choices=("url", "text"), default=None,
        help="what identifies a Baidu document: its URL MD5 (url) or its title and abstract tokens (text, "
        "the key of the annotation files); default: url, and text for baidu-annotation",
    )
    _add_training_options(train)
    train.set_defaults(handler=_train_command)

    demo = commands.add_parser("demo", help="train on a small Baidu-format log shipped with clickjax")
    demo.add_argument("--model", default="pbm", choices=sorted(MODELS), help="click model to train (default: pbm)")
    demo.add_argument("--output", type=Path, metavar="DIR", help="folder for metrics (default: a temporary folder)")
    _add_training_options(demo)
    demo.set_defaults(handler=_demo_command)

    simulate = commands.add_parser(
        "simulate",
        help="write a simulated click log and its true parameters",
        description="Simulate sessions from a click model with random or trained parameters and write them "
        "as a raw log, with the true parameters in FILE.truth.json.",
    )
    simulate.add_argument(
        "--model", metavar="NAME",
        help=f"click model to simulate from, one of {', '.join(sorted(MODELS))}; with --model-dir, the trained model",
    )
    simulate.add_argument(
        "--model-dir", type=Path, metavar="DIR",
        help="simulate from the model that clickjax train wrote to DIR (its --output folder) instead of random "
        "parameters; queries and documents of its training log get synthetic names built from their ids",
    )
    simulate.add_argument("--sessions", type=int, required=True, metavar="N", help="number of sessions to simulate")
    simulate.add_argument("--format", required=True, metavar="FORMAT", help="format of the log to write: baidu or wscd")
    simulate.add_argument(
        "--output", type=Path, required=True, metavar="FILE",
        help="log file to write, gzip-compressed when the name ends in .gz",
    )
    simulate.add_argument(
        "--positions", type=int, metavar="P", help="results shown per session (default: 10, or the trained model's page length)"
    )
    simulate.add_argument(
        "--queries", type=int, metavar="Q",
        help="number of queries (default: 100; with --model-dir, keep the queries with the most training impressions)",
    )
    simulate.add_argument(
        "--documents-per-query", type=int, metavar="D",
        help="documents a query can show (default: 20; with --model-dir, keep the most shown ones)",
    )
    simulate.add_argument(
        "--shuffle", action=argparse.BooleanOptionalAction, default=True,
        help="show each session a random subset of the query's documents in random order, so that examination "
        "and attraction can be separated (default); --no-shuffle shows a query the same ranking every time",
    )
    simulate.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the parameters, rankings and clicks (default: 0)"
    )
    simulate.set_defaults(handler=_simulate_command)
    return parser


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--positions", type=int, default=10, help="page length: results ranked below it are dropped (default: 10)")
    parser.add_argument("--epochs", type=int, default=50, help="maximum number of passes over the training log (default: 50)")
    parser.add_argument("--batch-size", type=int, default=1024, help="sessions per training step (default: 1024)")
    parser.add_argument(
        "--learning-rate", type=float, default=DEFAULT_LEARNING_RATE,
        help=f"Adam learning rate (default: {DEFAULT_LEARNING_RATE})",
    )
    parser.add_argument("--patience", type=int, default=3, help="epochs without validation gain before stopping (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling (default: 0)")
    parser.add_argument(
        "--optimizer", choices=OPTIMIZERS, default="adam",
        help="optimiser of the global and per-rank parameters (default: adam)",
    )
    parser.add_argument(
        "--table-optimizer", choices=TABLE_OPTIMIZERS, default=DEFAULT_TABLE_OPTIMIZER,
        help=f"optimiser of the per-pair tables; adam is lazy Adam when sparse (default: {DEFAULT_TABLE_OPTIMIZER})",
    )
    parser.add_argument(
        "--table-learning-rate", type=float, default=DEFAULT_TABLE_LEARNING_RATE,
        help=f"learning rate of the per-pair tables (default: {DEFAULT_TABLE_LEARNING_RATE})",
    )
    parser.add_argument(
        "--sparse", action=argparse.BooleanOptionalAction, default=True,
        help="update only the rows of a batch in the per-pair tables (default); --no-sparse updates every row",
    )
    parser.add_argument(
        "--schedule", choices=SCHEDULES, default="constant",
        help="learning-rate schedule: constant, warmup (linear from 0 over --warmup-steps) or cosine "
        "(warm-up, then cosine decay to 0 at the last step) (default: constant)",
    )
    parser.add_argument("--warmup-steps", type=int, default=0, help="steps of linear warm-up (default: 0)")
    parser.add_argument(
        "--clip-norm", type=float, metavar="NORM",
        help="scale gradients down to this global norm when larger (default: no clipping)",
    )
    parser.add_argument(
        "--weight-decay", type=float, default=0.0,
        help="decoupled weight decay per step, relative to the learning rate (default: 0)",
    )
    parser.add_argument(
        "--max-steps", type=int, metavar="N",
        help="stop after N training steps in total, even mid-epoch (default: no limit)",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=1000, metavar="N",
        help="save a checkpoint to OUTPUT/checkpoints every N steps and at each epoch's end (default: 1000)",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run whose checkpoints are in OUTPUT/checkpoints, with the same data and options",
    )
    parser.add_argument(
        "--on-error", choices=("strict", "skip"), default="strict",
        help="on a malformed line: stop with an error (strict, default) or drop the session and count it (skip)",
    )


def _config_from_args(args: argparse.Namespace, **paths) -> TrainingConfig:
    return TrainingConfig(
        model=args.model,
        positions=args.positions,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        seed=args.seed,
        optimizer=args.optimizer,
        table_optimizer=args.table_optimizer,
        table_learning_rate=args.table_learning_rate,
        sparse=args.sparse,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        clip_norm=args.clip_norm,
        weight_decay=args.weight_decay,
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        on_error=args.on_error,
        document_key=getattr(args, "document_key", None),
        **paths,
    )


def _train_command(args: argparse.Namespace) -> int:
    if args.output.exists() and not args.output.is_dir():
        raise ValueError(f"--output {args.output} exists and is not a folder; name a new or existing folder")
    config = _config_from_args(
        args,
        format=args.format,
        train=[str(p) for p in args.train],
        validation=[str(p) for p in args.validation],
        test=[str(p) for p in args.test],
    )
    _print_training_plan(config)
    summary = train_and_evaluate(config, args.output, progress=_print_progress, on_loaded=_print_report)
    print(format_summary(summary))
    print(f"\nwrote {args.output / 'metrics.json'}, {args.output / 'parameters.json'} and {args.output / 'model'}/")
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    data = resources.files("clickjax") / "demo_data"
    with resources.as_file(data) as folder:
        config = _config_from_args(
            args,
            format="baidu",
            train=[str(folder / "demo-train.txt.gz")],
            validation=[],
            test=[str(folder / "demo-test.txt.gz")],
        )
        truth = json.loads((folder / "demo-truth.json").read_text())
        print(f"clickjax demo: {args.model} on a simulated Baidu-ULTR-format log in {folder}")
        _print_training_plan(config)
        if args.output is None:
            with tempfile.TemporaryDirectory(prefix="clickjax-demo-") as output:
                summary = train_and_evaluate(config, Path(output), progress=_print_progress)
        else:
            summary = train_and_evaluate(config, args.output, progress=_print_progress)
            print(f"wrote {args.output / 'metrics.json'}")
    print(format_summary(summary))
    estimated = summary["parameters"].get("examination_by_rank")
    if estimated is not None:
        print("\nexamination by rank: true (simulation) vs estimated")
        for rank, (true, fitted) in enumerate(zip(truth["examination_by_rank"], estimated), start=1):
            print(f"  rank {rank:2d}  {true:.3f}  {fitted:.3f}")
    return 0


def _simulate_command(args: argparse.Namespace) -> int:
    if args.model is not None and args.model not in MODELS:
        raise ValueError(f"unknown model {args.model!r} for --model; expected one of {', '.join(sorted(MODELS))}")
    if args.model is None and args.model_dir is None:
        raise ValueError("--model is required unless --model-dir names a trained model")
    if args.format not in WRITE_FORMATS:
        raise ValueError(f"unknown format {args.format!r} for --format; simulate writes {', '.join(WRITE_FORMATS)}")
    for option in ("sessions", "positions", "queries", "documents_per_query"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {value}")

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    config = SimulationConfig(
        output=str(args.output),
        format=args.format,
        sessions=args.sessions,
        model=args.model,
        model_dir=None if args.model_dir is None else str(args.model_dir),
        positions=args.positions,
        queries=args.queries,
        documents_per_query=args.documents_per_query,
        shuffle=args.shuffle,
        seed=args.seed,
    )
    truth = run_simulation(config)
    pairs = len(truth["pairs"]["query_doc_id"])
    queries = len(set(truth["pairs"]["query_id"]))
    print(
        f"wrote {args.sessions} sessions of {truth['model']} ({truth['source']}; {queries} queries, {pairs} "
        f"query-document pairs, {truth['click_rate']:.3f} clicks per result) to {args.output}"
    )
    print(f"wrote the true parameters to {truth_path(args.output)}")
    return 0


def _print_training_plan(config: TrainingConfig) -> None:
    if config.validation:
        print(f"training for at most {config.epochs} epochs, stopping early after {config.patience} without validation gain")
    else:
        print(f"no validation data: training for {config.epochs} epochs (pass --validation for early stopping)")


def _print_report(report) -> None:
    print(report.format(), end="\n\n", flush=True)
    if report.corrupt_inputs or report.sessions_skipped:
        print(
            f"warning: {report.name} input: {report.corrupt_inputs} corrupt gzip file(s) were read only up to "
            f"the damage and {report.sessions_skipped} malformed session(s) were skipped (--on-error skip); "
            "run with --on-error strict to see the first error with its file and line",
            file=sys.stderr,
        )


def _print_progress(record) -> None:
    validation = ""
    if record.validation_log_likelihood is not None:
        validation = f"  validation log-likelihood {record.validation_log_likelihood:.5f}"
    print(f"epoch {record.epoch:3d}  train loss {record.train_loss:.5f}{validation}  ({record.seconds:.2f} s)", flush=True)


def format_summary(summary: dict) -> str:
    """Render the metrics of a run as a plain-text table."""
    stopping = ""
    if summary["early_stopping"]:
        stopped = "stopped early" if summary["stopped_early"] else "ran all epochs"
        stopping = f" ({stopped}; kept the parameters of epoch {summary['best_epoch']})"
    lines = [
        "",
        f"model {summary['model']}: {summary['train_sessions']} training sessions, "
        f"{summary['test_sessions']} test sessions, {summary['epochs_run']} epochs "
        f"in {summary['train_seconds']:.1f} s{stopping}",
        "",
        f"{'metric':<26}{'test':>12}",
        f"{'log-likelihood':<26}{summary['log_likelihood']:>12.5f}",
        f"{'perplexity':<26}{summary['perplexity']:>12.5f}",
        f"{'conditional perplexity':<26}{summary['conditional_perplexity']:>12.5f}",
        "",
        f"{'rank':<6}{'perplexity':>12}{'cond. perplexity':>18}{'log-likelihood':>16}",
    ]
    for rank, (perplexity, conditional, log_likelihood) in enumerate(
        zip(summary["perplexity_per_rank"], summary["conditional_perplexity_per_rank"], summary["log_likelihood_per_rank"]),
        start=1,
    ):
        if perplexity is None:
            lines.append(f"{rank:<6}{'-':>12}{'-':>18}{'-':>16}")
        else:
            lines.append(f"{rank:<6}{perplexity:>12.5f}{conditional:>18.5f}{log_likelihood:>16.5f}")
    if summary["oov_test_pairs"]:
        lines.append(
            f"\n{summary['oov_test_pairs']} test results ({summary['oov_test_pair_rate']:.1%}) have a "
            "query-document pair unseen in training; they use the out-of-vocabulary parameter"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
