"""The training input pipeline: batches cut on a worker thread and placed on the device ahead of use.

`BatchPipeline` cuts the batches of one epoch from a `ClickLog` on a worker thread and places
each on the device there, up to `prefetch` batches before the step that uses it. The consuming
thread, which dispatches the training steps, does no per-batch host work, so it keeps the device
busy even when a reader competes for the cores. The worker cuts with `np.take` (see
`clickjax.data.take_rows`), which releases the GIL while it copies. Every batch has `batch_size`
rows, the last one padded with empty sessions (mask 0, weight 0), so the jitted step compiles once.

A log without columns in memory, such as `clickjax.shards.ShardedLog`, gives its batches as a
stream instead (`stream`), which the worker reads in order.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

import numpy as np

from clickjax.data import ClickLog, pad_batch, take_rows

__all__ = ["BatchPipeline"]

logger = logging.getLogger(__name__)

_DONE = object()

# The log rows of a streamed batch, which the stream does not report.
_UNKNOWN_ROWS = np.zeros(0, np.int64)


class BatchPipeline:
    """Yield `(step, rows, placed batch)` for the given steps of one epoch.

    Args:
      log: the training log.
      order: the session order of the epoch (a permutation of the log's rows), or None with
        `stream`.
      batch_size: rows per batch.
      steps: the steps of the epoch to yield, a range of batch numbers.
      place: puts a numpy batch on the device (`Trainer._place`).
      prefetch: batches cut and placed ahead of the one being used, on a worker thread; 0 cuts
        and places each batch on the calling thread when it is used.
      stream: the padded batches of the whole epoch, in step order, for a log that is not held
        in memory. The batches before `steps.start` are read and dropped, and their rows are
        reported as an empty array.
      prepare: called as `prepare(step, batch)` on each numpy batch before it is placed, on the
        worker thread, and returns the batch to place; None places the batches as cut.
      columns: the columns to cut and place, or None for all. The consumer may set the
        `columns` attribute later; batches prepared before that keep every column.

    Use it as a context manager, so that the worker stops when the consumer stops early.
    """

    def __init__(
        self,
        log: ClickLog,
        order: np.ndarray | None,
        batch_size: int,
        steps: range,
        place: Callable[[dict[str, np.ndarray]], dict],
        prefetch: int,
        *,
        stream: Iterable[dict[str, np.ndarray]] | None = None,
        prepare: Callable[[int, dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
        columns: Collection[str] | None = None,
    ):
        if (order is None) == (stream is None):
            raise ValueError("give either the epoch's session order or a stream of batches, not both or neither")
        self.log = log
        self.order = order
        self.batch_size = batch_size
        self.steps = steps
        self.place = place
        self.prefetch = prefetch
        self.stream = stream
        self.prepare = prepare
        self.columns = columns
        self._queue: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    def __enter__(self) -> BatchPipeline:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def cut(self, step: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Cut batch number `step` of the epoch: its log rows and its padded columns."""
        rows = self.order[step * self.batch_size : (step + 1) * self.batch_size]
        return rows, pad_batch(take_rows(self._selected(self.log.columns), rows), self.batch_size)

    def _selected(self, batch: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """Return the batch's arrays of `columns`, or the batch itself when `columns` is None."""
        columns = self.columns
        if columns is None:
            return batch
        return {name: batch[name] for name in columns}

    def batches(self) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
        """Yield `(step, rows, numpy batch)` for each step, passed through `prepare` if given."""
        for step, rows, batch in self._unprepared_batches():
            if self.prepare is not None:
                batch = self.prepare(step, batch)
            yield step, rows, batch

    def _unprepared_batches(self) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
        """Yield `(step, rows, numpy batch)` for each step, cut from the log or read from the stream."""
        if self.stream is None:
            for step in self.steps:
                yield (step, *self.cut(step))
            return
        for step, batch in enumerate(self.stream):
            if step >= self.steps.stop:
                return
            if step >= self.steps.start:
                yield step, _UNKNOWN_ROWS, dict(self._selected(batch))

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, dict]]:
        if self.prefetch == 0:
            for step, rows, batch in self.batches():
                yield step, rows, self.place(batch)
            return

        self._worker = threading.Thread(target=self._produce, name="clickjax-batches", daemon=True)
        self._worker.start()
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the worker and wait for it."""
        self._stop.set()
        if self._worker is None:
            return
        while self._worker.is_alive():
            try:  # unblock a worker waiting on a full queue
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._worker.join(timeout=0.01)
        self._worker = None

    def _produce(self) -> None:
        try:
            for step, rows, batch in self.batches():
                if self._stop.is_set():
                    return
                self._put((step, rows, self.place(batch)))
            self._put(_DONE)
        except BaseException as error:  # handed to the consumer, which raises it
            logger.debug("batch worker failed: %r", error)
            self._put(error)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
