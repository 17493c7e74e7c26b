"""Training of click models by gradient descent on the exact log-likelihood.

`Trainer.fit` runs a jitted optax step over shuffled fixed-size batches for a number of epochs. With
validation data it evaluates the validation log-likelihood after each epoch, keeps the best
parameters, stops after `patience` epochs without improvement, and restores the best parameters at
the end. Without validation data it trains for exactly `epochs` epochs.

Example:

    model = PositionBasedModel(positions=10, query_doc_pairs=vocabulary.pair_table_size, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=50)
    result = trainer.fit(model, train, validation)
    print(trainer.evaluate(model, test).log_likelihood)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from clickjax.data import ClickLog
from clickjax.distributed import DataParallel
from clickjax.metrics import Metrics, evaluate

__all__ = ["EpochRecord", "FitResult", "Trainer"]

logger = logging.getLogger(__name__)

# Adam at this rate converges on per-pair logits within a few dozen epochs on logs of tens of
# thousands of sessions. The generic 1e-3 of deep learning needs hundreds.
DEFAULT_LEARNING_RATE = 0.05

# One training result in a hundred trains the out-of-vocabulary parameter (see `Trainer`).
DEFAULT_OOV_RATE = 0.01


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of training: the mean training loss and, if validated, the validation log-likelihood."""

    epoch: int
    train_loss: float
    validation_log_likelihood: float | None
    seconds: float


@dataclass
class FitResult:
    """Outcome of `Trainer.fit`.

    Attributes:
      history: one record per epoch run.
      best_epoch: the epoch whose parameters the model has at the end (the last one without
        validation data).
      stopped_early: whether early stopping ended training before `epochs`.
      validated: whether validation data was given.
      seconds: wall-clock training time, compilation included.
    """

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    validated: bool = False
    seconds: float = 0.0


class Trainer:
    """Fits click models with an optax optimiser.

    Args:
      optimizer: an optax transformation; defaults to Adam at `learning_rate`.
      learning_rate: learning rate of the default optimiser.
      epochs: maximum number of passes over the training log.
      batch_size: sessions per step; every step has this shape, the last batch is padded.
      patience: epochs without a better validation log-likelihood before training stops.
      min_delta: smallest gain in validation log-likelihood that counts as better.
      oov_rate: fraction of training results whose query-document pair is replaced by the
        out-of-vocabulary id 1 at each step. A vocabulary built from the training log gives every
        training pair its own id, so without this the out-of-vocabulary parameter, which test pairs
        unseen in training use, would never be trained. With it, that parameter learns the
        attraction of an average result. 0 turns it off.
      seed: seed of the shuffling and of the out-of-vocabulary draws; the same data and seed give
        the same parameters.
      on_epoch: called with each `EpochRecord` as it completes (the CLI prints progress with it).
      parallel: split each batch over the devices (and processes) of a `DataParallel` mesh;
        `batch_size` is then the global batch, a multiple of the device count. Each process
        passes its own share of the logs to `fit` and `evaluate` (see
        `clickjax.distributed.read_process_log`). None trains on JAX's default device.
    """

    def __init__(
        self,
        optimizer: optax.GradientTransformation | None = None,
        *,
        learning_rate: float = DEFAULT_LEARNING_RATE,
        epochs: int = 50,
        batch_size: int = 1024,
        patience: int = 3,
        min_delta: float = 1e-5,
        oov_rate: float = DEFAULT_OOV_RATE,
        seed: int = 0,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        parallel: DataParallel | None = None,
    ):
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if not 0.0 <= oov_rate < 1.0:
            raise ValueError(f"oov_rate must be in [0, 1), got {oov_rate}")
        self.optimizer = optimizer if optimizer is not None else optax.adam(learning_rate)
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.min_delta = min_delta
        self.oov_rate = oov_rate
        self.seed = seed
        self.on_epoch = on_epoch
        self.parallel = parallel
        if parallel is not None:
            parallel.local_batch_size(batch_size)

    def fit(self, model: nnx.Module, train: ClickLog, validation: ClickLog | None = None) -> FitResult:
        """Train `model` in place on `train`, with early stopping on `validation` if given."""
        if self._total_sessions(train) == 0:
            raise ValueError("the training log has no sessions; check the reader's stats")
        if self.parallel is not None:
            self.parallel.shard_model(model)
        optimizer = nnx.Optimizer(model, self.optimizer, wrt=nnx.Param)
        result = FitResult(validated=validation is not None)
        best_log_likelihood = -np.inf
        best_state = None
        epochs_without_gain = 0
        if validation is None:
            logger.info("no validation data: training for %d epochs without early stopping", self.epochs)

        started = time.perf_counter()
        for epoch in range(1, self.epochs + 1):
            epoch_started = time.perf_counter()
            train_loss = self._run_epoch(model, optimizer, train, epoch)
            validation_log_likelihood = None
            if validation is not None:
                validation_log_likelihood = self.evaluate(model, validation).log_likelihood
            record = EpochRecord(
                epoch, train_loss, validation_log_likelihood, time.perf_counter() - epoch_started
            )
            result.history.append(record)
            logger.info("epoch %d: %s", epoch, record)
            if self.on_epoch is not None:
                self.on_epoch(record)

            if not np.isfinite(train_loss):
                raise FloatingPointError(
                    f"training loss became {train_loss} in epoch {epoch}; "
                    "lower the learning rate or clip gradients"
                )
            if validation_log_likelihood is None:
                result.best_epoch = epoch
                continue
            if validation_log_likelihood > best_log_likelihood + self.min_delta:
                best_log_likelihood = validation_log_likelihood
                best_state = _copy_state(model)
                result.best_epoch = epoch
                epochs_without_gain = 0
            else:
                epochs_without_gain += 1
                if epochs_without_gain >= self.patience:
                    result.stopped_early = epoch < self.epochs
                    break

        if best_state is not None:
            nnx.update(model, best_state)
            if self.parallel is not None:
                self.parallel.shard_model(model)
        result.seconds = time.perf_counter() - started
        return result

    def evaluate(self, model: nnx.Module, log: ClickLog) -> Metrics:
        """Compute the metrics of `model` on `log`; the model is not changed.

        With several processes each passes its own share of the log, and the metric sums of all
        shares are added up before any metric is computed, so every process gets the metrics of
        the whole log.
        """
        return evaluate(model, map(self._place, self._batches(log)))

    def _batches(self, log: ClickLog, *, shuffle: bool = False, seed: int = 0):
        if self.parallel is None:
            return log.batches(self.batch_size, shuffle=shuffle, seed=seed)
        return self.parallel.batches(log, self.batch_size, shuffle=shuffle, seed=seed)

    def _place(self, batch: dict[str, np.ndarray]):
        """Return a host batch for a step: split over the `parallel` mesh, or unchanged.

        An unchanged numpy batch is copied to the default device by the jitted step.
        """
        if self.parallel is None:
            return batch
        return self.parallel.place(batch)

    def _total_sessions(self, log: ClickLog) -> int:
        if self.parallel is None:
            return log.num_sessions
        return int(self.parallel.sum_across_processes(log.num_sessions))

    def _run_epoch(self, model, optimizer, train: ClickLog, epoch: int) -> float:
        total_loss = 0.0
        total_weight = 0.0
        epoch_key = jax.random.fold_in(jax.random.key(self.seed), epoch)
        batches = self._batches(train, shuffle=True, seed=self.seed * 100_003 + epoch)
        for step, batch in enumerate(batches):
            oov_key = jax.random.fold_in(epoch_key, step)
            loss, weight = _train_step(model, optimizer, self._place(batch), oov_key, self.oov_rate)
            total_loss += float(loss) * float(weight)
            total_weight += float(weight)
        return total_loss / max(total_weight, 1.0)


@nnx.jit
def _train_step(model, optimizer, batch, oov_key, oov_rate):
    batch = _replace_with_oov(batch, oov_key, oov_rate)
    loss, grads = nnx.value_and_grad(lambda m: m.loss(batch))(model)
    optimizer.update(model, grads)
    results = (batch["weight"][:, None] * batch["mask"]).sum()
    return loss, results


def _replace_with_oov(batch, key, rate):
    """Replace the pair id of a random `rate` fraction of real results by the out-of-vocabulary id 1."""
    real = batch["mask"] == 1
    replaced = jax.random.bernoulli(key, rate, real.shape) & real
    return {**batch, "query_doc_id": jnp.where(replaced, 1, batch["query_doc_id"])}


def _copy_state(model: nnx.Module):
    # nnx.state returns live references to the parameters; copy them to keep a snapshot. An
    # array spread over several processes cannot be read whole here, so it is copied on its devices.
    return jax.tree.map(_copy_array, nnx.state(model, nnx.Param))


def _copy_array(array):
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        return jnp.array(array, copy=True)
    return np.array(array, copy=True)
