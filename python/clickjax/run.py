"""One training run from raw log files to a folder of results, as `clickjax train` performs it.

`train_and_evaluate` reads the training log (building the vocabulary), freezes the vocabulary, reads
the validation and test logs with it, trains the model, evaluates it on the test log and writes:

- `metrics.json`: test metrics overall and per rank, session counts, training time, the readable
  parameters, the reader counters of every log and the configuration of the run;
- `parameters.json`: the readable parameters alone (examination by rank with its standard
  errors, continuation, ...);
- `epochs.jsonl`: one JSON object per epoch (epoch, train_loss, validation_log_likelihood,
  seconds), appended as each epoch ends, so a run that is stopped keeps its history;
- `model/`: the trained parameters and the training log's query-document pairs (see
  `clickjax.serialization`), and the training vocabulary `model/vocabulary.parquet`
  (`clickjax.vocabulary`).

Before it allocates the model, `train_and_evaluate` estimates the memory that training needs
(`clickjax.memory`) and stops with `MemoryLimitError` when the estimate exceeds the memory
available or the `max_memory` given.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
from flax import nnx

from clickjax import __version__
from clickjax.data import ClickLog, Vocabulary
from clickjax.memory import MemoryEstimate, available_memory, estimate_training_memory, format_bytes
from clickjax.metrics import evaluate
from clickjax.models import MODELS
from clickjax.progress import Progress
from clickjax.report import LoadReport
from clickjax.serialization import VOCABULARY_FILE, save_model, training_pairs
from clickjax.training import DEFAULT_LEARNING_RATE, EpochRecord, Trainer
from clickjax.uncertainty import examination_standard_errors
from clickjax.vocabulary import save_vocabulary

__all__ = ["EPOCH_LOG", "MemoryLimitError", "TrainingConfig", "train_and_evaluate"]

# File of the epoch records, one JSON object per line.
EPOCH_LOG = "epochs.jsonl"


class MemoryLimitError(ValueError):
    """The estimated training memory exceeds the memory available or the limit given."""

logger = logging.getLogger(__name__)


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

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {', '.join(sorted(MODELS))}")
        if self.positions < 1:
            raise ValueError(f"--positions must be at least 1, got {self.positions}")
        for option in ("epochs", "batch_size", "patience", "min_results", "min_sessions_per_query"):
            value = getattr(self, option)
            if value < 1:
                raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--learning-rate must be a positive finite number, got {self.learning_rate}")


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

    # Read every input before training, so that an unusable validation or test file fails at once.
    vocabulary = Vocabulary()
    train = _read(config, config.train, vocabulary, "training", bars, min_sessions_per_query=config.min_sessions_per_query)
    vocabulary.freeze()
    validation = _read(config, config.validation, vocabulary, "validation", bars) if config.validation else None
    test = _read(config, config.test, vocabulary, "test", bars)
    if on_loaded is not None:
        for name, log in [("train", train), ("validation", validation), ("test", test)]:
            if log is not None:
                on_loaded(LoadReport.from_stats(log.stats, name=name, log_format=config.format))

    _check_memory(config, vocabulary.pair_table_size, validation is not None, max_memory, on_memory)
    model = MODELS[config.model](
        positions=config.positions,
        query_doc_pairs=vocabulary.pair_table_size,
        rngs=nnx.Rngs(config.seed),
    )
    output.mkdir(parents=True, exist_ok=True)
    with _EpochLog(output / EPOCH_LOG, progress, bars.bar("training", total=config.epochs, unit="epoch")) as epoch_log:
        trainer = Trainer(
            learning_rate=config.learning_rate,
            epochs=config.epochs,
            batch_size=config.batch_size,
            patience=config.patience,
            seed=config.seed,
            on_epoch=epoch_log.record,
        )
        fit = trainer.fit(model, train, validation)
    test_batches = bars.iterate(
        test.batches(config.batch_size), "evaluating", total=test.num_batches(config.batch_size), unit="batch"
    )
    metrics = evaluate(model, test_batches)
    parameters = model.parameter_summary()
    standard_errors = examination_standard_errors(model, train, config.batch_size)
    if standard_errors is not None and "examination_by_rank" in parameters:
        # Row 0 of the table is padding. UBM's column r' = 0 is examination with no click above.
        by_rank = standard_errors[1:] if standard_errors.ndim == 1 else standard_errors[1:, 0]
        parameters["examination_by_rank_standard_error"] = [None if math.isnan(v) else float(v) for v in by_rank]

    oov_pairs = test.stats.get("oov_pairs", 0)
    total_results = int(test.columns["mask"].sum())
    summary = {
        **metrics.to_dict(),
        "model": config.model,
        "train_sessions": train.num_sessions,
        "validation_sessions": validation.num_sessions if validation is not None else 0,
        "test_sessions": test.num_sessions,
        "train_seconds": fit.seconds,
        "epochs_run": len(fit.history),
        "best_epoch": fit.best_epoch,
        "stopped_early": fit.stopped_early,
        "early_stopping": fit.validated,
        "oov_test_pairs": oov_pairs,
        "oov_test_pair_rate": oov_pairs / total_results if total_results else 0.0,
        "parameters": parameters,
        "history": [asdict(record) for record in fit.history],
        "reader_stats": {
            "train": train.stats,
            "validation": validation.stats if validation is not None else None,
            "test": test.stats,
        },
        "config": asdict(config),
        "versions": {
            "clickjax": __version__,
            "jax": jax.__version__,
            "python": platform.python_version(),
        },
    }
    (output / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    (output / "parameters.json").write_text(json.dumps(summary["parameters"], indent=2) + "\n")
    save_model(
        model,
        output / "model",
        config={
            "model": config.model,
            "positions": config.positions,
            "query_doc_pairs": vocabulary.pair_table_size,
        },
        pairs=training_pairs(train),
    )
    # `clickjax evaluate` and `export` read new logs with the training ids through this file.
    save_vocabulary(vocabulary, output / "model" / VOCABULARY_FILE)
    return summary


def _read(
    config: TrainingConfig,
    paths: list[str],
    vocabulary: Vocabulary,
    role: str,
    bars: Progress,
    min_sessions_per_query: int = 1,
) -> ClickLog:
    # The rare-query rule shapes the training data. Applied to a test log it would drop test sessions
    # by their count there, so validation and test logs keep every query.
    started = time.perf_counter()
    try:
        with bars.bar(f"reading the {role} log", unit=" sessions") as bar:
            log = ClickLog.read(
                config.format,
                paths,
                vocabulary,
                positions=config.positions,
                on_error=config.on_error,
                document_key=config.document_key,
                query_key=config.query_key,
                behaviour=config.behaviour,
                features=config.features,
                min_results=config.min_results,
                min_sessions_per_query=min_sessions_per_query,
                drop_sessions_without_clicks=config.drop_sessions_without_clicks,
                on_batch=bar.update,
            )
    except FileNotFoundError as error:
        # Name the input that listed the path, since train, validation and test files all arrive here.
        raise FileNotFoundError(error.errno, f"{error.strerror} (a {role} file)", error.filename) from error
    if log.num_sessions == 0:
        stats = ", ".join(f"{name} {count}" for name, count in log.stats.items() if count)
        raise ValueError(
            f"the {role} log has no sessions: {', '.join(paths)} (reader counts: {stats or 'none'}); "
            f"check the file and --format {config.format}"
        )
    logger.info(
        "read %d sessions from %d file(s) in %.2f s", log.num_sessions, len(paths), time.perf_counter() - started
    )
    return log


def _check_memory(config: TrainingConfig, pairs: int, validation: bool, max_memory: int | None, on_memory) -> None:
    estimate = estimate_training_memory(config.model, config.positions, pairs, validation)
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

    def __init__(self, path: Path, callback: Callable[[EpochRecord], None] | None, bar):
        self.path = path
        self.callback = callback
        self.bar = bar
        self.file = None

    def __enter__(self) -> _EpochLog:
        self.file = self.path.open("w")
        return self

    def __exit__(self, *exc_info) -> None:
        self.file.close()
        self.bar.close()

    def record(self, record: EpochRecord) -> None:
        self.file.write(json.dumps(asdict(record)) + "\n")
        self.file.flush()
        self.bar.update(1)
        if self.callback is not None:
            self.callback(record)
