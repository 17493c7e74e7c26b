"""Training of click models by gradient descent on the exact log-likelihood.

`Trainer.fit` runs a jitted step over shuffled fixed-size batches for a number of epochs or steps.
Per-pair tables (`EmbeddingLogits`) are trained by a `TableRule` (Adagrad by default) and, unless
`sparse=False`, with sparse updates: only the rows of a batch are read and written. Every other
parameter is trained by an optax optimiser (Adam by default). With validation data the trainer
evaluates the validation log-likelihood after each epoch, keeps the best parameters, stops after
`patience` epochs without improvement and restores the best parameters at the end.

A step whose loss or gradient is not finite changes nothing: training stops with a
`TrainingDivergedError` that names the epoch, the step and the rows of the batch, and the model
keeps the parameters of the last good step. With `checkpoint_dir`, the trainer saves its whole
state with Orbax every `checkpoint_every` steps and at the end of each epoch, and
`fit(..., resume=True)` continues from the latest checkpoint to the same parameters as a run that
was never interrupted.

With a `clickjax.distributed.DataParallel` mesh, each batch is split over the devices (and
processes) of the mesh, and the whole training state (parameters, table slots, optimiser state)
lives in the mesh's shardings: replicated, or with the rows of each per-pair table and of its
slots split over the devices (`table_sharding="rows"`).

Example:

    model = PositionBasedModel(positions=10, query_doc_pairs=vocabulary.pair_table_size, rngs=nnx.Rngs(0))
    trainer = Trainer(epochs=20)
    result = trainer.fit(model, train, validation)
    print(trainer.evaluate(model, test).log_likelihood)
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import clickjax.sparse
from clickjax.data import ClickLog
from clickjax.distributed import DataParallel
from clickjax.metrics import Metrics, evaluate
from clickjax.parameters import EmbeddingLogits
from clickjax.pipeline import BatchPipeline
from clickjax.sparse import (
    TABLE_OPTIMIZERS,
    TableRule,
    distinct_ids,
    find_representatives,
    gather_rows,
    representative_rows,
    scatter_rows,
)

__all__ = [
    "EpochRecord",
    "FitResult",
    "OPTIMIZERS",
    "SCHEDULES",
    "TABLE_OPTIMIZERS",
    "Trainer",
    "TrainingDivergedError",
]

logger = logging.getLogger(__name__)

# Adam at this rate converges on the global and per-rank logits within a few epochs. The generic
# 1e-3 of deep learning needs hundreds.
DEFAULT_LEARNING_RATE = 0.05

# Adagrad at this rate on the per-pair tables: a pair's step shrinks with the square root of its
# summed squared gradients, so rare pairs take large steps and frequent pairs settle. Chosen on
# the WSCD sample (see docs/training.md).
DEFAULT_TABLE_OPTIMIZER = "adagrad"
DEFAULT_TABLE_LEARNING_RATE = 0.3

# One training result in a hundred trains the out-of-vocabulary parameter (see `Trainer`).
DEFAULT_OOV_RATE = 0.01

# Batches prepared and placed on the device ahead of the step that uses them.
DEFAULT_PREFETCH = 2

# The layout of the training state that checkpoints record (see `_State`).
_STATE_LAYOUT = 2

# Steps dispatched and not yet checked for a non-finite loss: the device's queue of work.
_STEPS_IN_FLIGHT = 2

OPTIMIZERS = ("adam", "sgd", "adagrad", "rmsprop")
SCHEDULES = ("constant", "warmup", "cosine")

# Name of the batch column that a sparse table reads its per-result values by (0, 1, 2, ...).
_LOCAL_COLUMN = "_local_{}"
# Names of the batch columns that `distinct_ids` adds on the host for an id column.
_DISTINCT_COLUMN = "_distinct_{}"
_INVERSE_COLUMN = "_inverse_{}"


class TrainingDivergedError(FloatingPointError):
    """A training step produced a loss or gradient that is not finite.

    Attributes:
      epoch: the epoch of the step, from 1.
      step: the step within the epoch, from 0.
      global_step: the number of steps taken before it in the whole run.
      rows: the row numbers, in the training log, of the batch's sessions; empty for a log
        streamed from disk.
    """

    def __init__(self, epoch: int, step: int, global_step: int, rows: np.ndarray):
        self.epoch = epoch
        self.step = step
        self.global_step = global_step
        self.rows = rows
        shown = ", ".join(str(row) for row in rows[:20]) + (", ..." if len(rows) > 20 else "")
        # A log streamed from disk (`ShardedLog`) does not report the rows of its batches.
        batch = f"the batch of training-log rows [{shown}]" if len(rows) else "a batch streamed from disk"
        super().__init__(
            f"the training loss or its gradient is not finite in epoch {epoch}, step {step} "
            f"(global step {global_step}), on {batch}; the model "
            "keeps the parameters of the previous step. Lower the learning rate, set clip_norm "
            "(--clip-norm), or check those sessions for ids outside the model's tables"
        )


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of training: the mean training loss and, if validated, the validation log-likelihood."""

    epoch: int
    train_loss: float
    validation_log_likelihood: float | None
    seconds: float
    steps: int = 0


@dataclass
class FitResult:
    """Outcome of `Trainer.fit`.

    Attributes:
      history: one record per epoch run, a partial last epoch included when `max_steps` ends it.
      best_epoch: the epoch whose parameters the model has at the end (the last one without
        validation data).
      stopped_early: whether early stopping ended training before `epochs`.
      validated: whether validation data was given.
      seconds: wall-clock training time, compilation included (of this call alone when resumed).
      steps: the number of steps taken, over all calls when resumed.
      resumed_from_step: the step of the checkpoint this call resumed from, or None.
    """

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    validated: bool = False
    seconds: float = 0.0
    steps: int = 0
    resumed_from_step: int | None = None


class Trainer:
    """Fits click models: per-pair tables with a table rule, every other parameter with optax.

    Args:
      optimizer: the optimiser of the parameters that are not per-pair tables: one of
        `OPTIMIZERS` by name, or an optax transformation. A transformation is used as given,
        without `learning_rate`, `schedule` or `weight_decay`, and, unless `table_optimizer` is
        also given, for the per-pair tables too, trained densely.
      learning_rate: peak learning rate of a named optimiser.
      table_optimizer: the rule of the per-pair tables, one of `TABLE_OPTIMIZERS`.
      table_learning_rate: peak learning rate of the table rule.
      sparse: True to update only the rows of a batch in every per-pair table, False for dense
        updates, or the names of the tables to update sparsely (module paths joined by `/`,
        such as `attraction`). A table built with a `prior` is always updated densely, because
        its penalty has a gradient on every row.
      schedule: `constant`, `warmup` (linear from 0 over `warmup_steps`, then constant) or
        `cosine` (linear warm-up over `warmup_steps`, then cosine decay to 0 at the last step).
        It scales both learning rates.
      warmup_steps: steps of linear warm-up for the `warmup` and `cosine` schedules.
      clip_norm: if set, gradients are scaled down so that their global norm over all
        parameters is at most this.
      weight_decay: decoupled weight decay: each step moves a parameter towards 0 by
        `learning_rate * weight_decay * value`. Sparse tables decay only the rows of the batch.
      epochs: maximum number of passes over the training log.
      max_steps: if set, training stops after this many steps in total, even mid-epoch.
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
      prefetch: batches prepared on a worker thread and placed on the device ahead of the step.
      checkpoint_dir: folder for Orbax checkpoints of the training state; None saves none.
      checkpoint_every: save a checkpoint every this many steps, besides the end of each epoch.
      on_epoch: called with each `EpochRecord` as it completes (the CLI prints progress with it).
      parallel: split each batch over the devices (and processes) of a `DataParallel` mesh;
        `batch_size` is then the global batch, a multiple of the device count. Each process
        passes its own share of the logs to `fit` and `evaluate` (see
        `clickjax.distributed.read_process_log`). None trains on JAX's default device.
        `checkpoint_dir` is not supported with several processes yet.
    """

    def __init__(
        self,
        optimizer: str | optax.GradientTransformation = "adam",
        *,
        learning_rate: float = DEFAULT_LEARNING_RATE,
        table_optimizer: str | None = None,
        table_learning_rate: float = DEFAULT_TABLE_LEARNING_RATE,
        sparse: bool | Collection[str] = True,
        schedule: str = "constant",
        warmup_steps: int = 0,
        clip_norm: float | None = None,
        weight_decay: float = 0.0,
        epochs: int = 50,
        max_steps: int | None = None,
        batch_size: int = 1024,
        patience: int = 3,
        min_delta: float = 1e-5,
        oov_rate: float = DEFAULT_OOV_RATE,
        seed: int = 0,
        prefetch: int = DEFAULT_PREFETCH,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        parallel: DataParallel | None = None,
    ):
        _check_at_least("epochs", epochs, 1)
        _check_at_least("batch_size", batch_size, 1)
        _check_at_least("patience", patience, 1)
        _check_at_least("warmup_steps", warmup_steps, 0)
        _check_at_least("prefetch", prefetch, 0)
        if max_steps is not None:
            _check_at_least("max_steps", max_steps, 1)
        if checkpoint_every is not None:
            _check_at_least("checkpoint_every", checkpoint_every, 1)
        if not 0.0 <= oov_rate < 1.0:
            raise ValueError(f"oov_rate must be in [0, 1), got {oov_rate}")
        for name, value in [("learning_rate", learning_rate), ("table_learning_rate", table_learning_rate)]:
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")
        if clip_norm is not None and not (math.isfinite(clip_norm) and clip_norm > 0):
            raise ValueError(f"clip_norm must be a positive finite number, got {clip_norm}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        if not isinstance(optimizer, (str, optax.GradientTransformation)):
            raise TypeError(f"optimizer must be a name or an optax transformation, got {type(optimizer).__name__}")
        if isinstance(sparse, str):
            raise TypeError("sparse must be a bool or a collection of table names, not a single string")
        if parallel is not None:
            parallel.local_batch_size(batch_size)  # raises unless the batch splits evenly over the devices
            if checkpoint_dir is not None and parallel.process_count > 1:
                # NOTE: Orbax would have to save every sharded array from every process at once,
                # and the checkpoint store copies arrays to the host, which only works with one process.
                raise ValueError(
                    "checkpoint_dir is not supported with several processes yet; leave it out "
                    f"(this mesh spans {parallel.process_count} processes)"
                )

        self.optimizer = optimizer
        self.learning_rate = learning_rate
        # A given optax transformation trains the tables too unless a table rule is named.
        custom = not isinstance(optimizer, str)
        self.table_rule = None if custom and table_optimizer is None else TableRule(table_optimizer or DEFAULT_TABLE_OPTIMIZER)
        self.table_learning_rate = table_learning_rate
        self.sparse = sparse if isinstance(sparse, bool) else frozenset(sparse)
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.clip_norm = clip_norm
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.patience = patience
        self.min_delta = min_delta
        self.oov_rate = oov_rate
        self.seed = seed
        self.prefetch = prefetch
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = checkpoint_every
        self.on_epoch = on_epoch
        self.parallel = parallel
        self._compiled: dict = {}

    # ---------------------------------------------------------------- public interface

    def fit(
        self, model: nnx.Module, train: ClickLog, validation: ClickLog | None = None, *, resume: bool = False
    ) -> FitResult:
        """Train `model` in place on `train`, with early stopping on `validation` if given.

        Args:
          model: a click model, or any NNX module with a `loss(batch)` method.
          train: the training log.
          validation: the log whose log-likelihood decides early stopping, or None.
          resume: continue from the latest checkpoint in `checkpoint_dir`, if there is one.
            The model, data and options must be those of the interrupted run.

        Raises:
          TrainingDivergedError: a step's loss or gradient is not finite.
          ValueError: the training log is empty, or a checkpoint does not match this run.
        """
        from clickjax.checkpoints import CheckpointStore  # Orbax loads slowly; import it only when used

        if self._total(train.num_sessions) == 0:
            raise ValueError("the training log has no sessions; check the reader's stats")
        if resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir, the folder of the run's checkpoints")
        started = time.perf_counter()
        if self.parallel is not None:
            self.parallel.shard_model(model)
        plan = _Plan.build(model, self, train, train_weight=lambda: self._total(_result_weight(train, self.batch_size)))
        step = plan.step_function(self, self.total_steps(train), lambda optimizer: self._state_shardings(model, plan, optimizer))
        first_stream = None
        if not resume and not hasattr(train, "columns") and step.columns is not None:
            # A log streamed from disk fills the first epoch's shuffle buffer while the state is set up.
            seed = _shuffle_seed(self.seed, 1)
            first_stream = _StreamAhead(1, self._shuffled_stream(plan, step, train, seed), batches=self.prefetch + 1)
        initial = plan.initial_state(model, step.dense_optimizer, self.table_rule)
        scratch = self._place_state(plan.initial_scratch(), step.scratch_shardings)
        run = _Run(plan, step, self._place_state(initial, step.shardings), scratch)
        run.next_stream = first_stream
        progress = _Progress(validated=validation is not None)
        store = None
        if self.checkpoint_dir is not None:
            store = CheckpointStore(self.checkpoint_dir, fingerprint=plan.fingerprint(self, train, model))
            if resume:
                restored = store.restore_latest(run.state, progress)
                if restored is not None:
                    run.state, progress = restored
                    run.state = self._place_state(run.state, step.shardings)
                    progress.resumed_from_step = progress.step
                    logger.info("resumed from the checkpoint at step %d (epoch %d)", progress.step, progress.epoch)
        if validation is None and not progress.finished:
            logger.info("no validation data: training without early stopping")
        try:
            self._train(model, run, progress, train, validation, store)
        except TrainingDivergedError:
            # The step that failed and every step after it changed nothing.
            plan.write_back(model, run.state)
            raise
        finally:
            if store is not None:
                store.close()
        plan.write_back(model, progress.best_state if progress.best_state is not None else run.state)
        if self.parallel is not None:
            # The best parameters may be host copies, which `write_back` puts on the default device.
            self.parallel.shard_model(model)
        return progress.result(time.perf_counter() - started)

    def evaluate(self, model: nnx.Module, log: ClickLog) -> Metrics:
        """Compute the metrics of `model` on `log`; the model is not changed.

        With several processes each passes its own share of the log, and the metric sums of all
        shares are added up before any metric is computed, so every process gets the metrics of
        the whole log.
        """
        return evaluate(model, map(self._place, self._batches(log)))

    def steps_per_epoch(self, log: ClickLog) -> int:
        """Number of steps of one epoch over `log`; with several processes, over the logs of all of them."""
        if self.parallel is None:
            return -(-log.num_sessions // self.batch_size)
        return self.parallel.num_steps(log, self.batch_size)

    def total_steps(self, log: ClickLog) -> int:
        """Number of steps of the whole run without early stopping: the `cosine` schedule ends there."""
        steps = self.epochs * self.steps_per_epoch(log)
        return steps if self.max_steps is None else min(steps, self.max_steps)

    def _place(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Copy a batch to the device, or split it over the `parallel` mesh.

        This is the one place where batches meet devices and shardings.
        """
        if self.parallel is None:
            return jax.device_put(batch)
        return self.parallel.place(batch)

    def _batches(self, log: ClickLog, *, shuffle: bool = False, seed: int = 0):
        """Yield this process's padded numpy batches of `log`, the same number on every process."""
        if self.parallel is None:
            return log.batches(self.batch_size, shuffle=shuffle, seed=seed)
        return self.parallel.batches(log, self.batch_size, shuffle=shuffle, seed=seed)

    def _start_next_stream(self, run, train, epoch: int) -> None:
        """Start reading the stream of `epoch` on a thread of its own (see `_StreamAhead`)."""
        stream = self._stream(run, train, _shuffle_seed(self.seed, epoch), None, None)
        run.next_stream = _StreamAhead(epoch, stream, batches=self.prefetch + 1)

    def _stream(self, run, train, seed: int, count, halted):
        """Return the shuffled batches of a log streamed from disk, with only the columns the step reads.

        A log whose `batches` takes `columns` (`clickjax.shards.ShardedLog`) then decodes only
        those. The step's columns are found from the log's first batch, read for this once.
        """
        if run.step.columns is None and self._streams_columns(train):
            first = run.plan.with_distinct_ids(next(iter(train.batches(self.batch_size))))
            run.step.columns = _columns_read(run.step.function, (run.state, run.scratch, first, count, halted))
        return self._shuffled_stream(run.plan, run.step, train, seed)

    def _shuffled_stream(self, plan, step, train, seed: int):
        """Return the shuffled batches of a log streamed from disk, with the step's columns once they are known."""
        if step.columns is None or not self._streams_columns(train):
            return self._batches(train, shuffle=True, seed=seed)
        return train.batches(self.batch_size, shuffle=True, seed=seed, columns=plan.source_columns(step.columns))

    def _streams_columns(self, train) -> bool:
        """Tell whether `train.batches` can read only some columns (`clickjax.shards.ShardedLog` without a mesh)."""
        return self.parallel is None and "columns" in inspect.signature(train.batches).parameters

    def _local_batch_size(self) -> int:
        """Rows of a batch that this process contributes: `batch_size` without a mesh."""
        return self.batch_size if self.parallel is None else self.parallel.local_batch_size(self.batch_size)

    def _total(self, count: int | float) -> int | float:
        """Sum a host count over the processes (the count itself with one process)."""
        if self.parallel is None or self.parallel.process_count == 1:
            return count
        return self.parallel.sum_across_processes(count).item()

    def _state_shardings(self, model: nnx.Module, plan: _Plan, dense_optimizer) -> tuple[_State, tuple] | None:
        """Return the sharding of every array of the training state and of the scratch arrays, or None without a mesh.

        A table slot is sharded like its table, and the scratch array of an id column like the
        largest sparse table indexed by that column. An optimiser-state array whose path ends with a
        parameter's path (the moments of dense Adam, for example) is sharded like that parameter.
        Everything else, such as step counts and loss sums, is replicated.
        """
        if self.parallel is None:
            return None
        by_path = self.parallel.parameter_shardings(model)
        replicated = self.parallel.replicated
        tables = tuple(by_path[path] for path in plan.sparse_paths)
        sharded = {path: sharding for path, sharding in by_path.items() if sharding != replicated}

        def optimizer_leaf(key_path, leaf):
            names = _names(key_path)
            for path, sharding in sharded.items():
                if names[-len(path) :] == path and len(leaf.shape) > 0:
                    return sharding
            return replicated

        shapes = jax.eval_shape(lambda: plan.initial_state(model, dense_optimizer, self.table_rule))
        state = _State(
            tables=tables,
            dense=jax.tree_util.tree_map_with_path(lambda key_path, _: by_path[_names(key_path)], shapes.dense),
            optimizer_state=jax.tree_util.tree_map_with_path(optimizer_leaf, shapes.optimizer_state),
            loss_sum=replicated,
            weight_sum=replicated,
        )
        scratch = tuple(tables[plan.sparse_paths.index(path)] for path in plan.scratch_tables)
        return state, scratch

    def _place_state(self, state, shardings):
        """Put every array of the training state (or of the scratch arrays) in its sharding on the mesh.

        Without a mesh (`shardings` None) the arrays are returned unchanged.
        """
        if shardings is None:
            return state
        return jax.tree.map(self.parallel.put, state, shardings)

    # ---------------------------------------------------------------- training loop

    def _train(self, model, run, progress, train, validation, store) -> None:
        steps_per_epoch = self.steps_per_epoch(train)
        while not progress.finished:
            if progress.epoch >= self.epochs or self._step_budget_spent(progress):
                progress.finished = True
                break
            epoch = progress.epoch + 1
            epoch_started = time.perf_counter()
            self._run_epoch(run, progress, train, epoch, steps_per_epoch, store)
            self._end_epoch(model, run, progress, validation, epoch, epoch_started)
            if store is not None:
                store.save(run.state, progress, wait=progress.finished)

    def _run_epoch(self, run, progress, train, epoch, steps_per_epoch, store) -> None:
        # Each process shuffles its own sessions. A process whose sessions run out before the
        # last step of the epoch gets batches of empty sessions, as `DataParallel.batches` does.
        # A log without columns in memory (`ShardedLog`) streams its shuffled batches instead.
        order, stream = None, None
        shuffle_seed = _shuffle_seed(self.seed, epoch)
        halted = jnp.zeros((), bool)
        if not hasattr(train, "columns"):
            if run.next_stream is not None and run.next_stream.epoch == epoch:
                stream = run.next_stream
            else:
                stream = self._stream(run, train, shuffle_seed, np.int32(progress.step), halted)
            run.next_stream = None
            if epoch < self.epochs:
                stream = _then(stream, functools.partial(self._start_next_stream, run, train, epoch + 1))
        else:
            order = _epoch_order(train.num_sessions, shuffle_seed)
        first = progress.epoch_step
        last = steps_per_epoch
        if self.max_steps is not None:
            last = min(last, first + self.max_steps - progress.step)
        oov = None
        if self.oov_rate > 0:
            # The draws depend on the process too, so that processes draw for their own sessions.
            draw_seed = (self.seed, epoch, jax.process_index())
            oov = functools.partial(_replace_with_oov, rate=self.oov_rate, seed=draw_seed)
        prepare = _prepare_on_worker(oov, run.plan)
        # (epoch step, global step, rows, halted flag) of the steps not yet checked, oldest first.
        pending: deque = deque()
        batch_size = self._local_batch_size()
        pipeline = BatchPipeline(
            train,
            order,
            batch_size,
            range(first, last),
            self._place,
            self.prefetch,
            stream=stream,
            prepare=prepare,
            columns=None if run.step.columns is None else run.plan.source_columns(run.step.columns),
        )
        with pipeline:
            for epoch_step, rows, batch in pipeline:
                # A numpy scalar reaches the jitted step without a dispatch of its own.
                count = np.int32(progress.step)
                if run.step.columns is None:
                    run.step.columns = _columns_read(run.step.function, (run.state, run.scratch, batch, count, halted))
                    pipeline.columns = run.plan.source_columns(run.step.columns)
                # The step compiles for these columns only, and the worker stops cutting the others.
                batch = {name: batch[name] for name in run.step.columns}
                run.state, run.scratch, halted = run.step.run(run.state, run.scratch, batch, count, halted)
                pending.append((epoch_step, progress.step, rows, halted))
                # Check only steps older than the last `_STEPS_IN_FLIGHT`, so the device has queued
                # work while this thread waits for the next batch or for the GIL.
                while len(pending) > _STEPS_IN_FLIGHT:
                    _check_finite(pending.popleft(), epoch)
                progress.step += 1
                progress.epoch_step = epoch_step + 1
                if store is not None and self.checkpoint_every and progress.step % self.checkpoint_every == 0:
                    _check_all_finite(pending, epoch)
                    if progress.epoch_step < steps_per_epoch:
                        store.save(run.state, progress, wait=False)
            _check_all_finite(pending, epoch)

    def _end_epoch(self, model, run, progress, validation, epoch, epoch_started) -> None:
        state = run.state
        train_loss = float(state.loss_sum) / max(float(state.weight_sum), 1.0)
        run.plan.write_back(model, state)
        validation_log_likelihood = None
        if validation is not None:
            validation_log_likelihood = self.evaluate(model, validation).log_likelihood
        steps = progress.epoch_step
        record = EpochRecord(epoch, train_loss, validation_log_likelihood, time.perf_counter() - epoch_started, steps)
        progress.history.append(record)
        progress.epoch = epoch
        progress.epoch_step = 0
        state.loss_sum = jnp.zeros((), jnp.float32)
        state.weight_sum = jnp.zeros((), jnp.float32)
        logger.info("epoch %d: %s", epoch, record)
        if self.on_epoch is not None:
            self.on_epoch(record)

        if validation_log_likelihood is None:
            progress.best_epoch = epoch
        elif validation_log_likelihood > progress.best_log_likelihood + self.min_delta:
            progress.best_log_likelihood = validation_log_likelihood
            progress.best_state = _copy_parameters(state)
            progress.best_epoch = epoch
            progress.epochs_without_gain = 0
        else:
            progress.epochs_without_gain += 1
            if progress.epochs_without_gain >= self.patience:
                progress.stopped_early = epoch < self.epochs
                progress.finished = True
        if epoch >= self.epochs or self._step_budget_spent(progress):
            progress.finished = True

    def _step_budget_spent(self, progress) -> bool:
        return self.max_steps is not None and progress.step >= self.max_steps

    # ---------------------------------------------------------------- optimisers

    def _schedule(self, peak: float, total_steps: int) -> optax.Schedule:
        if self.schedule == "constant" or (self.schedule == "warmup" and self.warmup_steps == 0):
            return optax.constant_schedule(peak)
        if self.schedule == "warmup":
            return optax.linear_schedule(0.0, peak, self.warmup_steps)
        warmup = min(self.warmup_steps, max(total_steps - 1, 0))
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1), end_value=0.0)

    def _transformation(self, scale: optax.GradientTransformation, peak: float, total_steps: int):
        parts = [scale]
        if self.weight_decay:
            parts.append(optax.add_decayed_weights(self.weight_decay))
        parts.append(optax.scale_by_learning_rate(self._schedule(peak, total_steps)))
        return optax.chain(*parts)

    def _dense_optimizer(self, total_steps: int) -> optax.GradientTransformation:
        if not isinstance(self.optimizer, str):
            return self.optimizer
        scale = {
            "adam": optax.scale_by_adam,
            "sgd": optax.identity,
            "adagrad": optax.scale_by_rss,
            "rmsprop": optax.scale_by_rms,
        }[self.optimizer]()
        return self._transformation(scale, self.learning_rate, total_steps)

    def _dense_table_optimizer(self, total_steps: int) -> optax.GradientTransformation:
        return self._transformation(self.table_rule.dense_transformation(), self.table_learning_rate, total_steps)


def _check_finite(pending, epoch: int) -> None:
    epoch_step, global_step, rows, halted = pending
    if bool(halted):
        raise TrainingDivergedError(epoch, epoch_step, global_step, rows)


def _check_all_finite(pending: deque, epoch: int) -> None:
    """Check the pending steps oldest first, so that an error names the first step that failed."""
    while pending:
        _check_finite(pending.popleft(), epoch)


def _check_at_least(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")


def _result_weight(log: ClickLog, batch_size: int) -> float:
    """Return the weighted number of real results in `log`; a log streamed from disk is read once for it."""
    if hasattr(log, "columns"):
        batches = [log.columns]
    else:
        batches = log.batches(batch_size)
    return float(sum((batch["weight"][:, None] * batch["mask"]).sum() for batch in batches))


def _shuffle_seed(seed: int, epoch: int) -> int:
    """Return the seed of the order in which `epoch` visits the sessions."""
    return seed * 100_003 + epoch


def _epoch_order(sessions: int, seed: int) -> np.ndarray:
    """Return the order in which an epoch visits the sessions, drawn from the epoch's shuffle seed."""
    return np.random.default_rng(seed).permutation(sessions)


@functools.partial(jax.jit, static_argnums=1)
def _with_slots(table: jax.Array, rule: TableRule) -> jax.Array:
    """Return a table's training array: its logits in column 0, then the rule's initial slots."""
    return jnp.stack([table, *rule.init(table).values()], axis=1)


@jax.jit
def _logits(table: jax.Array) -> jax.Array:
    """Return column 0 of a table's training array, its logits.

    Jitted, it makes one new array. Eagerly, the slice and the reshape would each make one.
    """
    return table[:, 0]


def _copy_parameters(state: _State) -> tuple:
    """Copy the parameters of the training state, whose buffers the next step donates.

    An array spread over several processes cannot be read whole here, so it is copied on its
    devices; every other array is copied to the host. A table's logits are copied to the host
    straight from its column, without a device array in between.
    """
    tables = tuple(
        _logits(table) if not table.is_fully_addressable else np.array(np.asarray(table)[:, 0])
        for table in state.tables
    )
    return tables, jax.tree.map(_copy_array, state.dense)


def _copy_array(array):
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        return jnp.array(array, copy=True)
    return np.array(array, copy=True)


# ---------------------------------------------------------------- training state


@jax.tree_util.register_dataclass
@dataclass
class _State:
    """Everything a step reads and writes, as one pytree (also what a checkpoint saves).

    `tables` contains one array `[rows, 1 + slots]` per sparse table, in `_Plan.sparse_paths`
    order: the table's logits in column 0, then its `TableRule` slots in `slot_names` order. A
    row and its slots then share a cache line, so a sparse step reads and writes each row once
    instead of once per array (PBM's step with Adagrad on 10 million rows: 2.5 ms with separate
    arrays, 2.0 with one, on a 2-core CPU with jax 0.10). `dense` is the `nnx.State` of every
    other parameter.
    """

    tables: tuple
    dense: object
    optimizer_state: object
    loss_sum: jax.Array
    weight_sum: jax.Array

    @property
    def parameters(self) -> tuple:
        """`(sparse tables, dense parameters)`: the logits of each sparse table, and `dense`."""
        return tuple(_logits(table) for table in self.tables), self.dense


@dataclass
class _Progress:
    """The host side of a run: counters, early stopping and history (saved as a checkpoint's JSON)."""

    validated: bool
    step: int = 0
    epoch: int = 0  # epochs completed
    epoch_step: int = 0  # steps completed in the current epoch
    finished: bool = False
    best_epoch: int = 0
    best_log_likelihood: float = -math.inf
    epochs_without_gain: int = 0
    stopped_early: bool = False
    history: list[EpochRecord] = field(default_factory=list)
    best_state: object = None
    resumed_from_step: int | None = None

    def result(self, seconds: float) -> FitResult:
        return FitResult(
            history=list(self.history),
            best_epoch=self.best_epoch,
            stopped_early=self.stopped_early,
            validated=self.validated,
            seconds=seconds,
            steps=self.step,
            resumed_from_step=self.resumed_from_step,
        )


@dataclass
class _Plan:
    """The split of one model for training: its sparse tables, their id columns and the dense rest."""

    graphdef: object
    rest: object
    sparse_paths: tuple  # parameter paths of the sparse tables
    sparse_columns: tuple  # the id column of each sparse table
    sparse_rows: tuple  # the rows of each sparse table
    dense_table_paths: frozenset  # per-pair tables trained densely by the table rule
    penalty_paths: tuple  # module paths of modules with a `penalty` method
    train_weight: float  # weighted number of real results in the training log
    # (id column, rows of its largest sparse table) of the columns whose distinct ids the worker
    # thread finds with `distinct_ids`. Every other id column has a scratch array.
    host_distinct: tuple = ()

    @classmethod
    def build(cls, model: nnx.Module, trainer: Trainer, train: ClickLog, train_weight: Callable[[], float]) -> _Plan:
        """Split `model` for training; `train_weight()` is called only when a module has a penalty."""
        modules = list(nnx.iter_modules(model))
        penalty_paths = tuple(path for path, module in modules if _has_penalty(module))
        tables = [(path, module) for path, module in modules if isinstance(module, EmbeddingLogits)]
        sparse, dense_tables = [], []
        for path, module in tables:
            if trainer.table_rule is None:
                continue
            name = "/".join(str(part) for part in path)
            wanted = trainer.sparse if isinstance(trainer.sparse, bool) else name in trainer.sparse
            if wanted and path in penalty_paths:
                logger.info("table %s has a penalty, so it is updated densely", name)
                wanted = False
            (sparse if wanted else dense_tables).append((path, module))
        if not isinstance(trainer.sparse, bool):
            unknown = trainer.sparse - {"/".join(str(part) for part in path) for path, _ in tables}
            if unknown:
                raise ValueError(
                    f"sparse names {', '.join(sorted(unknown))}, which are not per-pair tables of the model; "
                    f"its tables are {', '.join('/'.join(map(str, p)) for p, _ in tables) or 'none'}"
                )
        sparse_paths = tuple(path + ("logits",) for path, _ in sparse)
        graphdef, _, _, rest = nnx.split(model, lambda path, _: path in sparse_paths, nnx.Param, ...)
        plan = cls(
            graphdef=graphdef,
            rest=rest,
            sparse_paths=sparse_paths,
            sparse_columns=tuple(module.column for _, module in sparse),
            sparse_rows=tuple(module.rows for _, module in sparse),
            dense_table_paths=frozenset(path + ("logits",) for path, _ in dense_tables),
            penalty_paths=penalty_paths,
            train_weight=max(float(train_weight()), 1.0) if penalty_paths else 1.0,
        )
        # On a mesh each process reads only its share of a batch, so the step finds the distinct
        # ids of the whole batch itself.
        if trainer.parallel is None:
            minimum = clickjax.sparse.HOST_DISTINCT_MIN_ROWS
            plan.host_distinct = tuple(
                (column, rows) for column, (_, rows) in plan.largest_tables.items() if rows >= minimum
            )
        return plan

    def split(self, model: nnx.Module) -> tuple[tuple, nnx.State]:
        _, tables, dense, _ = nnx.split(model, lambda path, _: path in self.sparse_paths, nnx.Param, ...)
        flat = dict(nnx.to_flat_state(tables))
        return tuple(flat[path].get_value() for path in self.sparse_paths), dense

    def write_back(self, model: nnx.Module, parameters) -> None:
        """Write `(sparse tables, dense parameters)`, or the parameters of a `_State`, into `model`.

        The model lets go of its current tables first, so that they are freed before the new ones
        are made unless another reference keeps them. A table's logits are a column of its training
        array, so writing a state's parameters makes a new array per table, and otherwise the
        model's old tables and the new ones would take twice their memory for a moment, beyond
        the estimate of `clickjax.memory`.
        """
        released = [(path, nnx.Param(jnp.zeros((0,), jnp.float32))) for path in self.sparse_paths]
        nnx.update(model, nnx.from_flat_state(released))
        tables, dense = parameters.parameters if isinstance(parameters, _State) else parameters
        nnx.update(model, self.table_state(tables), dense)

    def table_state(self, tables) -> nnx.State:
        return nnx.from_flat_state([(path, nnx.Param(jnp.asarray(table))) for path, table in zip(self.sparse_paths, tables)])

    @property
    def largest_tables(self) -> dict[str, tuple]:
        """Map each id column of the sparse tables to the parameter path and rows of its largest table."""
        largest: dict[str, tuple] = {}
        for path, column, rows in zip(self.sparse_paths, self.sparse_columns, self.sparse_rows):
            if column not in largest or rows > largest[column][1]:
                largest[column] = (path, rows)
        return largest

    @property
    def scratch_tables(self) -> tuple:
        """The parameter path of the largest sparse table of each id column with a scratch array, which sizes it."""
        on_host = {column for column, _ in self.host_distinct}
        return tuple(path for column, (path, _) in self.largest_tables.items() if column not in on_host)

    def with_distinct_ids(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the columns of `distinct_ids` for each id column of `host_distinct` to a numpy batch."""
        if not self.host_distinct:
            return batch
        added = {}
        for column, rows in self.host_distinct:
            added[_DISTINCT_COLUMN.format(column)], added[_INVERSE_COLUMN.format(column)] = distinct_ids(batch[column], rows)
        return {**batch, **added}

    def source_columns(self, step_columns: Collection[str]) -> tuple[str, ...]:
        """Return the columns to read or cut for a step that reads `step_columns`.

        The columns that `with_distinct_ids` adds are left out, and the id columns they come from
        are added, since the step itself may not read those.
        """
        added = {name.format(column) for column, _ in self.host_distinct for name in (_DISTINCT_COLUMN, _INVERSE_COLUMN)}
        columns = [name for name in step_columns if name not in added]
        return tuple(columns + [column for column, _ in self.host_distinct if column not in columns])

    def initial_scratch(self) -> tuple:
        """Create the scratch array of `find_representatives` for each id column of the sparse tables.

        Its content does not matter, so zeros will do; the step donates and reuses it.
        """
        return tuple(jnp.zeros((self.sparse_rows[self.sparse_paths.index(path)],), jnp.int32) for path in self.scratch_tables)

    def initial_state(self, model: nnx.Module, dense_optimizer, rule: TableRule | None) -> _State:
        # The step donates its input buffers, so train on copies and leave the model's arrays intact.
        tables, dense = self.split(model)
        dense = jax.tree.map(jnp.array, dense)
        return _State(
            tables=tuple(_with_slots(table, rule) for table in tables),
            dense=dense,
            optimizer_state=dense_optimizer.init(dense),
            loss_sum=jnp.zeros((), jnp.float32),
            weight_sum=jnp.zeros((), jnp.float32),
        )

    def fingerprint(self, trainer: Trainer, train: ClickLog, model: nnx.Module) -> dict:
        """Describe the run, so that a checkpoint of another model, log or option set is rejected."""
        parameters = nnx.to_flat_state(nnx.state(model, nnx.Param))
        return {
            # The layout of the training state: 2 keeps each sparse table and its slots in one array.
            "state_layout": _STATE_LAYOUT,
            "model": type(model).__name__,
            # Shapes as lists, which JSON gives back unchanged.
            "parameters": {"/".join(map(str, path)): list(np.shape(value.get_value())) for path, value in parameters},
            "sparse_tables": ["/".join(map(str, path)) for path in self.sparse_paths],
            "train_sessions": train.num_sessions,
            "batch_size": trainer.batch_size,
            "seed": trainer.seed,
            "epochs": trainer.epochs,
            "max_steps": trainer.max_steps,
        }

    def step_function(self, trainer: Trainer, total_steps: int, shardings_for: Callable) -> _Step:
        """Return the jitted step, built once per trainer, model structure and run length.

        `shardings_for(dense_optimizer)` returns the shardings of the training state and of the
        scratch arrays on the trainer's mesh, or None without one.
        """
        key = (self.graphdef, self.sparse_paths, self.dense_table_paths, self.train_weight, self.host_distinct, total_steps)
        if key not in trainer._compiled:
            trainer._compiled[key] = _make_step(self, trainer, total_steps, shardings_for)
        return trainer._compiled[key]

    def optimizers(self, trainer: Trainer, total_steps: int):
        """Return the dense optax transformation and the learning-rate schedule of the sparse tables."""
        dense = trainer._dense_optimizer(total_steps)
        if self.dense_table_paths:
            table = trainer._dense_table_optimizer(total_steps)
            dense_table_paths = self.dense_table_paths

            def labels(parameters):
                return jax.tree_util.tree_map_with_path(
                    lambda key_path, _: "table" if _names(key_path) in dense_table_paths else "other", parameters
                )

            dense = optax.multi_transform({"table": table, "other": dense}, labels)
        return dense, trainer._schedule(trainer.table_learning_rate, total_steps)


@dataclass
class _Step:
    run: Callable
    dense_optimizer: optax.GradientTransformation
    shardings: _State | None  # of the training state on the mesh; None without one
    scratch_shardings: tuple | None  # of the scratch arrays on the mesh; None without one
    function: Callable | None = None  # the step before `jax.jit`
    columns: tuple[str, ...] | None = None  # the batch columns the step reads, found at its first call


@dataclass
class _Run:
    """The compiled step and the live training state of one `fit` call.

    `scratch` contains the scratch arrays of `find_representatives`, one per id column of the
    sparse tables. The step donates them like the state, but checkpoints leave them out, because
    their content does not matter between steps.
    """

    plan: _Plan
    step: _Step
    state: _State
    scratch: tuple
    # The stream of the next epoch of a log streamed from disk, started when this epoch's ran out.
    next_stream: _StreamAhead | None = None


class _StreamAhead:
    """A stream of batches whose first `batches` batches are read on a thread of its own, started at once.

    A shuffled stream of shards yields its first batch only once its shuffle buffer is full. So
    the trainer starts the next epoch's stream while the device still trains on the last batches
    of this one. It reads as many batches as its pipeline keeps ahead of the step, plus one. Each
    batch is handed over as soon as it is read, and the reader of the stream continues it on its
    own thread once the first batches are taken.
    """

    def __init__(self, epoch: int, stream: Iterable[dict[str, np.ndarray]], batches: int):
        self.epoch = epoch
        self._stream = iter(stream)
        self._batches = batches
        self._read: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._read_first, name="clickjax-next-epoch", daemon=True)
        self._thread.start()

    def _read_first(self) -> None:
        try:
            for batch in itertools.islice(self._stream, self._batches):
                self._read.put(batch)
        except BaseException as error:  # raised again by the epoch that reads the stream
            self._read.put(_ReadFailed(error))
        self._read.put(_FIRST_READ)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self._read.get()) is not _FIRST_READ:
            if isinstance(item, _ReadFailed):
                raise item.error
            yield item
        # The thread has finished with the stream, so this one can go on reading it.
        self._thread.join()
        yield from self._stream


@dataclass(frozen=True)
class _ReadFailed:
    """An error raised while `_StreamAhead` read its first batches."""

    error: BaseException


# Put by `_StreamAhead` after its first batches.
_FIRST_READ = object()


def _then(stream: Iterable, callback: Callable[[], None]) -> Iterator:
    """Yield the items of `stream`, and call `callback` once it has run out."""
    yield from stream
    callback()


def _names(key_path) -> tuple:
    """Convert a pytree key path into an `nnx.State` to the parameter path, without the `Variable`'s own key."""
    names = []
    for entry in key_path:
        name = getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", None)))
        if name == "value":
            break
        names.append(name)
    return tuple(names)


def _make_step(plan: _Plan, trainer: Trainer, total_steps: int, shardings_for: Callable) -> _Step:
    """Build the jitted training step for `plan`; see `_State` for what it reads and writes."""
    dense_optimizer, table_schedule = plan.optimizers(trainer, total_steps)
    shardings, scratch_shardings = shardings_for(dense_optimizer) or (None, None)
    scratch_columns = tuple(plan.sparse_columns[plan.sparse_paths.index(path)] for path in plan.scratch_tables)
    scratch_rows = tuple(plan.sparse_rows[plan.sparse_paths.index(path)] for path in plan.scratch_tables)
    rule = trainer.table_rule
    clip_norm = trainer.clip_norm
    weight_decay = trainer.weight_decay

    def objective(dense, values, batch):
        tables = plan.table_state(values)
        model = nnx.merge(plan.graphdef, tables, dense, plan.rest)
        for path, column in zip(plan.sparse_paths, plan.sparse_columns):
            _module_at(model, path[:-1]).column = _LOCAL_COLUMN.format(column)
        loss = model.loss(batch)
        total = loss
        for path in plan.penalty_paths:
            total = total + _module_at(model, path).penalty() / plan.train_weight
        return total, loss

    def step(state: _State, scratch: tuple, batch, count, halted):
        tables, dense = state.tables, state.dense
        slot_names = rule.slot_names if rule is not None else ()

        # The model reads one value per result, in order (its id column becomes 0, 1, 2, ...), so
        # its gradient is one value per result. For each id column, `index` contains each distinct
        # id of the batch once (every other entry is outside the tables), and `inverse` gives the
        # entry of `index` that contains each result's id. The gradients of an id's results are
        # summed into that entry, which alone updates the row. From the worker thread
        # (`distinct_ids`), `index` lists the distinct ids in ascending order and the step reads
        # each row once. With the scratch array, `index` keeps each id at its representative, and
        # each result reads its own row: reading the table at `index` and the model those values
        # made PBM's step 1.4 times as long on a CPU there (10 million rows, jax 0.10).
        new_scratch, index, inverse, blocks, values = [], {}, {}, [], []
        for column, column_scratch, table_rows in zip(scratch_columns, scratch, scratch_rows):
            ids = batch[column]
            column_scratch, representative = find_representatives(column_scratch, ids)
            index[column] = representative_rows(ids, representative, table_rows)
            inverse[column] = representative.reshape(ids.shape)
            new_scratch.append(column_scratch)
        for column, _ in plan.host_distinct:
            index[column] = batch[_DISTINCT_COLUMN.format(column)]
            inverse[column] = batch[_INVERSE_COLUMN.format(column)]
        for table, column in zip(tables, plan.sparse_columns):
            if column in scratch_columns:
                block = gather_rows(table, batch[column].reshape(-1))
                values.append(block[:, 0])
            else:
                block = gather_rows(table, index[column])
                values.append(block[:, 0].at[inverse[column].reshape(-1)].get(mode="promise_in_bounds"))
            blocks.append(block)
        batch = {
            **batch,
            **{
                _LOCAL_COLUMN.format(column): jnp.arange(entries.size, dtype=jnp.int32).reshape(entries.shape)
                for column, entries in inverse.items()
            },
        }

        (total, loss), (dense_gradient, value_gradient) = jax.value_and_grad(
            objective, argnums=(0, 1), has_aux=True
        )(dense, tuple(values), batch)
        summed_gradient = tuple(
            jnp.zeros_like(gradient).at[inverse[column].reshape(-1)].add(gradient)
            for gradient, column in zip(value_gradient, plan.sparse_columns)
        )
        indices = tuple(index[column] for column in plan.sparse_columns)
        if clip_norm is not None:
            norm = optax.tree.norm((dense_gradient, summed_gradient))
            scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norm, 1e-30))
            dense_gradient, summed_gradient = jax.tree.map(lambda g: g * scale, (dense_gradient, summed_gradient))
        leaves = [total, *jax.tree.leaves(dense_gradient), *jax.tree.leaves(summed_gradient)]
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
        apply = finite & ~halted

        updates, optimizer_state = dense_optimizer.update(dense_gradient, state.optimizer_state, dense)
        new_dense = optax.apply_updates(dense, updates)
        new_dense, optimizer_state = jax.tree.map(
            lambda new, old: jnp.where(apply, new, old),
            (new_dense, optimizer_state),
            (dense, state.optimizer_state),
        )

        learning_rate = table_schedule(count)
        new_tables = []
        for table, block, rows_index, gradient in zip(tables, blocks, indices, summed_gradient):
            rows = block[:, 0]
            old_slots = {name: block[:, 1 + number] for number, name in enumerate(slot_names)}
            direction, row_slots = rule.direction(gradient, old_slots, count)
            updated = jnp.where(apply, rows - learning_rate * (direction + weight_decay * rows), rows)
            kept_slots = [jnp.where(apply, row_slots[name], old_slots[name]) for name in slot_names]
            new_tables.append(scatter_rows(table, rows_index, jnp.stack([updated, *kept_slots], axis=1)))

        weight = (batch["weight"][:, None] * batch["mask"]).sum()
        new_state = _State(
            tables=tuple(new_tables),
            dense=new_dense,
            optimizer_state=optimizer_state,
            loss_sum=state.loss_sum + jnp.where(apply, loss * weight, 0.0),
            weight_sum=state.weight_sum + jnp.where(apply, weight, 0.0),
        )
        return new_state, tuple(new_scratch), ~apply

    if shardings is None:
        run = jax.jit(step, donate_argnums=(0, 1))
        return _Step(run=run, dense_optimizer=dense_optimizer, shardings=None, scratch_shardings=None, function=step)
    # Fixing the output shardings to the input's keeps the state where `_place_state` put it, so
    # the donated buffers are reused and the next step compiles for the same shardings.
    out_shardings = (shardings, scratch_shardings, trainer.parallel.replicated)
    run = jax.jit(step, donate_argnums=(0, 1), out_shardings=out_shardings)
    return _Step(
        run=run, dense_optimizer=dense_optimizer, shardings=shardings, scratch_shardings=scratch_shardings, function=step
    )


def _columns_read(step: Callable, arguments: tuple) -> tuple[str, ...]:
    """Return the batch columns that `step(state, scratch, batch, count, halted)` reads, in batch order.

    The step is traced on the arguments' shapes and dtypes, and a column counts as read when an
    operation of the traced program takes it as input. `mask` and `weight` are always kept, since
    padding a batch needs them. Every column the step does not read is neither cut nor copied to
    the device, which saves host time on each step.
    """
    abstract = jax.tree.map(lambda value: jax.ShapeDtypeStruct(np.shape(value), value.dtype), arguments)
    closed = jax.make_jaxpr(step)(*abstract)
    read = {id(var) for equation in closed.jaxpr.eqns for var in equation.invars}
    read |= {id(var) for var in closed.jaxpr.outvars}
    state, scratch, batch = arguments[:3]
    offset = len(jax.tree.leaves(state)) + len(jax.tree.leaves(scratch))
    # A dict flattens in sorted key order, one leaf per column.
    names = sorted(batch)
    inputs = closed.jaxpr.invars[offset : offset + len(names)]
    used = {name for name, var in zip(names, inputs) if id(var) in read} | {"mask", "weight"}
    return tuple(name for name in batch if name in used)


def _has_penalty(module: nnx.Module) -> bool:
    """Whether a module adds a penalty to the loss: a `penalty` method, and a prior if it takes one.

    Tables such as `EmbeddingLogits` have a `penalty` method that returns 0 when built without a
    `prior`. Counting those would make every table dense, so they are left out.
    """
    return callable(getattr(module, "penalty", None)) and getattr(module, "prior", True) is not None


def _module_at(model: nnx.Module, path: tuple) -> nnx.Module:
    module = model
    for part in path:
        module = module[part] if isinstance(part, int) else getattr(module, part)
    return module


def _prepare_on_worker(oov: Callable | None, plan: _Plan) -> Callable | None:
    """Return the `prepare` of `BatchPipeline`: the out-of-vocabulary draws, then `distinct_ids`."""
    if oov is None and not plan.host_distinct:
        return None

    def prepare(step: int, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if oov is not None:
            batch = oov(step, batch)
        return plan.with_distinct_ids(batch)

    return prepare


def _replace_with_oov(step: int, batch: dict[str, np.ndarray], *, rate: float, seed: tuple) -> dict[str, np.ndarray]:
    """Replace the pair id of a random `rate` fraction of a numpy batch's real results by the out-of-vocabulary id 1.

    It runs before the batch is placed, on the input pipeline's worker thread unless `prefetch` is
    0, so the jitted step draws no random numbers. The draws depend only on `seed` (the trainer's
    seed, the epoch and the process) and the step, so a resumed run draws what the interrupted
    run would have drawn.
    """
    if "query_doc_id" not in batch:  # a model that does not read the pair ids
        return batch
    rng = np.random.default_rng((*seed, step))
    real = batch["mask"] == 1
    replaced = (rng.random(real.shape, dtype=np.float32) < rate) & real
    return {**batch, "query_doc_id": np.where(replaced, np.int32(1), batch["query_doc_id"])}
