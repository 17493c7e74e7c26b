"""Relevance estimates of every trained query-document pair, with graded labels and propensities.

`export_pairs` writes one Parquet row per query-document pair of the training log:

| column | type | meaning |
|---|---|---|
| `query_doc_id`, `query_id`, `doc_id` | int32 | dense ids of the training vocabulary |
| `query_fingerprint`, `doc_fingerprint` | uint64 | the 64-bit fingerprints of the query and document keys, when `model/vocabulary.parquet` exists |
| `query`, `document` | large_string | the query and document keys as in the training log, when `model/vocabulary.parquet` exists; null where the vocabulary recorded no key |
| `relevance` | float64 | the model's relevance estimate (see `ClickModel.relevance`) |
| `impressions`, `clicks` | float64 | weighted counts in the training log |
| `relevance_se` | float64 | standard error of `relevance`, only if `model/pair-statistics.parquet` exists |
| `grade` | int8 | graded label 0-4 from `relevance` (see `GradeMapping`) |

`examination_propensities` turns a model's examination by rank into propensities for inverse
propensity weighting: propensity_r = theta_r / theta_1, so rank 1 has propensity 1 and the weight
of a click at rank r is 1 / propensity_r.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from flax import nnx

from clickjax.serialization import VOCABULARY_FILE, load_model, load_training_pairs
from clickjax.vocabulary import load_vocabulary

__all__ = [
    "GRADE_METHODS",
    "GradeMapping",
    "assign_grades",
    "examination_propensities",
    "export_pairs",
    "pair_keys",
    "pair_relevance",
]

logger = logging.getLogger(__name__)

GRADE_METHODS = ("quantile", "query-quantile", "thresholds")
PAIR_STATISTICS = "pair-statistics.parquet"
_GRADES = 5


@dataclass(frozen=True)
class GradeMapping:
    """Mapping from relevance estimates to graded labels 0-4.

    - `quantile`: the pair's percentile rank among all exported pairs, p = (r - 0.5) / n with r
      its 1-based rank by ascending relevance (tied pairs share their mean rank) and n the number
      of pairs, gives grade floor(5 p). Each grade thus covers a fifth of the pairs.
    - `query-quantile`: the same within each query, so every query gets its own spread of grades.
    - `thresholds`: four increasing cut points a < b < c < d; the grade is the number of cut
      points at or below the relevance (0 below a, 4 at or above d).
    """

    method: str
    thresholds: tuple[float, float, float, float] | None = None

    @classmethod
    def parse(cls, text: str) -> GradeMapping:
        """Parse `quantile`, `query-quantile` or `thresholds=a,b,c,d`.

        Raises:
          ValueError: an unknown method, or thresholds that are not four increasing numbers.
        """
        if text in ("quantile", "query-quantile"):
            return cls(text)
        if text.startswith("thresholds="):
            parts = text.removeprefix("thresholds=").split(",")
            try:
                values = tuple(float(part) for part in parts)
            except ValueError:
                values = ()
            if len(values) != 4 or any(not np.isfinite(v) for v in values) or any(
                low >= high for low, high in zip(values, values[1:])
            ):
                raise ValueError(
                    f"invalid grade thresholds {text!r}; expected four increasing numbers, such as "
                    "thresholds=0.1,0.2,0.4,0.6"
                )
            return cls("thresholds", values)
        raise ValueError(
            f"unknown grade mapping {text!r}; expected quantile, query-quantile or thresholds=a,b,c,d"
        )

    def describe(self) -> str:
        """Render the mapping as `parse` reads it."""
        if self.thresholds is None:
            return self.method
        return "thresholds=" + ",".join(f"{value:g}" for value in self.thresholds)


def _quantile_grades(relevance: np.ndarray) -> np.ndarray:
    order = np.argsort(relevance, kind="stable")
    ranks = np.empty(len(relevance))
    ranks[order] = np.arange(1, len(relevance) + 1)
    # Tied values share the mean of their ranks.
    _, inverse, counts = np.unique(relevance, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = sums[inverse] / counts[inverse]
    percentile = (ranks - 0.5) / len(relevance)
    return np.minimum(np.floor(_GRADES * percentile), _GRADES - 1).astype(np.int8)


def assign_grades(relevance: np.ndarray, query_id: np.ndarray, mapping: GradeMapping) -> np.ndarray:
    """Map relevance estimates `[pairs]` to grades 0-4 `[pairs]` int8 (see `GradeMapping`)."""
    relevance = np.asarray(relevance, np.float64)
    if mapping.method == "thresholds":
        return np.searchsorted(np.asarray(mapping.thresholds), relevance, side="right").astype(np.int8)
    if mapping.method == "quantile":
        return _quantile_grades(relevance) if len(relevance) else np.zeros(0, np.int8)
    grades = np.zeros(len(relevance), np.int8)
    order = np.argsort(query_id, kind="stable")
    boundaries = np.flatnonzero(np.diff(query_id[order])) + 1
    for members in np.split(order, boundaries):
        if len(members):
            grades[members] = _quantile_grades(relevance[members])
    return grades


@nnx.jit
def _relevance(model, batch):
    return model.relevance(batch)


def pair_relevance(model: nnx.Module, pairs: dict[str, np.ndarray], batch_size: int = 65536) -> np.ndarray:
    """Compute the model's relevance estimate of each pair; the model is not changed.

    Args:
      model: a click model with a per-pair relevance.
      pairs: `query_id`, `doc_id` and `query_doc_id`, each `[pairs]` int32.
      batch_size: pairs per jitted call; the last chunk is padded to keep one shape.

    Returns:
      `[pairs]` float64 relevance.
    """
    count = len(pairs["query_doc_id"])
    result = np.empty(count, np.float64)
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        rows = slice(start, stop)
        pad = batch_size - (stop - start) if count > batch_size else 0

        def column(name, rows=rows, pad=pad):
            values = np.asarray(pairs[name][rows], np.int32)
            return np.pad(values, (0, pad))[:, None]

        ids = column("query_doc_id")
        batch = {
            "query_id": column("query_id")[:, 0],
            "doc_id": column("doc_id"),
            "query_doc_id": ids,
            "query_doc_hash": ids,
            "position": np.ones_like(ids),
            "mask": (ids > 0).astype(np.uint8),
            "weight": np.ones(len(ids), np.float32),
        }
        values = np.asarray(jax.device_get(_relevance(model, batch)), np.float64)[:, 0]
        result[rows] = values[: stop - start]
    return result


def examination_propensities(parameters: dict) -> pa.Table:
    """Build the propensity table from a model's readable parameters (`parameters.json`).

    Returns:
      One row per rank: `rank` (int32), `examination` (theta_r), `propensity` (theta_r / theta_1),
      `weight` (1 / propensity) and, when `parameters` has them, `examination_se` and
      `propensity_se` (the standard error of theta_r divided by theta_1, treating theta_1 as
      known).

    Raises:
      ValueError: the model has no examination probability by rank (cascade models such as DBN
        derive examination from the clicks above and have none).
    """
    examination = parameters.get("examination_by_rank")
    if not examination:
        raise ValueError(
            "the model has no examination probability by rank, so it gives no propensities; "
            "train a position-based model (pbm) or ubm for inverse propensity weighting"
        )
    theta = np.asarray(examination, np.float64)
    columns = {
        "rank": pa.array(np.arange(1, len(theta) + 1, dtype=np.int32)),
        "examination": pa.array(theta),
        "propensity": pa.array(theta / theta[0]),
        "weight": pa.array(theta[0] / theta),
    }
    standard_error = parameters.get("examination_by_rank_standard_error")
    if standard_error is not None:
        se = np.asarray([np.nan if value is None else value for value in standard_error], np.float64)
        columns["examination_se"] = pa.array(se)
        columns["propensity_se"] = pa.array(se / theta[0])
    return pa.table(columns)


@dataclass(frozen=True)
class ExportSummary:
    """Summary of an export: row count, whether standard errors were joined, the mapping and the columns."""

    pairs: int
    standard_errors: bool
    grades: str
    columns: list[str]


def _left_join(table: pa.Table, other: pa.Table, key: str) -> pa.Table:
    """Append the columns of `other` to `table`, matched by `key`, with nulls where `other` has no row.

    `other` has at most one row per key. The rows of `table` keep their order. This replaces
    `pa.Table.join`, whose hash join in pyarrow 26 grew to 16 GB on two small tables late in a
    long test run, in a process that had run many others before.
    """
    keys = other.column(key).to_numpy()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    table_keys = table.column(key).to_numpy()
    rows = np.zeros(len(table_keys), np.int64)
    found = np.zeros(len(table_keys), bool)
    if len(sorted_keys):
        position = np.minimum(np.searchsorted(sorted_keys, table_keys), len(sorted_keys) - 1)
        found = sorted_keys[position] == table_keys
        rows = order[position]
    matched = pa.array(rows, pa.int64(), mask=~found)
    for name in other.column_names:
        if name != key:
            table = table.append_column(other.schema.field(name), other.column(name).take(matched))
    return table


def pair_keys(vocabulary_path: Path) -> pa.Table:
    """Return the keys of every pair of a saved vocabulary, in pair id order.

    Columns: `query_doc_id` (int32), `query_fingerprint` and `doc_fingerprint` (uint64), and
    `query` and `document` (large_string), the key texts as the training log wrote them, decoded
    as UTF-8, null where the vocabulary recorded no key.
    """
    vocabulary = load_vocabulary(vocabulary_path)
    entries = vocabulary.to_arrow()
    kinds = entries.column("kind").to_numpy(zero_copy_only=False)
    # Rows of each kind come in id order from 2, so id i is row i - 2 of its kind.
    query_fingerprints = entries.column("fingerprint").to_numpy()[kinds == "query"]
    doc_fingerprints = entries.column("fingerprint").to_numpy()[kinds == "document"]
    pairs = vocabulary.pairs(keys=True)
    query_id = pairs.column("query_id").to_numpy()
    doc_id = pairs.column("doc_id").to_numpy()
    return pa.table({
        "query_doc_id": pairs.column("query_doc_id"),
        "query_fingerprint": pa.array(query_fingerprints[query_id - 2], pa.uint64()),
        "doc_fingerprint": pa.array(doc_fingerprints[doc_id - 2], pa.uint64()),
        "query": _key_strings(pairs.column("query_key"), "query"),
        "document": _key_strings(pairs.column("doc_key"), "document"),
    })


def _key_strings(keys: pa.Array, name: str) -> pa.Array:
    """Decode key texts (large_binary) as UTF-8 into a large_string array.

    Keys from the text logs are always valid UTF-8. A binary key column of a table can contain
    other bytes, so such keys are decoded with U+FFFD in place of each invalid byte, and a
    warning logs their number.
    """
    try:
        return keys.cast(pa.large_string())
    except pa.ArrowInvalid:
        values = keys.to_pylist()
        invalid = 0
        texts = []
        for value in values:
            if value is None:
                texts.append(None)
                continue
            try:
                texts.append(value.decode())
            except UnicodeDecodeError:
                invalid += 1
                texts.append(value.decode(errors="replace"))
        logger.warning("%d %s keys are not valid UTF-8; their invalid bytes are written as U+FFFD", invalid, name)
        return pa.array(texts, pa.large_string())


def export_pairs(model_dir: Path, output: Path, grades: GradeMapping | str = "quantile") -> ExportSummary:
    """Write the relevance of every training pair of the model in `model_dir` to a Parquet file.

    Args:
      model_dir: the `--output` folder of `clickjax train` (with `model/` inside).
      output: the Parquet file to write.
      grades: a `GradeMapping` or its text form.

    Raises:
      FileNotFoundError: `model_dir` has no saved model or training pairs.
      ValueError: the model gives no per-pair relevance, or `pair-statistics.parquet` lacks a
        column.
    """
    mapping = grades if isinstance(grades, GradeMapping) else GradeMapping.parse(grades)
    model_folder = Path(model_dir) / "model"
    model = load_model(model_folder)
    pairs = load_training_pairs(model_folder)
    try:
        relevance = pair_relevance(model, pairs)
    except NotImplementedError as error:
        raise ValueError(f"cannot export relevance: {error}") from error

    columns = {
        "query_doc_id": pa.array(pairs["query_doc_id"].astype(np.int32)),
        "query_id": pa.array(pairs["query_id"].astype(np.int32)),
        "doc_id": pa.array(pairs["doc_id"].astype(np.int32)),
        "relevance": pa.array(relevance),
        "impressions": pa.array(pairs["impressions"].astype(np.float64)),
    }
    if "clicks" in pairs:
        columns["clicks"] = pa.array(pairs["clicks"].astype(np.float64))
    table = pa.table(columns)

    statistics_path = model_folder / PAIR_STATISTICS
    if statistics_path.exists():
        statistics = pq.read_table(statistics_path)
        if "query_doc_id" not in statistics.column_names or "relevance_se" not in statistics.column_names:
            raise ValueError(
                f"{statistics_path} has columns {statistics.column_names}, expected query_doc_id and relevance_se"
            )
        statistics = statistics.select(["query_doc_id", "relevance_se"]).cast(
            pa.schema([("query_doc_id", pa.int32()), ("relevance_se", pa.float64())])
        )
        table = _left_join(table, statistics, "query_doc_id").sort_by("query_doc_id")
    vocabulary_path = model_folder / VOCABULARY_FILE
    if vocabulary_path.exists():
        keys = pair_keys(vocabulary_path)
        table = _left_join(table, keys, "query_doc_id").sort_by("query_doc_id")
        # Put the keys beside the ids.
        key_columns = ["query_fingerprint", "doc_fingerprint", "query", "document"]
        names = table.column_names
        order = names[:3] + key_columns + [name for name in names[3:] if name not in key_columns]
        table = table.select(order)

    relevance = table.column("relevance").to_numpy()
    query_id = table.column("query_id").to_numpy()
    table = table.append_column("grade", pa.array(assign_grades(relevance, query_id, mapping)))
    metadata = {b"clickjax_grades": mapping.describe().encode(), b"clickjax_model": json.dumps(str(model_dir)).encode()}
    table = table.replace_schema_metadata(metadata)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, output)
    return ExportSummary(
        pairs=table.num_rows,
        standard_errors="relevance_se" in table.column_names,
        grades=mapping.describe(),
        columns=table.column_names,
    )
