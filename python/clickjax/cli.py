"""The `clickjax` command line: train click models on raw logs, evaluate, export and plot them.

    clickjax train --model pbm --format wscd --train trainSample --test testSample --output runs/pbm
    clickjax evaluate --model-dir runs/pbm --format wscd --test testSample
    clickjax export --model-dir runs/pbm --output relevance.parquet --propensities propensities.parquet
    clickjax plot --model-dir runs/pbm --output runs/pbm/figures
    clickjax train --distributed --coordinator-address HOST:PORT --num-processes 2 --process-id 0 ...
    clickjax demo
    clickjax simulate --model dbn --sessions 100000 --format baidu --output simulated.txt.gz
    clickjax ingest --format wscd --output ingested --split train=0.9,test=0.1 trainSample

Every command also reads its options from a TOML file given with `--config FILE.toml`
(`clickjax.configfile`); flags on the command line override the file.

The commands are a thin layer over the Python API (`clickjax.data`, `clickjax.models`,
`clickjax.training`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path

import jax
import pyarrow as pa

from clickjax import __version__
from clickjax import distributed
from clickjax.cli_evaluation import add_evaluation_commands
from clickjax.configfile import apply_config_file
from clickjax.data import FORMATS
from clickjax.errors import ClickjaxError
from clickjax.ingest import DEFAULT_SHARD_SESSIONS, SPLIT_BY, ingest, parse_splits, read_load_report
from clickjax.memory import format_bytes, parse_bytes
from clickjax.models import MODELS
from clickjax.pair_tables import TABLE_KINDS
from clickjax.progress import Progress
from clickjax.run import RUN_FILE, TrainingConfig, train_and_evaluate
from clickjax.shards import DEFAULT_BUFFER_SESSIONS
from clickjax.simulation import SimulationConfig, run_simulation, truth_path
from clickjax.training import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_TABLE_LEARNING_RATE,
    DEFAULT_TABLE_OPTIMIZER,
    OPTIMIZERS,
    SCHEDULES,
    TABLE_OPTIMIZERS,
)
from clickjax.vocabulary import load_vocabulary
from clickjax.writers import WRITE_FORMATS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser, subparsers = _build_parser()
    as_command = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _apply_config(argv, subparsers)
        args = parser.parse_args(argv)
        _apply_threads(getattr(args, "threads", None))
        return args.handler(args)
    except OSError as error:
        if error.filename is not None and error.strerror is not None:
            print(f"clickjax: error: {error.strerror}: {error.filename}; {_path_hint(error)}", file=sys.stderr)
        else:
            print(f"clickjax: error: {error}", file=sys.stderr)
        return 1
    except (ClickjaxError, ValueError, FloatingPointError, distributed.InitializationError) as error:
        print(f"clickjax: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = " (clickjax train: rerun the same command with --resume to continue from its last checkpoint)"
        print(f"clickjax: interrupted{resume if argv and argv[0] == 'train' else ''}", file=sys.stderr)
        if as_command:
            # An interrupted asynchronous checkpoint save would print its thread's traceback while
            # the interpreter shuts down. Exit at once: resume discards an unfinished checkpoint.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130


def _path_hint(error: OSError) -> str:
    """Return what to do about a failed file operation."""
    if isinstance(error, FileExistsError):
        return "a file of that name is in the way of a folder that clickjax must create; pass another path or move the file"
    if isinstance(error, NotADirectoryError):
        return "a part of that path is a file, not a folder; pass another path"
    return "check the file and folder paths"


def _apply_config(argv: list[str], subparsers: dict[str, argparse.ArgumentParser]) -> None:
    """Load the `--config` file of the command in `argv`, if any, as that command's defaults."""
    command = next((word for word in argv if not word.startswith("-")), None)
    if command not in subparsers:
        return
    rest = argv[argv.index(command) + 1:]
    for index, word in enumerate(rest):
        if word == "--config" and index + 1 < len(rest):
            apply_config_file(subparsers[command], Path(rest[index + 1]))
        elif word.startswith("--config="):
            apply_config_file(subparsers[command], Path(word.removeprefix("--config=")))


def _apply_threads(threads: int | None) -> None:
    """Size pyarrow's CPU and I/O thread pools, which decode Parquet, to --threads for the whole process."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    pa.set_cpu_count(threads)
    pa.set_io_thread_count(threads)


def _memory_size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE.toml",
        help="read options from a TOML file (keys are the flag names without dashes); flags given here override it",
    )
    parser.add_argument("--quiet", action="store_true", help="show no progress bars or per-epoch lines")


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
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
    train.add_argument(
        "--max-memory", type=_memory_size, metavar="SIZE",
        help="memory limit for the training estimate, such as 16G (default: the memory available now); "
        "train stops before allocating when the estimate exceeds it",
    )
    train.add_argument(
        "--query-key", default=None, metavar="KEY",
        help="what identifies a query: for yandex, query_region (query id and region, default) or query; for "
        "hf-baidu, query_md5 (default) or query_id",
    )
    train.add_argument(
        "--behaviour", nargs="+", default=[], metavar="NAME",
        help="Baidu behaviour columns to read (baidu and hf-baidu), such as multimedia_type dwelling_time; "
        "see docs/data.md for the names",
    )
    train.add_argument(
        "--features", nargs="+", default=[], metavar="NAME",
        help="numeric or list columns to read as dense features per result (long and hf-baidu), such as bm25 "
        "query_document_embedding",
    )
    train.add_argument(
        "--min-results", type=int, default=1, metavar="N",
        help="drop sessions with fewer than N results after truncation to --positions (default: 1)",
    )
    train.add_argument(
        "--min-sessions-per-query", type=int, default=1, metavar="N",
        help="drop the training sessions of queries with fewer than N training sessions; above 1 the training log is "
        "read twice (default: 1)",
    )
    train.add_argument(
        "--drop-sessions-without-clicks", action="store_true",
        help="drop sessions without any click (kept by default, since dropping them biases examination estimates)",
    )
    train.add_argument(
        "--pair-table", choices=TABLE_KINDS, default="table",
        help="per-pair parameters (attraction, satisfaction): a full table over the vocabulary (table, default), or a "
        "table compressed by signed hashing (hashed), quotient-remainder (qr) or ROBE-D (robe) over query_doc_hash",
    )
    train.add_argument(
        "--compression", type=float, default=1.0, metavar="RATIO",
        help="pairs per entry of a compressed --pair-table, at least 1 (default: 1)",
    )
    train.add_argument(
        "--prior", default="none", metavar="PRIOR",
        help="prior of the per-pair parameters: none (default), l2:STRENGTH or beta:A,B; see docs/parameters.md",
    )
    _add_training_options(train)
    _add_reading_options(train, stream=True)
    _add_shuffle_buffer_option(train)
    _add_scaling_options(train)
    _add_common_options(train)
    train.set_defaults(handler=_train_command)

    demo = commands.add_parser("demo", help="train on a small Baidu-format log shipped with clickjax")
    demo.add_argument("--model", default="pbm", choices=sorted(MODELS), help="click model to train (default: pbm)")
    demo.add_argument("--output", type=Path, metavar="DIR", help="folder for metrics (default: a temporary folder)")
    _add_training_options(demo)
    _add_common_options(demo)
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
    _add_common_options(simulate)
    simulate.set_defaults(handler=_simulate_command)
    _add_ingest_command(commands)
    _add_reading_options(commands.choices["ingest"], stream=False)
    _add_common_options(commands.choices["ingest"])
    add_evaluation_commands(commands, _add_common_options)
    _add_reading_options(commands.choices["evaluate"], stream=True)
    return parser, dict(commands.choices)


def _add_ingest_command(commands) -> None:
    ingest_parser = commands.add_parser(
        "ingest",
        help="parse a raw log once into Parquet shards that train reads with --format parquet",
        description="Parse raw log files once and write them as zstd-compressed Parquet shards (one row per "
        "session, the batch contract's columns) with manifest.json and load_report.json, optionally split "
        "into subfolders and with identical sessions aggregated.",
    )

    raw_formats = [name for name in FORMATS if name != "parquet"]
    ingest_parser.add_argument("--format", required=True, choices=raw_formats, help="format of the raw log files")
    ingest_parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder to write the shards to; must be new or empty")
    ingest_parser.add_argument("inputs", nargs="+", metavar="INPUT", help="raw log files, read in this order")
    ingest_parser.add_argument(
        "--positions", type=int, default=10, metavar="P", help="page length: results ranked below it are dropped (default: 10)"
    )
    ingest_parser.add_argument(
        "--on-error", choices=("strict", "skip"), default="strict",
        help="on a malformed line: stop with an error (strict, default) or drop the session and count it (skip)",
    )

    # Layout of the shards.
    ingest_parser.add_argument(
        "--shard-sessions", type=int, default=DEFAULT_SHARD_SESSIONS, metavar="N",
        help=f"maximum sessions (rows) per shard file (default: {DEFAULT_SHARD_SESSIONS:,})",
    )
    ingest_parser.add_argument(
        "--split", metavar="NAME=FRACTION,...",
        help="write each split to DIR/NAME/, e.g. train=0.8,validation=0.1,test=0.1; fractions add up to 1",
    )
    ingest_parser.add_argument(
        "--split-by", choices=SPLIT_BY, default="session",
        help="session: contiguous session ranges in input order (default); random: a seeded hash of each "
        "session's position in the input chooses its split, for logs sorted by query; query: a seeded hash of "
        "the query id puts every session of a query in one split",
    )
    ingest_parser.add_argument(
        "--seed", type=int, default=0, help="seed of the hash of --split-by random or query (default: 0)"
    )
    ingest_parser.add_argument(
        "--aggregate", action="store_true",
        help="merge identical sessions (same query, documents, positions, clicks and mask, and any behaviour, label "
        "or feature values) into one row whose weight counts them",
    )
    ingest_parser.add_argument("--overwrite", action="store_true", help="replace DIR if an earlier ingest wrote it")
    ingest_parser.add_argument(
        "--vocabulary", type=Path, metavar="FILE",
        help="encode with this saved vocabulary, frozen (e.g. the vocabulary.parquet of the training ingest), so "
        "that the shards use its ids and unknown queries, documents and pairs are counted as out of vocabulary",
    )

    # Reader options, as for train.
    ingest_parser.add_argument(
        "--document-key", choices=("url", "text"), default=None,
        help="what identifies a Baidu document: its URL MD5 (url) or its title and abstract tokens (text); "
        "default: url, and text for baidu-annotation",
    )
    ingest_parser.add_argument(
        "--query-key", default=None, metavar="KEY",
        help="what identifies a query: for yandex, query_region (query id and region, default) or query; for "
        "hf-baidu, query_md5 (default) or query_id",
    )
    ingest_parser.add_argument(
        "--behaviour", nargs="+", default=[], metavar="NAME",
        help="Baidu behaviour columns to keep (baidu and hf-baidu), such as multimedia_type dwelling_time",
    )
    ingest_parser.add_argument(
        "--features", nargs="+", default=[], metavar="NAME",
        help="numeric or list columns to keep as dense features per result (long and hf-baidu), such as bm25",
    )
    ingest_parser.add_argument("--drop-sessions-without-clicks", action="store_true", help="drop sessions whose log records no click")
    ingest_parser.add_argument("--min-results", type=int, default=1, metavar="N", help="drop sessions with fewer results than N (default: 1)")
    ingest_parser.add_argument(
        "--min-sessions-per-query", type=int, default=1, metavar="N",
        help="drop the sessions of queries with fewer than N sessions; above 1 the inputs are read twice (default: 1)",
    )

    ingest_parser.set_defaults(handler=_ingest_command)


def _add_reading_options(parser: argparse.ArgumentParser, *, stream: bool) -> None:
    """Add --threads, and with `stream` the choice between streaming Parquet shards and loading them."""
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help="reader threads, decompression included, and the size of pyarrow's thread pools that decode "
        "Parquet (default: the number of cores)",
    )
    if not stream:
        return
    parser.add_argument(
        "--stream", action=argparse.BooleanOptionalAction, default=None,
        help="--format parquet: read the shards from disk batch by batch, in bounded memory (--stream), or load "
        "them into memory once (--no-stream); default: load them when their decoded size is at most a quarter of "
        "--max-memory (train) or of the memory available",
    )


def _add_shuffle_buffer_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shuffle-buffer", type=int, default=DEFAULT_BUFFER_SESSIONS, metavar="SESSIONS",
        help="sessions in the shuffle buffer of streamed shards, which draws each batch from the buffer "
        "after a seeded shuffle of the shard order; with 0 only the shard order and the rows within each read "
        "of max(batch size, 1,024) sessions are shuffled "
        f"(default: {DEFAULT_BUFFER_SESSIONS:,})",
    )


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--positions", type=int, default=10, help="page length: results ranked below it are dropped (default: 10)")
    parser.add_argument("--epochs", type=int, default=50, help="maximum number of passes over the training log (default: 50)")
    parser.add_argument("--batch-size", type=int, default=1024, help="sessions per training step (default: 1024)")
    parser.add_argument(
        "--learning-rate", type=float, default=DEFAULT_LEARNING_RATE,
        help=f"peak learning rate of --optimizer (default: {DEFAULT_LEARNING_RATE})",
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


def _add_scaling_options(parser: argparse.ArgumentParser) -> None:
    scaling = parser.add_argument_group(
        "devices and processes",
        "Split training over several devices or processes; see the Scaling page of the documentation.",
    )
    scaling.add_argument(
        "--data-parallel", action="store_true",
        help="split each batch over all local devices (all devices of all processes with --distributed); "
        "--batch-size must be a multiple of the device count",
    )
    scaling.add_argument(
        "--shard-tables", action="store_true",
        help="split the rows of the per-pair parameter tables over the devices instead of copying them to "
        "each, for tables larger than one device's memory; implies --data-parallel",
    )
    scaling.add_argument(
        "--distributed", action="store_true",
        help="run as one of several processes (jax.distributed): each process reads its share of the "
        "--train, --validation and --test files, and process 0 writes --output; without the three "
        "options below, the cluster environment (Slurm, Open MPI) supplies them",
    )
    scaling.add_argument(
        "--coordinator-address", metavar="HOST:PORT",
        help="address of process 0, where the coordination service listens (with --distributed)",
    )
    scaling.add_argument("--num-processes", type=int, metavar="N", help="number of processes in the run (with --distributed)")
    scaling.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0 to N-1 (with --distributed)")


def _start_processes(args: argparse.Namespace) -> None:
    """Join the multi-process run that --distributed requests, or reject its options without it."""
    options_given = [
        f"--{name.replace('_', '-')}"
        for name in ("coordinator_address", "num_processes", "process_id")
        if getattr(args, name) is not None
    ]
    if not args.distributed:
        if options_given:
            raise ValueError(f"{', '.join(options_given)} apply only with --distributed; add --distributed or leave them out")
        return
    if args.coordinator_address is not None and not _is_host_and_port(args.coordinator_address):
        raise ValueError(
            f"--coordinator-address {args.coordinator_address!r} is not HOST:PORT; give the host of process 0 "
            "and a free port, such as 10.0.0.1:8476"
        )
    if args.num_processes is not None and args.num_processes < 1:
        raise ValueError(f"--num-processes must be at least 1, got {args.num_processes}")
    if args.process_id is not None and args.process_id < 0:
        raise ValueError(f"--process-id must be at least 0, got {args.process_id}")
    if args.process_id is not None and args.num_processes is not None and args.process_id >= args.num_processes:
        raise ValueError(
            f"--process-id {args.process_id} is out of range for --num-processes {args.num_processes}; "
            f"expected 0 to {args.num_processes - 1}"
        )
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)


def _is_host_and_port(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


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
        query_key=getattr(args, "query_key", None),
        behaviour=getattr(args, "behaviour", []),
        features=getattr(args, "features", []),
        min_results=getattr(args, "min_results", 1),
        min_sessions_per_query=getattr(args, "min_sessions_per_query", 1),
        drop_sessions_without_clicks=getattr(args, "drop_sessions_without_clicks", False),
        data_parallel=getattr(args, "data_parallel", False),
        shard_tables=getattr(args, "shard_tables", False),
        pair_table=getattr(args, "pair_table", "table"),
        compression=getattr(args, "compression", 1.0),
        prior=getattr(args, "prior", "none"),
        stream=getattr(args, "stream", None),
        shuffle_buffer=getattr(args, "shuffle_buffer", DEFAULT_BUFFER_SESSIONS),
        threads=getattr(args, "threads", None),
        **paths,
    )


def _train_command(args: argparse.Namespace) -> int:
    _check_train_output(args.output, resume=args.resume)
    _start_processes(args)
    config = _config_from_args(
        args,
        format=args.format,
        train=[str(p) for p in args.train],
        validation=[str(p) for p in args.validation],
        test=[str(p) for p in args.test],
    )
    # With several processes, process 0 prints and writes for all of them.
    if jax.process_index() != 0:
        train_and_evaluate(config, args.output, max_memory=args.max_memory)
        return 0
    _print_training_plan(config)
    bars = Progress(args.quiet)
    summary = train_and_evaluate(
        config, args.output, progress=_epoch_printer(bars, args.quiet), on_loaded=_print_report,
        bars=bars, max_memory=args.max_memory, on_memory=_print_memory,
    )
    if config.resume:
        _print_resume(summary["resumed_from_step"], args.output)
    print(format_summary(summary))
    print(
        f"\nwrote {args.output / 'metrics.json'}, {args.output / 'parameters.json'}, "
        f"{args.output / 'epochs.jsonl'} and {args.output / 'model'}/"
    )
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
        bars = Progress(args.quiet)
        options = {"progress": _epoch_printer(bars, args.quiet), "bars": bars}
        if args.output is None:
            with tempfile.TemporaryDirectory(prefix="clickjax-demo-") as output:
                summary = train_and_evaluate(config, Path(output), **options)
        else:
            summary = train_and_evaluate(config, args.output, **options)
            print(f"wrote {args.output / 'metrics.json'}")
    print(format_summary(summary))
    estimated = summary["parameters"].get("examination_by_rank")
    if estimated is not None:
        # Examination times c and attraction divided by c fit the clicks equally well, so the
        # likelihood fixes examination only up to a common factor: the ratios to rank 1 compare.
        print("\nexamination by rank: true (simulation) vs estimated, and each divided by rank 1")
        true_top, fitted_top = truth["examination_by_rank"][0], estimated[0]
        for rank, (true, fitted) in enumerate(zip(truth["examination_by_rank"], estimated), start=1):
            print(f"  rank {rank:2d}  {true:.3f}  {fitted:.3f}    {true / true_top:.3f}  {fitted / fitted_top:.3f}")
        print("  (clicks fix examination only up to a common factor, so compare the ratios to rank 1)")
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


def _ingest_command(args: argparse.Namespace) -> int:
    splits = parse_splits(args.split) if args.split is not None else None
    if args.split is None and args.split_by != "session":
        raise ValueError(f"--split-by {args.split_by} needs --split NAME=FRACTION,...")
    vocabulary = None
    if args.vocabulary is not None:
        if not args.vocabulary.is_file():
            raise ValueError(f"--vocabulary {args.vocabulary} not found; name the vocabulary.parquet that clickjax ingest wrote")
        vocabulary = load_vocabulary(args.vocabulary)
        vocabulary.freeze()
    manifest = ingest(
        args.format,
        args.inputs,
        args.output,
        positions=args.positions,
        vocabulary=vocabulary,
        shard_sessions=args.shard_sessions,
        splits=splits,
        split_by=args.split_by,
        seed=args.seed,
        aggregate=args.aggregate,
        overwrite=args.overwrite,
        on_error=args.on_error,
        behaviour=args.behaviour,
        features=args.features,
        document_key=args.document_key,
        query_key=args.query_key,
        drop_sessions_without_clicks=args.drop_sessions_without_clicks,
        min_results=args.min_results,
        min_sessions_per_query=args.min_sessions_per_query,
        threads=args.threads,
    )
    _print_report(read_load_report(args.output))
    rows = f"{manifest['sessions']:,} rows standing for {manifest['weight']:,.0f} sessions" if args.aggregate else f"{manifest['sessions']:,} sessions"
    if splits is None:
        print(f"wrote {rows} in {len(manifest['shards'])} shard(s) to {args.output}/")
    else:
        print(f"wrote {rows} to {args.output}/:")
        for name, entry in manifest["splits"].items():
            print(f"  {name}/: {entry['sessions']:,} rows, {entry['weight']:,.0f} sessions (fraction {entry['fraction']:g})")
            if entry["sessions"] == 0:
                print(f"warning: split {name} received no sessions; use larger fractions or --split-by session", file=sys.stderr)
    return 0


def _print_training_plan(config: TrainingConfig) -> None:
    if config.validation:
        print(f"training for at most {config.epochs} epochs, stopping early after {config.patience} without validation gain")
    else:
        epochs = f"{config.epochs} epoch" + ("s" if config.epochs != 1 else "")
        print(f"no validation data: training for {epochs} (pass --validation for early stopping)")


def _check_train_output(output: Path, *, resume: bool) -> None:
    """Reject an output folder that contains files other than a run's, and warn before replacing a run."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a folder; name a new or existing folder")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if not (output / RUN_FILE).is_file():
        raise ValueError(
            f"--output {output} is not empty and was not written by clickjax train (it has no {RUN_FILE}); "
            "name a new or empty folder, so that the run's files are not mixed with others"
        )
    if not resume:
        print(
            f"warning: --output {output} contains an earlier run, whose results this run replaces; files that "
            "other commands wrote there (figures of clickjax plot, exports) still describe the earlier run. "
            "Pass --resume to continue that run instead",
            file=sys.stderr,
        )


def _print_resume(step: int | None, output: Path) -> None:
    if step is None:
        print(f"warning: --resume found no checkpoint in {output / 'checkpoints'}, so training started from the beginning", file=sys.stderr)
    else:
        print(f"resumed from the checkpoint at step {step:,} in {output / 'checkpoints'}")


def _print_report(report) -> None:
    print(report.format(), end="\n\n", flush=True)
    if report.corrupt_inputs or report.sessions_skipped:
        losses = []
        if report.corrupt_inputs:
            losses.append(f"{report.corrupt_inputs} corrupt gzip file(s) were read only up to the damage")
        if report.sessions_skipped:
            losses.append(f"{report.sessions_skipped} malformed session(s) were skipped")
        print(
            f"warning: {report.name} input: {' and '.join(losses)} (--on-error skip); "
            "run with --on-error strict to see the first error with its file and line",
            file=sys.stderr,
        )


def _epoch_printer(bars: Progress, quiet: bool):
    """Return the callback that prints one line per epoch, or None with --quiet."""
    if quiet:
        return None

    def print_epoch(record) -> None:
        validation = ""
        if record.validation_log_likelihood is not None:
            validation = f"  validation log-likelihood {record.validation_log_likelihood:.5f}"
        bars.write(f"epoch {record.epoch:3d}  train loss {record.train_loss:.5f}{validation}  ({record.seconds:.2f} s)")

    return print_epoch


def _print_memory(estimate, limit: int | None, source: str) -> None:
    available = f"; {format_bytes(limit)} available ({source})" if limit is not None else f"; {source}"
    print(estimate.format() + available, flush=True)


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
        f"{'calibration error (ECE)':<26}{summary['expected_calibration_error']:>12.5f}",
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
