"""One training run from raw log files to a folder of results, as `clickjax train` performs it.

`train_and_evaluate` reads the training log (building the vocabulary), freezes the vocabulary, reads
the validation and test logs with it, trains the model, evaluates it on the test log and writes:

- `metrics.json`: test metrics overall and per rank, session counts, training time, the readable
  parameters, the reader counters of every log and the configuration of the run;
- `parameters.json`: the readable parameters alone (examination by rank with its standard
  errors, continuation, ...);
- `epochs.jsonl`: one JSON object per epoch (epoch, train_loss, validation_log_likelihood,
  seconds, steps), appended as each epoch ends, so a run that is stopped keeps its history;
- `run.json`: the configuration, the versions and the number of processes, written before
  training starts;
- `checkpoints/`: the Orbax checkpoints of the training state (see `clickjax.checkpoints`), which
  `resume` continues from; a run of several processes writes none;
- `model/`: the trained parameters and the training log's query-document pairs (see
  `clickjax.serialization`), the training vocabulary `model/vocabulary.parquet`
  (`clickjax.vocabulary`), and `pair-statistics.parquet` with each pair's impressions, clicks,
  estimates and standard errors (see `clickjax.uncertainty`) for models with per-pair tables.

Before it allocates the model, `train_and_evaluate` estimates the memory that training needs
(`clickjax.memory`) and stops with `MemoryLimitError` when the estimate exceeds the memory
available or the `max_memory` given.

With `data_parallel` the batches are split over every device (`clickjax.distributed`). When the
program runs as several processes, each reads its share of the files, the counts in the results
cover all processes, and only process 0 writes the folder.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from clickjax import __version__
from clickjax.data import ClickLog, Vocabulary, mark_unseen_pairs
from clickjax.distributed import DataParallel, read_process_log
from clickjax.ingest import shard_vocabulary_path
from clickjax.memory import (
    MemoryEstimate,
    available_memory,
    estimate_training_memory,
    format_bytes,
    loads_in_memory,
)
from clickjax.metrics import evaluate
from clickjax.models import MODELS
from clickjax.pair_tables import pair_table_modules, parse_prior
from clickjax.progress import Progress
from clickjax.report import LoadReport
from clickjax.serialization import VOCABULARY_FILE, save_model, training_pairs
from clickjax.shards import DEFAULT_BUFFER_SESSIONS, ShardedLog, ShardReader
from clickjax.training import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_PREFETCH,
    DEFAULT_TABLE_LEARNING_RATE,
    DEFAULT_TABLE_OPTIMIZER,
    EpochRecord,
    Trainer,
)
from clickjax.uncertainty import examination_standard_errors, pair_table_roles, write_pair_statistics
from clickjax.vocabulary import save_vocabulary

# The file a run writes first, with its configuration and package versions.
RUN_FILE = "run.json"

__all__ = ["EPOCH_LOG", "MemoryLimitError", "TrainingConfig", "train_and_evaluate"]

# File of the epoch records, one JSON object per line.
EPOCH_LOG = "epochs.jsonl"

# Batches alive besides the shuffle buffer while shards stream: the trainer's placed batches, its
# queue and the one being cut.
_BATCHES_AHEAD = 2 * DEFAULT_PREFETCH + 1


class MemoryLimitError(ValueError):
    """The estimated training memory exceeds the memory available or the limit given."""

logger = logging.getLogger(__name__)

# Pairs of the tables built to check the per-pair options before a log is read.
_CHECK_PAIRS = 1 << 16

# The readers' largest thread count (`MAX_THREADS` of the Rust core).
_MAX_THREADS = 256


@dataclass
class TrainingConfig:
    """Everything that defines a training run; saved with its results."""

    model: str
    format: str
    train: list[str]
    test: list[str]
    validation: list[str] = field(default_factory=list)
    positions: int = 10
    epochs: int = 50
    batch_size: int = 1024
    learning_rate: float = DEFAULT_LEARNING_RATE
    patience: int = 3
    seed: int = 0
    on_error: str = "strict"
    # None takes the format's default document key ("url", or "text" for annotation files).
    document_key: str | None = None
    # None takes the format's default query key ("query_region" for yandex, "query_md5" for hf-baidu).
    query_key: str | None = None
    behaviour: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    min_results: int = 1
    min_sessions_per_query: int = 1
    drop_sessions_without_clicks: bool = False
    # Split each batch over all devices of all processes; with shard_tables also the rows of the
    # per-pair tables. Several processes always split their batches.
    data_parallel: bool = False
    shard_tables: bool = False
    # Per-pair parameters: `table`, or a compressed table (`hashed`, `qr`, `robe`) keeping
    # pairs / compression entries; the prior as text (`none`, `l2:STRENGTH`, `beta:A,B`).
    pair_table: str = "table"
    compression: float = 1.0
    prior: str = "none"
    optimizer: str = "adam"
    table_optimizer: str = DEFAULT_TABLE_OPTIMIZER
    table_learning_rate: float = DEFAULT_TABLE_LEARNING_RATE
    sparse: bool = True
    schedule: str = "constant"
    warmup_steps: int = 0
    clip_norm: float | None = None
    weight_decay: float = 0.0
    max_steps: int | None = None
    # Steps between checkpoints under OUTPUT/checkpoints; one is also saved at each epoch's end.
    checkpoint_every: int = 1000
    resume: bool = False
    # Parquet shards: True streams them from disk every epoch, False loads them into memory, None
    # decides by their decoded size (`clickjax.memory.loads_in_memory`).
    stream: bool | None = None
    # Sessions in the shuffle buffer of streamed shards.
    shuffle_buffer: int = DEFAULT_BUFFER_SESSIONS
    # Reader threads (`read_batches(threads=...)`); None takes the number of cores.
    threads: int | None = None

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {', '.join(sorted(MODELS))}")
        if self.positions < 1:
            raise ValueError(f"--positions must be at least 1, got {self.positions}")
        for option in ("epochs", "batch_size", "patience", "min_results", "min_sessions_per_query", "threads"):
            value = getattr(self, option)
            if value is not None and value < 1:
                raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
        if self.threads is not None and self.threads > _MAX_THREADS:
            raise ValueError(f"--threads must be at most {_MAX_THREADS}, got {self.threads}")
        if self.min_results is not None and self.positions is not None and self.min_results > self.positions:
            raise ValueError(
                f"--min-results {self.min_results} is above --positions {self.positions}, so every session would be "
                "dropped: a session keeps at most --positions results; lower --min-results or raise --positions"
            )
        if self.shuffle_buffer < 0:
            raise ValueError(f"--shuffle-buffer must be at least 0, got {self.shuffle_buffer}")
        if self.stream and self.format != "parquet":
            raise ValueError(f"--stream reads Parquet shards; --format {self.format} is read into memory, so leave it out")
        if self.stream and (self.data_parallel or self.shard_tables):
            # NOTE: `DataParallel.batches` splits a log held in memory; streamed shards would need
            # each process to read its own shard files.
            raise ValueError("--stream is not supported with --data-parallel or --shard-tables yet; pass --no-stream")
        # Build the per-pair modules once, so that a bad --pair-table, --compression or --prior
        # fails before any log is read. A ROBE table needs entries for a whole block, so the check
        # uses a log-sized number of pairs rather than the smallest.
        try:
            pair_table_modules(
                self.model, self.pair_table, pairs=_CHECK_PAIRS, compression=self.compression, prior=parse_prior(self.prior)
            )
        except ValueError as error:
            # Name the flags: "compression must be ..." becomes "--compression must be ...".
            message = str(error)
            for start, flag in (("compression ", "--compression "), ("invalid prior ", "invalid --prior "),
                                ("unknown pair table ", "unknown --pair-table ")):
                if message.startswith(start):
                    message = flag + message[len(start):]
            raise ValueError(message) from None
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--learning-rate must be a positive finite number, got {self.learning_rate}")
        try:
            self.trainer()
        except ValueError as error:
            # Name the command-line flag: "clip_norm must be ..." becomes "--clip-norm must be ...".
            raise ValueError(re.sub(r"^([a-z_]+) ", lambda m: "--" + m[1].replace("_", "-") + " ", str(error))) from None

    def trainer(self, **options) -> Trainer:
        """Build the `Trainer` this configuration describes; `options` adds or overrides arguments."""
        arguments = dict(
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            table_optimizer=self.table_optimizer,
            table_learning_rate=self.table_learning_rate,
            sparse=self.sparse,
            schedule=self.schedule,
            warmup_steps=self.warmup_steps,
            clip_norm=self.clip_norm,
            weight_decay=self.weight_decay,
            epochs=self.epochs,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            patience=self.patience,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
        )
        return Trainer(**{**arguments, **options})


def train_and_evaluate(
    config: TrainingConfig,
    output: Path,
    progress: Callable[[EpochRecord], None] | None = None,
    on_loaded: Callable[[LoadReport], None] | None = None,
    *,
    bars: Progress | None = None,
    max_memory: int | None = None,
    on_memory: Callable[[MemoryEstimate, int | None, str], None] | None = None,
) -> dict:
    """Train and evaluate as `config` specifies, write the results to `output`, and return the summary.

    Args:
      config: the run's options.
      output: the folder to write.
      progress: called with each `EpochRecord` as its epoch ends.
      on_loaded: receives the load report of each input ("train", "validation", "test") once
        every input is read, before training starts.
      bars: progress bars for reading, training and evaluation; None shows none.
      max_memory: the memory limit in bytes for the estimate; None takes the memory available.
      on_memory: receives the memory estimate, the limit it is checked against (None if unknown)
        and where that limit comes from, before the model is allocated.

    Raises:
      MemoryLimitError: the estimated training memory exceeds the limit.
    """
    output = Path(output)
    bars = bars or Progress(quiet=True)
    parallel = None
    if config.data_parallel or config.shard_tables or jax.process_count() > 1:
        parallel = DataParallel(table_sharding="rows" if config.shard_tables else "replicated")
        parallel.local_batch_size(config.batch_size)
        logger.info("training on %s", parallel)
    writes_output = parallel is None or parallel.is_main_process
    if config.resume and jax.process_count() > 1:
        # NOTE: checkpoints of a run of several processes are not supported yet (see `Trainer`).
        raise ValueError("--resume is not supported with several processes, which write no checkpoints; leave it out")

    # Shards load into memory when they fit well within this; the check before training measures again.
    limit = max_memory if max_memory is not None else available_memory()[0]

    # Read every input before training, so that an unusable validation or test file fails at once.
    vocabulary = Vocabulary(keys=True)
    read = dict(parallel=parallel, bars=bars, memory_limit=limit)
    train = _read(config, config.train, vocabulary, "training", min_sessions_per_query=config.min_sessions_per_query, **read)
    vocabulary.freeze()
    validation = _read(config, config.validation, vocabulary, "validation", **read) if config.validation else None
    test = _read(config, config.test, vocabulary, "test", **read)
    # With one process, the training pairs are counted once here; a log streamed from disk is read for them.
    pairs = training_pairs(train) if jax.process_count() == 1 else None
    if config.format == "parquet" and jax.process_count() == 1:
        # Splits of one ingest share a vocabulary built over all of them, so pairs that only
        # validation or test sessions show have real ids: score them as unseen.
        seen = pairs["query_doc_id"]
        for role, log in [("validation", validation), ("test", test)]:
            if log is not None and (marked := mark_unseen_pairs(log, seen)):
                logger.info("%d %s results show a pair the training shards lack; they count as unseen", marked, role)
    logs = {"train": train, "validation": validation, "test": test}
    stats = {name: _total_stats(log, parallel) for name, log in logs.items()}
    if on_loaded is not None:
        for name, log in logs.items():
            if log is not None:
                on_loaded(LoadReport.from_stats(stats[name], name=name, log_format=config.format))

    pair_table_size = vocabulary.pair_table_size
    if config.format == "parquet":
        # Shards carry their ids, so the vocabulary stayed empty: size the table from the manifests.
        pair_table_size = _shard_pair_table_size(config, [train, validation, test])
    table_rows = pair_table_size if parallel is None else parallel.table_rows(pair_table_size)
    # NOTE: the estimate counts whole tables on one device. With --shard-tables each device holds
    # only its rows, so the estimate is then too high by up to the device count.
    # A compressed pair table keeps pairs / compression entries per role.
    table_entries = table_rows if config.pair_table == "table" else math.ceil(table_rows / config.compression)
    # Training, validation and test read their shards one after another, so the largest stream counts.
    stream_bytes = max(
        (log.stream_bytes(config.batch_size, _BATCHES_AHEAD) for log in logs.values() if isinstance(log, ShardedLog)),
        default=0,
    )
    _check_memory(config, table_entries, validation is not None, max_memory, on_memory, stream_bytes, parallel is not None)

    def build_model():
        modules = pair_table_modules(
            config.model,
            config.pair_table,
            pairs=table_rows,
            compression=config.compression,
            prior=parse_prior(config.prior),
            seed=config.seed,
        )
        return MODELS[config.model](
            positions=config.positions, query_doc_pairs=table_rows, rngs=nnx.Rngs(config.seed), **modules
        )

    model = build_model() if parallel is None else parallel.create_model(build_model)
    if writes_output:
        # The configuration goes to the output folder once every input is known to be usable.
        output.mkdir(parents=True, exist_ok=True)
        run_info = {"config": asdict(config), "versions": _versions(), "processes": jax.process_count()}
        (output / RUN_FILE).write_text(json.dumps(run_info, indent=2) + "\n")
    checkpoint_dir = output / "checkpoints"
    if jax.process_count() > 1:
        logger.warning("a run of several processes writes no checkpoints")
        checkpoint_dir = None
    elif not config.resume and checkpoint_dir.is_dir():
        # A new run in the folder of an earlier one: its checkpoints would block a later --resume.
        logger.warning("removing the checkpoints of an earlier run in %s (pass --resume to continue it)", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    epoch_log_path = output / EPOCH_LOG if writes_output else None
    epoch_bar = bars.bar("training", total=config.epochs, unit="epoch")
    with _EpochLog(epoch_log_path, progress, epoch_bar, append=config.resume) as epoch_log:
        trainer = config.trainer(checkpoint_dir=checkpoint_dir, on_epoch=epoch_log.record, parallel=parallel)
        fit = trainer.fit(model, train, validation, resume=config.resume)
    if fit.resumed_from_step is not None and epoch_log_path is not None:
        # The interrupted run may have logged an epoch after its last checkpoint, which this run
        # repeated, so the log is rewritten from the history restored with the checkpoint.
        epoch_log_path.write_text("".join(json.dumps(asdict(record)) + "\n" for record in fit.history))
    if parallel is None:
        test_batches = bars.iterate(
            test.batches(config.batch_size), "evaluating", total=test.num_batches(config.batch_size), unit="batch"
        )
        metrics = evaluate(model, test_batches)
    else:
        metrics = trainer.evaluate(model, test)
    if jax.process_count() > 1:
        pairs = _combined_training_pairs(train, table_rows, parallel)
    if parallel is not None:
        parallel.gather_model(model)

    parameters = model.parameter_summary()
    # With several processes each holds only its share of the training log, whose information
    # would understate the whole log's, so the standard errors are left out there.
    standard_errors = examination_standard_errors(model, train, config.batch_size) if jax.process_count() == 1 else None
    if standard_errors is not None and "examination_by_rank" in parameters:
        # Row 0 of the table is padding. UBM's column r' = 0 is examination with no click above.
        by_rank = standard_errors[1:] if standard_errors.ndim == 1 else standard_errors[1:, 0]
        parameters["examination_by_rank_standard_error"] = [None if math.isnan(v) else float(v) for v in by_rank]

    oov_pairs = stats["test"].get("oov_pairs", 0)
    total_results = int(_total(_results(test), parallel))
    summary = {
        **metrics.to_dict(),
        "model": config.model,
        # Sessions the rows stand for: an aggregated row of weight w counts w times.
        "train_sessions": round(float(_total(train.total_weight, parallel))),
        "validation_sessions": round(float(_total(validation.total_weight, parallel))) if validation is not None else 0,
        "test_sessions": round(float(_total(test.total_weight, parallel))),
        "train_seconds": fit.seconds,
        "epochs_run": len(fit.history),
        "steps": fit.steps,
        "resumed_from_step": fit.resumed_from_step,
        "best_epoch": fit.best_epoch,
        "stopped_early": fit.stopped_early,
        "early_stopping": fit.validated,
        "oov_test_pairs": oov_pairs,
        "oov_test_pair_rate": oov_pairs / total_results if total_results else 0.0,
        "parameters": parameters,
        "history": [asdict(record) for record in fit.history],
        "reader_stats": stats,
        # The inputs read from disk every epoch rather than held in memory (Parquet shards only).
        "streamed": [name for name, log in logs.items() if isinstance(log, ShardedLog)],
        "config": asdict(config),
        "versions": _versions(),
        "processes": jax.process_count(),
        "devices": parallel.device_count if parallel is not None else 1,
    }
    if not writes_output:
        return summary
    (output / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    (output / "parameters.json").write_text(json.dumps(summary["parameters"], indent=2) + "\n")
    save_model(
        model,
        output / "model",
        config={
            "model": config.model,
            "positions": config.positions,
            "query_doc_pairs": table_rows,
        },
        pairs=pairs,
    )
    # `clickjax evaluate` and `export` read new logs with the training ids through this file.
    # Parquet shards carry the ids of the vocabulary they were ingested with, so that one is kept.
    if config.format != "parquet":
        save_vocabulary(vocabulary, output / "model" / VOCABULARY_FILE)
    elif (shard_vocabulary := shard_vocabulary_path(config.train)) is not None:
        shutil.copyfile(shard_vocabulary, output / "model" / VOCABULARY_FILE)
    else:
        logger.warning("no vocabulary.parquet beside the training shards: the model is saved without a vocabulary")
    # Per-pair counts, estimates and standard errors; GCTR and RCTR have no pair tables. Process 0
    # holds only its own share of the training log, so a run of several processes writes none.
    if pair_table_roles(model) and jax.process_count() == 1:
        write_pair_statistics(model, train.batches(config.batch_size), output / "model" / "pair-statistics.parquet")
    elif pair_table_roles(model):
        logger.warning("pair-statistics.parquet is not written by a run of several processes")
    return summary


def _versions() -> dict:
    import flax
    import optax
    import orbax.checkpoint

    return {
        "clickjax": __version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "orbax-checkpoint": orbax.checkpoint.__version__,
        "python": platform.python_version(),
    }


def _shard_pair_table_size(config: TrainingConfig, logs: list[ClickLog | None]) -> int:
    """Check that the train, validation and test shards share one vocabulary and return its pair table size."""
    inputs = [("train", config.train), ("validation", config.validation), ("test", config.test)]
    vocabularies = {role: ShardReader(paths).vocabulary for role, paths in inputs if paths}
    ids = {role: entry["id"] for role, entry in vocabularies.items() if entry is not None}
    if len(set(ids.values())) > 1:
        raise ValueError(
            "the train, validation and test shards were encoded with different vocabularies, so their ids do not "
            "match; ingest them as splits of one log (--split) or with --vocabulary set to the training vocabulary"
        )
    # The largest id seen also bounds the table, for shard files read without their manifest.
    largest_id = max(_max_pair_id(log) for log in logs if log is not None)
    sizes = [entry["pair_table_size"] for entry in vocabularies.values() if entry is not None]
    return max([largest_id + 1, *sizes])


def _read(
    config: TrainingConfig,
    paths: list[str],
    vocabulary: Vocabulary,
    role: str,
    *,
    parallel: DataParallel | None,
    bars: Progress,
    memory_limit: int | None,
    min_sessions_per_query: int = 1,
) -> ClickLog | ShardedLog:
    """Read a log into memory, or open Parquet shards for streaming when `config.stream` or their size requests it."""
    started = time.perf_counter()
    if config.format == "parquet" and (parallel is None or parallel.process_count == 1):
        shards = _open_shards(config, paths, role, parallel, memory_limit)
        if shards is not None:
            return shards
    # The rare-query rule shapes the training data. Applied to a test log it would drop test sessions
    # by their count there, so validation and test logs keep every query.
    options = {
        "positions": config.positions,
        "on_error": config.on_error,
        "document_key": config.document_key,
        "query_key": config.query_key,
        "behaviour": config.behaviour,
        "features": config.features,
        "min_results": config.min_results,
        "drop_sessions_without_clicks": config.drop_sessions_without_clicks,
        "threads": config.threads,
    }
    try:
        with bars.bar(f"reading the {role} log", unit=" sessions") as bar:
            if parallel is None or parallel.process_count == 1:
                log = ClickLog.read(
                    config.format, paths, vocabulary, min_sessions_per_query=min_sessions_per_query, on_batch=bar.update, **options
                )
            else:
                log = read_process_log(config.format, paths, vocabulary, min_sessions_per_query=min_sessions_per_query, **options)
    except FileNotFoundError as error:
        # Name the input that listed the path, since train, validation and test files all arrive here.
        raise FileNotFoundError(error.errno, f"{error.strerror} (a {role} file)", error.filename) from error
    if _total(log.num_sessions, parallel) == 0:
        stats = ", ".join(f"{name} {count}" for name, count in _total_stats(log, parallel).items() if count)
        raise ValueError(
            f"the {role} log has no sessions: {', '.join(paths)} (reader counts: {stats or 'none'}); "
            f"check the file and --format {config.format}"
        )
    logger.info(
        "read %d sessions from %d file(s) in %.2f s", log.num_sessions, len(paths), time.perf_counter() - started
    )
    return log


def _open_shards(
    config: TrainingConfig, paths: list[str], role: str, parallel: DataParallel | None, memory_limit: int | None
) -> ShardedLog | None:
    """Open the shards of one input for streaming, or return None when they are to be loaded into memory."""
    try:
        shards = ShardedLog(paths, positions=config.positions, buffer_sessions=config.shuffle_buffer, threads=config.threads)
    except FileNotFoundError as error:
        raise FileNotFoundError(error.errno, f"{error.strerror} (a {role} file)", error.filename) from error
    stream = config.stream
    if stream is None:
        stream = parallel is None and not loads_in_memory(shards.decoded_bytes, memory_limit)
    logger.info(
        "%s the %s shards (%s decoded)", "streaming" if stream else "loading", role, format_bytes(shards.decoded_bytes)
    )
    if not stream:
        return None
    if shards.num_sessions == 0:
        raise ValueError(f"the {role} log has no sessions: {', '.join(paths)}; check the shards and --format parquet")
    return shards


def _check_memory(
    config: TrainingConfig,
    pairs: int,
    validation: bool,
    max_memory: int | None,
    on_memory,
    stream_bytes: int = 0,
    mesh: bool = False,
) -> None:
    estimate = estimate_training_memory(
        config.model,
        config.positions,
        pairs,
        validation,
        table_optimizer=config.table_optimizer,
        sparse=config.sparse,
        stream_bytes=stream_bytes,
        mesh=mesh,
    )
    if max_memory is not None:
        limit, source = max_memory, "--max-memory"
    else:
        limit, source = available_memory()
    if on_memory is not None:
        on_memory(estimate, limit, source)
    if limit is not None and estimate.total > limit:
        raise MemoryLimitError(
            f"training {config.model} on {pairs - 2} query-document pairs needs an estimated "
            f"{format_bytes(estimate.total)}, more than the {format_bytes(limit)} of {source}; "
            "train on fewer files, or pass --max-memory with a larger limit (such as 64G) if more memory "
            "will be free"
        )


class _EpochLog:
    """Appends each epoch record to the JSONL file, advances the epoch bar and calls the user's callback."""

    def __init__(self, path: Path | None, callback: Callable[[EpochRecord], None] | None, bar, *, append: bool = False):
        self.path = path
        self.append = append
        self.callback = callback
        self.bar = bar
        self.file = None

    def __enter__(self) -> _EpochLog:
        # Processes other than the first write no files, so they get no path.
        if self.path is not None:
            # A resumed run appends, so that the epochs of the interrupted run stay until it ends.
            self.file = self.path.open("a" if self.append else "w")
        return self

    def __exit__(self, *exc_info) -> None:
        if self.file is not None:
            self.file.close()
        self.bar.close()

    def record(self, record: EpochRecord) -> None:
        if self.file is not None:
            self.file.write(json.dumps(asdict(record)) + "\n")
            self.file.flush()
        self.bar.update(1)
        if self.callback is not None:
            self.callback(record)


def _results(log: ClickLog | ShardedLog) -> int:
    """Count the real results (`mask` 1) of a log in memory or on disk."""
    if isinstance(log, ShardedLog):
        return log.results
    return int(np.sum(log.columns["mask"], dtype=np.int64))


def _max_pair_id(log: ClickLog | ShardedLog) -> int:
    if isinstance(log, ShardedLog):
        return log.max_pair_id
    return int(log.columns["query_doc_id"].max(initial=0))


def _total(value, parallel: DataParallel | None):
    """Sum a count over the processes (the value itself with one process)."""
    return value if parallel is None else parallel.sum_across_processes(value)


def _total_stats(log: ClickLog | None, parallel: DataParallel | None) -> dict[str, int] | None:
    """Sum the reader counters of a log over the processes."""
    if log is None or parallel is None or parallel.process_count == 1:
        return None if log is None else dict(log.stats)
    names = sorted(log.stats)
    totals = parallel.sum_across_processes(np.array([log.stats[name] for name in names], np.int64))
    return {name: int(count) for name, count in zip(names, totals)}


def _combined_training_pairs(train: ClickLog, table_rows: int, parallel: DataParallel) -> dict[str, np.ndarray]:
    """Merge the `training_pairs` of every process's share of the training log."""
    local = training_pairs(train)
    if parallel.process_count == 1:
        return local
    ids = local["query_doc_id"]
    # Row 0 counts the processes that saw each pair. Every process gives a pair the same query and
    # document, so their sums divided by that count are the ids themselves.
    by_pair = np.zeros((3, table_rows), np.int64)
    by_pair[0, ids] = 1
    by_pair[1, ids] = local["query_id"]
    by_pair[2, ids] = local["doc_id"]
    impressions = np.zeros(table_rows, np.float64)
    impressions[ids] = local["impressions"]
    clicks = np.zeros(table_rows, np.float64)
    clicks[ids] = local["clicks"]
    by_pair = parallel.sum_across_processes(by_pair)
    impressions = parallel.sum_across_processes(impressions)
    clicks = parallel.sum_across_processes(clicks)
    seen = np.flatnonzero(by_pair[0])
    return {
        "query_id": (by_pair[1, seen] // by_pair[0, seen]).astype(np.int32),
        "doc_id": (by_pair[2, seen] // by_pair[0, seen]).astype(np.int32),
        "query_doc_id": seen.astype(np.int32),
        "impressions": impressions[seen],
        "clicks": clicks[seen],
    }
