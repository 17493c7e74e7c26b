"""An estimate of the memory that training a click model needs, made before any table is allocated.

Training with `clickjax.training.Trainer` keeps, for every parameter table:

- the parameters twice: the model's arrays, and the training state's copy, whose buffers each
  step donates and updates in place (2 copies);
- the optimiser slots of the table rule: none for SGD, one for Adagrad (the default), two for
  Adam (`TABLE_RULE_SLOTS`);
- during a dense step (`sparse=False`), the gradient and the update (2 copies), because the new
  parameters reuse the donated buffers. A sparse step gathers and scatters only the rows of its
  batch, so it adds none;
- with sparse updates of tables under `clickjax.sparse.HOST_DISTINCT_MIN_ROWS` rows, and of all
  tables on a mesh, the scratch array that finds the distinct ids of a batch
  (`clickjax.sparse.find_representatives`): one int32 per row, once per id column, so 4 bytes per
  query-document pair however many tables the model has on that column. Larger tables without a
  mesh have their distinct ids found on the host instead, which needs no scratch array;
- with validation data, the best parameters kept for early stopping, twice, because the copy of
  a better epoch is made while the previous one still exists (2 copies).

So with the defaults (sparse Adagrad) the estimate is 3 times the bytes of the parameter tables
(plus 4 bytes per pair on small tables), 5 times with validation data, and 6 times with dense
Adam. `nnx.eval_shape` counts those bytes without
allocating them. On a 10-million-row table (PBM, UBM and DBN on a CPU; BENCHMARKS.md) the
estimate was 0.80 to 0.99 of the measured peak of resident memory. The estimate leaves out the
click logs held in memory, which are loaded before it is made, so the available memory it is
checked against has already lost them, and JAX's compiled programs.

Parquet shards that are streamed from disk (`clickjax.shards.ShardedLog`) are not held in memory.
For them the estimate adds the stream's buffers (`stream_bytes`): the shuffle buffer, a read
batch and the batches prepared ahead, which do not grow with the log. `loads_in_memory` decides
whether shards are small enough to load instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
from flax import nnx

from clickjax.models import MODELS
from clickjax.parameters import EmbeddingLogits
from clickjax.sparse import HOST_DISTINCT_MIN_ROWS

__all__ = [
    "IN_MEMORY_FRACTION",
    "TABLE_RULE_SLOTS",
    "MemoryEstimate",
    "available_memory",
    "estimate_training_memory",
    "format_bytes",
    "loads_in_memory",
    "parse_bytes",
]

# Copies of the parameter tables alive at the peak of a training step, as listed above.
_PARAMETER_COPIES = 2
_DENSE_STEP_COPIES = 2
_BEST_STATE_COPIES = 2

# Bytes per table row of the sparse step's scratch array (int32).
_SCRATCH_BYTES_PER_ROW = 4
# Shards whose decoded size is at most this fraction of the memory limit are loaded into memory.
# Loading reads them once instead of once per epoch and shuffles the whole log, and a quarter
# leaves room for the parameter tables, their optimiser state and the validation and test logs.
IN_MEMORY_FRACTION = 0.25

# Optimiser slots per table row of each table rule (`clickjax.sparse.TableRule`).
TABLE_RULE_SLOTS = {"sgd": 0, "adagrad": 1, "adam": 2}

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes that training needs, by part.

    Attributes:
      parameters: the parameter tables.
      optimizer_state: the optimiser slots of the table rule.
      step: the gradient and the update during a dense step (0 when sparse).
      best_state: the copy of the best parameters kept for early stopping (0 without validation).
      scratch: the int32 scratch arrays of the sparse step, one entry per row of each id column's
        largest table (0 when dense).
      stream: the buffers of logs streamed from disk (0 when every log is in memory).
    """

    parameters: int
    optimizer_state: int
    step: int
    best_state: int
    scratch: int = 0
    stream: int = 0

    @property
    def total(self) -> int:
        """Bytes of all parts together."""
        return (
            self.parameters + self.optimizer_state + self.step + self.best_state + self.scratch + self.stream
        )

    def format(self) -> str:
        """Describe the estimate in one line."""
        return (
            f"estimated training memory {format_bytes(self.total)}: parameter tables "
            f"{format_bytes(self.parameters)}, optimiser state {format_bytes(self.optimizer_state)}"
            + (f", gradient and update {format_bytes(self.step)}" if self.step else "")
            + (f", best-epoch copy {format_bytes(self.best_state)}" if self.best_state else "")
            + (f", sparse-step scratch {format_bytes(self.scratch)}" if self.scratch else "")
            + (f", streaming buffers {format_bytes(self.stream)}" if self.stream else "")
        )


def estimate_training_memory(
    model: str,
    positions: int,
    query_doc_pairs: int,
    validation: bool,
    *,
    table_optimizer: str = "adagrad",
    sparse: bool = True,
    stream_bytes: int = 0,
    mesh: bool = False,
) -> MemoryEstimate:
    """Estimate the memory of training the model `model` (a `MODELS` name) without allocating it.

    Args:
      model: a name from `clickjax.models.MODELS`.
      positions: the page length.
      query_doc_pairs: rows of the per-pair tables (real pairs plus 2).
      validation: whether early stopping keeps a copy of the best parameters.
      table_optimizer: the table rule, a key of `TABLE_RULE_SLOTS`.
      sparse: whether the per-pair tables get sparse updates.
      stream_bytes: the buffers of logs streamed from disk, as `ShardedLog.stream_bytes` estimates them.
      mesh: whether training runs on a `clickjax.distributed.DataParallel` mesh, where every
        sparse id column has a scratch array.

    Raises:
      ValueError: `table_optimizer` is not a key of `TABLE_RULE_SLOTS`.
    """
    if table_optimizer not in TABLE_RULE_SLOTS:
        raise ValueError(
            f"unknown table optimizer {table_optimizer!r}; expected one of {', '.join(TABLE_RULE_SLOTS)}"
        )
    abstract = nnx.eval_shape(lambda: MODELS[model](positions=positions, query_doc_pairs=query_doc_pairs, rngs=nnx.Rngs(0)))
    table_bytes = 0
    for _, variable in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        value = variable.get_value()
        table_bytes += int(value.size) * value.dtype.itemsize
    rows_by_column: dict[str, int] = {}
    for _, module in nnx.iter_modules(abstract):
        if isinstance(module, EmbeddingLogits):
            rows_by_column[module.column] = max(rows_by_column.get(module.column, 0), module.rows)
    return MemoryEstimate(
        parameters=_PARAMETER_COPIES * table_bytes,
        optimizer_state=TABLE_RULE_SLOTS[table_optimizer] * table_bytes,
        step=0 if sparse else _DENSE_STEP_COPIES * table_bytes,
        best_state=_BEST_STATE_COPIES * table_bytes if validation else 0,
        scratch=_SCRATCH_BYTES_PER_ROW * sum(rows for rows in rows_by_column.values() if mesh or rows < HOST_DISTINCT_MIN_ROWS)
        if sparse
        else 0,
        stream=stream_bytes,
    )


def loads_in_memory(decoded_bytes: int, limit: int | None) -> bool:
    """Decide whether a log of `decoded_bytes` is loaded into memory rather than streamed from disk.

    It is loaded when it takes at most `IN_MEMORY_FRACTION` of `limit` (the `--max-memory` or the
    available memory), and always when the limit is unknown (None).
    """
    return limit is None or decoded_bytes <= IN_MEMORY_FRACTION * limit


def available_memory() -> tuple[int | None, str]:
    """Return the bytes free for training and where the figure comes from.

    On an accelerator this is the default device's memory limit minus what is in use. On a CPU
    it is the operating system's available memory: `MemAvailable` of /proc/meminfo on Linux, or
    the free physical pages elsewhere. Returns `(None, reason)` when neither is known.
    """
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"free memory of {device.device_kind}"
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available system memory"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical memory"
    except (ValueError, OSError, AttributeError):
        return None, "the available memory is unknown on this system"


def format_bytes(count: float) -> str:
    """Render a byte count with a binary unit, such as `1.5 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def parse_bytes(text: str) -> int:
    """Parse a memory size such as `512M`, `16GiB` or `2000000` (bytes).

    Raises:
      ValueError: the text is not a positive number with an optional unit B, K, M, G or T.
    """
    stripped = str(text).strip().upper()
    number = stripped.rstrip("KMGTIB ")
    unit = stripped[len(number):].strip()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not value > 0:
        raise ValueError(
            f"invalid memory size {text!r}; expected a positive number of bytes with an optional unit "
            "K, M, G or T (powers of 1024), such as 16G"
        )
    return int(value * _UNITS[unit])
