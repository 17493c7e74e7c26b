"""Checkpoints of a training run with Orbax, for resuming after a crash with the same result.

A checkpoint is one Orbax step folder under the checkpoint folder, named by the global step, with
two items:

- `state`: every array of the training state (parameters, optimiser state, table slots, the
  running loss sums of the epoch, and the best parameters so far when early stopping is on), saved
  as a flat dict of numpy copies, so that the next step may donate the device buffers while Orbax
  writes in the background;
- `progress`: JSON with the step, the epoch, the position in the epoch, the early-stopping counters,
  the history, and a fingerprint of the run (model tables, log size, batch size, seed, epochs).

The random state needs no saving, because the shuffle order and the out-of-vocabulary draws of a
step are derived from the seed, the epoch and the step number. Orbax writes a step folder under a
temporary name and renames it when complete, so a killed process leaves either the old or the new
checkpoint, never a partial one. The two latest checkpoints are kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["CheckpointStore"]

logger = logging.getLogger(__name__)

_KEEP = 2


class CheckpointStore:
    """Save and restore the training state of `clickjax.training.Trainer` in a folder.

    Args:
      folder: where the step folders go; created if missing.
      fingerprint: a JSON-ready description of the run; restoring a checkpoint with another
        fingerprint raises ValueError.
    """

    def __init__(self, folder: Path, fingerprint: dict):
        self.folder = Path(folder).absolute()
        self.fingerprint = fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        # A killed process can leave a partial step folder under a temporary name; remove it on start.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=_KEEP, enable_async_checkpointing=True, cleanup_tmp_directories=True
        )
        self._manager = ocp.CheckpointManager(self.folder, options=options)

    def save(self, state, progress, *, wait: bool) -> None:
        """Start saving `state` and `progress` at `progress.step`; with `wait`, return once written."""
        leaves = _leaves(state, progress)
        meta = _progress_to_json(progress)
        meta["fingerprint"] = self.fingerprint
        meta["has_best_state"] = progress.best_state is not None
        if self._manager.latest_step() == progress.step:
            # An epoch that ends on a `checkpoint_every` boundary: replace the mid-epoch checkpoint.
            self._manager.wait_until_finished()
            self._manager.delete(progress.step)
        self._manager.save(
            progress.step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(leaves), progress=ocp.args.JsonSave(meta)),
        )
        logger.info("checkpoint at step %d started in %s", progress.step, self.folder)
        if wait:
            self._manager.wait_until_finished()

    def restore_latest(self, state, progress):
        """Load the latest checkpoint into copies of `state` and `progress`, or return None if there is none.

        Raises:
          ValueError: the checkpoint belongs to a run with another model, log or options.
        """
        step = self._manager.latest_step()
        if step is None:
            logger.info("no checkpoint in %s: starting from the beginning", self.folder)
            return None
        meta = self._manager.restore(step, args=ocp.args.Composite(progress=ocp.args.JsonRestore()))["progress"]
        written = meta.get("fingerprint") or {}
        if written != self.fingerprint:
            names = sorted(name for name in {*written, *self.fingerprint} if written.get(name) != self.fingerprint.get(name))
            differences = "; ".join(
                f"{name}: {written.get(name)!r} in the checkpoint, {self.fingerprint.get(name)!r} in this run" for name in names
            )
            raise ValueError(
                f"the checkpoint at step {step} in {self.folder} belongs to another run ({differences}). Resume with "
                "the same model, training log, batch size, seed and epochs, or use a new --output folder"
            )
        restored_progress = _progress_from_json(meta, progress)
        if meta["has_best_state"]:
            restored_progress.best_state = jax.tree.map(np.asarray, state.parameters)
        template = _leaves(state, restored_progress)
        abstract = {name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in template.items()}
        arrays = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
        return _from_leaves(arrays, state, restored_progress), restored_progress

    def close(self) -> None:
        """Wait for the pending save, then release Orbax's threads."""
        self._manager.wait_until_finished()
        self._manager.close()


def _leaves(state, progress) -> dict[str, np.ndarray]:
    """Flatten the training state, and the best parameters if any, to numpy copies keyed by index."""
    trees = [state] if progress.best_state is None else [state, progress.best_state]
    leaves = jax.tree.leaves(trees)
    return {f"{index:05d}": np.array(leaf, copy=True) for index, leaf in enumerate(leaves)}


def _from_leaves(arrays: dict, state, progress):
    trees = [state] if progress.best_state is None else [state, progress.best_state]
    treedef = jax.tree.structure(trees)
    values = [arrays[f"{index:05d}"] for index in range(treedef.num_leaves)]
    restored = jax.tree.unflatten(treedef, values)
    if progress.best_state is not None:
        progress.best_state = restored[1]
    return jax.tree.map(jnp.asarray, restored[0])


def _progress_to_json(progress) -> dict:
    fields = {f.name: getattr(progress, f.name) for f in dataclasses.fields(progress)}
    fields.pop("best_state")
    fields["history"] = [dataclasses.asdict(record) for record in progress.history]
    # JSON has no infinity; -inf means "no validation log-likelihood yet".
    if not math.isfinite(fields["best_log_likelihood"]):
        fields["best_log_likelihood"] = None
    return fields


def _progress_from_json(meta: dict, progress):
    from clickjax.training import EpochRecord

    values = {f.name: meta[f.name] for f in dataclasses.fields(progress) if f.name in meta and f.name != "best_state"}
    if values.get("best_log_likelihood") is None:
        values["best_log_likelihood"] = -math.inf
    values["history"] = [EpochRecord(**record) for record in values.get("history", [])]
    return dataclasses.replace(progress, **values)
