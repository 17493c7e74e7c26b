"""Training on several devices and several processes: sharded batches, replicated or row-sharded tables.

`DataParallel` spreads each training batch over a one-dimensional device mesh along the batch axis
(`[batch]` and `[batch, positions]` columns are split into equal slices, one per device). Every
device computes the loss and gradient of its slice, and XLA sums the gradients across devices, so
a step over a sharded batch follows the same update as a step over the whole batch on one device.
Parameters are replicated on every device by default. With `table_sharding="rows"` the rows of each
per-id table (`clickjax.parameters.EmbeddingLogits`, such as attraction per query-document pair)
are split across the devices instead, so a table larger than one device's memory fits.

Several processes (one per host, or one per GPU) run the same program after `initialize`, which
calls `jax.distributed.initialize`. The mesh then spans the devices of every process. Each process
reads its own subset of the input files (`process_files`, `read_process_log`), and `DataParallel`
builds global arrays from the process-local batches with `jax.make_array_from_process_local_data`.
Every process runs the same number of steps. A process that runs out of sessions contributes
empty sessions (`mask` 0, `weight` 0), which change neither the loss nor the metrics. So no
collective operation waits for a process that has stopped.

Example, one process with all its local devices:

    parallel = DataParallel(table_sharding="rows")
    model = parallel.create_model(
        lambda: PositionBasedModel(10, parallel.table_rows(vocabulary.pair_table_size), rngs=nnx.Rngs(0))
    )
    trainer = Trainer(batch_size=4096, parallel=parallel)
    trainer.fit(model, train)

Several processes, each started with its own `process_id`:

    initialize("10.0.0.1:8476", num_processes=2, process_id=0)
    vocabulary = Vocabulary()
    train = read_process_log("baidu", all_training_files, vocabulary)
    vocabulary.freeze()
    test = read_process_log("baidu", all_test_files, vocabulary)
    ...  # as above; write results only where parallel.is_main_process
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from clickjax.data import ClickLog, PathLike, Vocabulary
from clickjax.parameters import EmbeddingLogits

__all__ = [
    "BATCH_AXIS",
    "TABLE_SHARDINGS",
    "DataParallel",
    "InitializationError",
    "initialize",
    "process_files",
    "read_process_log",
]

logger = logging.getLogger(__name__)

# Name of the mesh axis that batches are split along (and table rows, with table_sharding="rows").
BATCH_AXIS = "batch"

# Placements of per-id tables: a full copy on every device, or their rows split across devices.
TABLE_SHARDINGS = ("replicated", "rows")


class InitializationError(RuntimeError):
    """The distributed JAX runtime could not start, for example without a coordinator address."""


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    initialization_timeout: int = 300,
) -> None:
    """Join this process to a multi-process JAX run; call it before any other JAX work.

    Every process of the run calls it with the same `coordinator_address` and `num_processes`
    and its own `process_id`. Left out, the three are read from the cluster environment that
    `jax.distributed.initialize` detects (Slurm, Open MPI, Cloud TPU). On the CPU, JAX 0.10 runs
    the cross-process collectives over TCP with gloo (its `jax_cpu_collectives_implementation`
    default).

    Args:
      coordinator_address: `HOST:PORT` of process 0, which runs the coordination service.
      num_processes: the number of processes in the run.
      process_id: this process's index, from 0 to `num_processes - 1`.
      local_device_ids: the local devices this process uses (GPU ordinals), all by default.
      initialization_timeout: seconds to wait for every process to connect.

    Raises:
      ValueError: a count or index is out of range.
      InitializationError: the distributed runtime could not start; the message names the
        options to pass.
    """
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    if process_id is not None and process_id < 0:
        raise ValueError(f"process_id must be at least 0, got {process_id}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(
            f"process_id {process_id} is out of range for {num_processes} processes; "
            f"expected 0 to {num_processes - 1}"
        )
    if initialization_timeout < 1:
        raise ValueError(f"initialization_timeout must be at least 1 second, got {initialization_timeout}")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=initialization_timeout,
        )
    except (RuntimeError, ValueError) as error:
        raise InitializationError(
            f"could not start the distributed JAX runtime: {str(error).rstrip('.')}. Give the coordinator address "
            "(HOST:PORT of process 0), the number of processes and this process's id, or run under "
            "a cluster manager that JAX detects, such as Slurm"
        ) from error
    logger.info(
        "process %d of %d joined; %d local and %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def process_files(
    paths: Sequence[PathLike], process_index: int | None = None, process_count: int | None = None
) -> list[PathLike]:
    """Return the files that one process reads: every `process_count`-th file from `process_index`.

    Files are dealt out in turn, so with fewer files than processes some processes get none and
    train on empty batches only. Split the log into at least as many files as processes, of
    similar sizes, for the work to spread evenly.

    Args:
      paths: every input file of the run, in the same order on every process.
      process_index: the process, `jax.process_index()` by default.
      process_count: the number of processes, `jax.process_count()` by default.
    """
    process_index, process_count = _process_position(process_index, process_count)
    return list(paths[process_index::process_count])


def read_process_log(
    format: str,
    paths: Sequence[PathLike],
    vocabulary: Vocabulary,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    positions: int = 10,
    read_batch_size: int = 8192,
    **options: object,
) -> ClickLog:
    """Read this process's share of a log, with dense ids that agree across processes.

    The sessions of the files that `process_files` assigns to this process are kept. While
    `vocabulary` is open (a training log), every file is parsed in the given order, so each
    process assigns the same dense ids as one process reading all of them would. The sessions of
    the other processes' files are parsed for their ids only and then dropped. Once it is frozen
    (validation and test logs), only this process's files are read.

    Args:
      format: the log format, one of `clickjax.data.FORMATS`.
      paths: every input file of the run, in the same order on every process.
      vocabulary: shared by the training, validation and test logs of this process.
      process_index: the process, `jax.process_index()` by default.
      process_count: the number of processes, `jax.process_count()` by default.
      positions: page length P. A fixed P is required, because each file is read separately.
      read_batch_size: sessions per batch while parsing.
      options: `on_error`, `drop_sessions_without_clicks`, `min_results`, `behaviour`,
        `document_key` and `query_key`, as for `clickjax.data.read_batches`.

    Returns:
      The sessions of this process's files, with the reader counters of those files summed.
      Their number is 0 when the process has no file.

    Raises:
      ValueError: `positions` is None, or `min_sessions_per_query` is given, since both need a
        first pass over all files together.
    """
    if positions is None:
        raise ValueError("read_process_log needs a fixed positions; None would pad each file to its own longest session")
    if options.get("min_sessions_per_query", 1) != 1:
        raise ValueError(
            "min_sessions_per_query counts sessions across all files, which read_process_log reads one "
            "by one; filter rare queries before splitting the log"
        )
    process_index, process_count = _process_position(process_index, process_count)
    mine = set(range(process_index, len(paths), process_count))
    parts = []
    for index, path in enumerate(paths):
        if index not in mine and vocabulary.frozen:
            continue
        log = ClickLog.read(format, [path], vocabulary, positions=positions, read_batch_size=read_batch_size, **options)
        if index in mine:
            parts.append(log)
    return _concatenate(parts, positions, format, vocabulary, options)


def _concatenate(
    parts: list[ClickLog], positions: int, format: str, vocabulary: Vocabulary, options: Mapping
) -> ClickLog:
    if not parts:
        # Read nothing to get the column set (behaviour columns included) of an empty log.
        return ClickLog.read(format, [], vocabulary, positions=positions, **options)
    columns = {name: np.concatenate([part.columns[name] for part in parts]) for name in parts[0].columns}
    stats: dict[str, int] = {}
    for part in parts:
        for name, count in part.stats.items():
            stats[name] = stats.get(name, 0) + count
    return ClickLog(columns=columns, positions=positions, stats=stats)


def _process_position(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index {process_index} is out of range for {process_count} processes; "
            f"expected 0 to {process_count - 1}"
        )
    return process_index, process_count


class DataParallel:
    """A device mesh that training batches are split over, and the placement of the parameters.

    Args:
      devices: the devices of the mesh; all devices of every process (`jax.devices()`) by
        default. With several processes the mesh must contain the same number of devices from
        each of them.
      table_sharding: `"replicated"` keeps a full copy of every parameter on every device;
        `"rows"` splits the rows of each `EmbeddingLogits` table (and of its optimiser state)
        across the devices, so each device stores `rows / devices` rows. The number of rows must
        then be a multiple of the device count: build the model with `table_rows`.

    Attributes:
      mesh: the one-dimensional mesh with axis `BATCH_AXIS`.
      batch_sharding: splits the leading (batch) axis of an array across the mesh.
      replicated: a full copy on every device of the mesh.
    """

    def __init__(self, devices: Sequence[jax.Device] | None = None, *, table_sharding: str = "replicated"):
        if table_sharding not in TABLE_SHARDINGS:
            raise ValueError(f"unknown table_sharding {table_sharding!r}; expected one of {', '.join(TABLE_SHARDINGS)}")
        devices = list(jax.devices() if devices is None else devices)
        if not devices:
            raise ValueError("devices is empty; give at least one device or leave it out to use all")
        # Sorting by process keeps each process's devices next to each other, so the rows of a
        # global batch are the process-local batches one after another.
        devices.sort(key=lambda device: (device.process_index, device.id))
        per_process: dict[int, int] = {}
        for device in devices:
            per_process[device.process_index] = per_process.get(device.process_index, 0) + 1
        if len(set(per_process.values())) > 1:
            raise ValueError(
                f"the mesh must contain the same number of devices from each process, got {per_process} "
                "(process: devices)"
            )
        if jax.process_index() not in per_process:
            raise ValueError(f"the mesh contains no device of this process ({jax.process_index()})")

        self.table_sharding = table_sharding
        self.process_count = len(per_process)
        # Auto axes let XLA choose the shardings of intermediate values, such as the gradient of
        # a row-sharded table, so the models need no sharding annotations of their own.
        self.mesh = jax.make_mesh((len(devices),), (BATCH_AXIS,), axis_types=(AxisType.Auto,), devices=devices)
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    def __repr__(self) -> str:
        return (
            f"DataParallel({self.device_count} devices in {self.process_count} process(es), "
            f"table_sharding={self.table_sharding!r})"
        )

    @property
    def device_count(self) -> int:
        """Number of devices in the mesh, over all processes."""
        return self.mesh.size

    @property
    def local_device_count(self) -> int:
        """Number of devices in the mesh that belong to this process."""
        return self.device_count // self.process_count

    @property
    def is_main_process(self) -> bool:
        """Whether this is process 0, the one that writes results and prints progress."""
        return jax.process_index() == 0

    # ------------------------------------------------------------------ sizes

    def local_batch_size(self, batch_size: int) -> int:
        """Return the rows each process contributes to a global batch of `batch_size` sessions.

        Raises:
          ValueError: `batch_size` is not a multiple of the device count.
        """
        if batch_size < 1 or batch_size % self.device_count:
            lower = max(batch_size // self.device_count, 1) * self.device_count
            raise ValueError(
                f"batch size {batch_size} is not a multiple of the {self.device_count} devices of the mesh, "
                f"so the batch cannot be split into equal slices; use a multiple such as {lower}"
            )
        return batch_size // self.process_count

    def table_rows(self, rows: int) -> int:
        """Round a table size up to a multiple of the device count when tables are row-sharded.

        The extra rows follow every real id, so no session looks them up and they keep their
        initial value. With replicated tables `rows` is returned unchanged.
        """
        if self.table_sharding != "rows":
            return rows
        return -(-rows // self.device_count) * self.device_count

    # ------------------------------------------------------------------ parameters

    def create_model(self, factory: Callable[[], nnx.Module]) -> nnx.Module:
        """Build a model with its parameters created directly in their shardings.

        A row-sharded table is never materialised whole on one device, which the model's own
        constructor would do. `factory` takes no arguments and returns the model; it is traced
        by `nnx.jit`, so it must not depend on array values.

        Raises:
          ValueError: a row-sharded table's rows are not a multiple of the device count.
        """
        shardings = self.parameter_shardings(nnx.eval_shape(factory))

        def create():
            model = factory()
            for path, variable in nnx.to_flat_state(nnx.state(model)):
                variable.set_value(jax.lax.with_sharding_constraint(variable.get_value(), shardings[path]))
            return model

        with jax.set_mesh(self.mesh):
            return nnx.jit(create)()

    def shard_model(self, model: nnx.Module) -> None:
        """Move the parameters of an existing model to their shardings in place.

        An array already placed as required stays where it is. With several processes, an array
        that lives on this process's devices only is read back to the host first, so it must
        have the same value in every process (a model built from the same seed has).

        Raises:
          ValueError: a row-sharded table's rows are not a multiple of the device count.
        """
        shardings = self.parameter_shardings(model)
        for path, variable in nnx.to_flat_state(nnx.state(model)):
            variable.set_value(self.put(variable.get_value(), shardings[path]))

    def gather_model(self, model: nnx.Module) -> None:
        """Replace the parameters of a model by host (numpy) copies of their global values.

        Call it on every process after training, before saving the model or reading its
        parameters: with several processes, a row-sharded table is spread over the processes and
        gathering it is a collective operation. The model can still be evaluated afterwards.
        """
        for _, variable in nnx.to_flat_state(nnx.state(model)):
            variable.set_value(self._to_host(variable.get_value()))

    def parameter_shardings(self, model: nnx.Module) -> dict[tuple, NamedSharding]:
        """Return the sharding of each variable of the model, keyed by its path in `nnx.state`.

        Raises:
          ValueError: a row-sharded table's rows are not a multiple of the device count.
        """
        tables = set()
        if self.table_sharding == "rows":
            for path, node in nnx.iter_graph(model):
                if isinstance(node, EmbeddingLogits):
                    tables.add((*path, "logits"))

        shardings = {}
        for path, variable in nnx.to_flat_state(nnx.state(model)):
            sharding = self.replicated
            if path in tables:
                rows = variable.shape[0]
                if rows % self.device_count:
                    raise ValueError(
                        f"the table {'/'.join(map(str, path))} has {rows} rows, which cannot be split evenly over "
                        f"{self.device_count} devices; build the model with table_rows({rows}) = "
                        f"{self.table_rows(rows)} rows"
                    )
                sharding = self.batch_sharding
            shardings[path] = sharding
        return shardings

    def put(self, array, sharding: NamedSharding):
        """Place an array in `sharding`; an array already placed so is returned unchanged.

        With several processes `array` must have the same value in every process, unless it is
        already a global array on the mesh.
        """
        if isinstance(array, jax.Array) and array.sharding == sharding:
            return array
        if isinstance(array, jax.Array) and not array.is_fully_addressable:
            return jax.device_put(array, sharding)
        if self.process_count > 1:
            # device_put accepts a host array for a sharding that spans other processes, but not
            # an array committed to this process's devices.
            array = np.asarray(array)
        return jax.device_put(array, sharding)

    def _to_host(self, array):
        if not isinstance(array, jax.Array):
            return np.asarray(array)
        if array.is_fully_addressable:
            return np.asarray(array)
        if array.is_fully_replicated:
            return np.asarray(array.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(array, tiled=True))

    # ------------------------------------------------------------------ batches

    def num_steps(self, log: ClickLog, batch_size: int) -> int:
        """Return the number of global batches of `batch_size` sessions over the logs of all processes.

        It is the largest number of local batches any process has, so every process runs it.
        """
        local_steps = log.num_batches(self.local_batch_size(batch_size))
        if self.process_count == 1:
            return local_steps
        return self._max_across_processes(local_steps)

    def batches(
        self, log: ClickLog, batch_size: int, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield this process's slice of each global batch of `batch_size` sessions, as numpy.

        Every process yields `num_steps(log, batch_size)` batches of
        `local_batch_size(batch_size)` rows. Once this process's sessions run out, the rest are
        empty sessions (`mask` and `weight` 0). `place` turns each into a global batch.

        Args:
          log: this process's sessions.
          batch_size: sessions per global batch, a multiple of the device count.
          shuffle: visit this process's sessions in a random order drawn from `seed`.
          seed: seed of the permutation.
        """
        local_batch_size = self.local_batch_size(batch_size)
        steps = self.num_steps(log, batch_size)
        produced = 0
        for batch in log.batches(local_batch_size, shuffle=shuffle, seed=seed):
            produced += 1
            yield batch
        if produced < steps:
            empty = {
                name: np.zeros((local_batch_size, *column.shape[1:]), column.dtype)
                for name, column in log.columns.items()
            }
            for _ in range(steps - produced):
                yield empty

    def place(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """Turn this process's rows of a batch into global arrays split along the batch axis.

        Args:
          batch: `[rows]` and `[rows, ...]` columns, where `rows` is the local batch size (a
            multiple of this process's device count). With one process the batch is the global
            batch.

        Returns:
          Global `[rows * process_count]` and `[rows * process_count, ...]` arrays, the
          processes' rows in process order.

        Raises:
          ValueError: the rows cannot be split evenly over this process's devices.
        """
        for name, array in batch.items():
            rows = np.shape(array)[0]
            if rows % self.local_device_count:
                raise ValueError(
                    f"column {name!r} has {rows} rows, which cannot be split evenly over the "
                    f"{self.local_device_count} devices of this process; make the batch size a multiple "
                    f"of the {self.device_count} devices of the mesh"
                )
        if self.process_count == 1:
            # One call for all columns lets JAX start their transfers together.
            return jax.device_put(dict(batch), self.batch_sharding)
        placed = {}
        for name, array in batch.items():
            global_shape = (np.shape(array)[0] * self.process_count, *np.shape(array)[1:])
            placed[name] = jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(array), global_shape)
        return placed

    # ------------------------------------------------------------------ host values

    def sum_across_processes(self, values) -> np.ndarray:
        """Sum a host array over the processes; every process gets the sum.

        Integers are summed as int64 and floats as float64, whatever JAX's `jax_enable_x64`
        setting, so large counters stay exact. Every process must call it with the same shape.
        The sum is a reduction on the devices, so no process stores more than two copies of
        `values`, however many processes there are.
        """
        values = np.asarray(values)
        if self.process_count == 1:
            return values
        dtype = np.int64 if values.dtype.kind in "iub" else np.float64
        grid = Mesh(
            np.array(self.mesh.devices).reshape(self.process_count, self.local_device_count), ("process", "local")
        )
        with jax.enable_x64(True):
            stacked = jax.make_array_from_process_local_data(
                NamedSharding(grid, PartitionSpec("process")),
                values.astype(dtype)[None],
                (self.process_count, *values.shape),
            )
            total = jax.jit(lambda x: x.sum(axis=0), out_shardings=NamedSharding(grid, PartitionSpec()))(stacked)
            return np.asarray(total.addressable_data(0))

    def _max_across_processes(self, value: int) -> int:
        with jax.enable_x64(True):
            gathered = multihost_utils.process_allgather(np.asarray([value], np.int64))
        return int(np.asarray(gathered).max())
