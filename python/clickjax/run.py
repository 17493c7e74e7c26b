"""One training run from raw log files to a folder of results, as `clickjax train` performs it.

`train_and_evaluate` reads the training log (building the vocabulary), freezes the vocabulary, reads
the validation and test logs with it, trains the model, evaluates it on the test log and writes:

- `metrics.json`: test metrics overall and per rank, session counts, training time, the readable
  parameters, the reader counters of every log and the configuration of the run;
- `parameters.json`: the readable parameters alone (examination by rank, continuation, ...);
- `model/`: the trained parameters and the training log's query-document pairs (see
  `clickjax.serialization`).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
from flax import nnx

from clickjax import __version__
from clickjax.data import ClickLog, Vocabulary
from clickjax.models import MODELS
from clickjax.report import LoadReport
from clickjax.serialization import save_model, training_pairs
from clickjax.training import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_TABLE_LEARNING_RATE,
    DEFAULT_TABLE_OPTIMIZER,
    EpochRecord,
    Trainer,
)

__all__ = ["TrainingConfig", "train_and_evaluate"]

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

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {', '.join(sorted(MODELS))}")
        if self.positions < 1:
            raise ValueError(f"--positions must be at least 1, got {self.positions}")
        for option in ("epochs", "batch_size", "patience"):
            value = getattr(self, option)
            if value < 1:
                raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
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
) -> dict:
    """Train and evaluate as `config` specifies, write the results to `output`, and return the summary.

    `on_loaded` receives the load report of each input ("train", "validation", "test") once every
    input is read, before training starts.
    """
    output = Path(output)

    # Read every input before training, so that an unusable validation or test file fails at once.
    vocabulary = Vocabulary()
    train = _read(config, config.train, vocabulary, "training")
    vocabulary.freeze()
    validation = _read(config, config.validation, vocabulary, "validation") if config.validation else None
    test = _read(config, config.test, vocabulary, "test")
    if on_loaded is not None:
        for name, log in [("train", train), ("validation", validation), ("test", test)]:
            if log is not None:
                on_loaded(LoadReport.from_stats(log.stats, name=name))

    # The configuration goes to the output folder once every input is known to be usable.
    output.mkdir(parents=True, exist_ok=True)
    (output / "run.json").write_text(json.dumps({"config": asdict(config), "versions": _versions()}, indent=2) + "\n")

    model = MODELS[config.model](
        positions=config.positions,
        query_doc_pairs=vocabulary.pair_table_size,
        rngs=nnx.Rngs(config.seed),
    )
    trainer = config.trainer(checkpoint_dir=output / "checkpoints", on_epoch=progress)
    fit = trainer.fit(model, train, validation, resume=config.resume)
    metrics = trainer.evaluate(model, test)

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
        "steps": fit.steps,
        "resumed_from_step": fit.resumed_from_step,
        "best_epoch": fit.best_epoch,
        "stopped_early": fit.stopped_early,
        "early_stopping": fit.validated,
        "oov_test_pairs": oov_pairs,
        "oov_test_pair_rate": oov_pairs / total_results if total_results else 0.0,
        "parameters": model.parameter_summary(),
        "history": [asdict(record) for record in fit.history],
        "reader_stats": {
            "train": train.stats,
            "validation": validation.stats if validation is not None else None,
            "test": test.stats,
        },
        "config": asdict(config),
        "versions": _versions(),
    }
    output.mkdir(parents=True, exist_ok=True)
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


def _read(config: TrainingConfig, paths: list[str], vocabulary: Vocabulary, role: str) -> ClickLog:
    started = time.perf_counter()
    try:
        log = ClickLog.read(
            config.format,
            paths,
            vocabulary,
            positions=config.positions,
            on_error=config.on_error,
            document_key=config.document_key,
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
