"""Simulated click logs: sessions drawn from a click model whose true parameters are known.

A simulation needs three things:

- a `Catalogue`: the queries and, for each query, a pool of documents as query-document pairs
  with dense ids (real ids start at 2, as in the batch contract);
- a click model with the parameters to simulate from, either random ones drawn by
  `draw_random_parameters` or those of a trained model;
- the number of sessions.

`simulate` draws each session's query, uniformly or in proportion to the catalogue's query
weights, and then its ranking from the query's pool. With `shuffle=True` the ranking is a
uniformly random subset of the pool in uniformly random order, so every document appears at
every rank and examination can be separated from attraction. With `shuffle=False` it is the
first documents of the pool in pool order, the same ranking every time. The model's `sample`
then draws the clicks and hidden states. The result is a `ClickLog` in the batch contract, which
`clickjax.writers` turns into raw Baidu-ULTR or WSCD text.

Random parameters (`draw_random_parameters`) follow the role of each parameter table:

- attraction and satisfaction per pair: Beta(2, 3); a click-through rate per pair (DCTR):
  Beta(1.5, 4);
- examination per rank, and a click-through rate per rank (RCTR): top * r^(-decay) with
  decay ~ U(0.5, 1) and top ~ U(0.85, 0.99), or U(0.3, 0.6) for a click-through rate;
- UBM's examination theta(r, r'): top * (r - r')^(-decay) as above, r' = 0 for no previous
  click, with Normal(0, 0.25) noise added to each logit;
- continuation per rank (DCM lambda): U(0.3, 0.9) for each rank;
- global parameters: continuation (DBN gamma) U(0.6, 0.95), CCM's tau1 U(0.6, 0.95), tau2
  U(0.5, 0.9) and tau3 U(0.1, 0.5), a global click-through rate (GCTR) U(0.05, 0.3), any other
  global parameter U(0.2, 0.8);
- any other parameter: logit ~ Normal(0, 1).

Rows 0 (padding) and 1 (out of vocabulary) of per-pair tables and row 0 of per-rank tables get
logit 0, since no real slot reads them.

Example:

    catalogue = Catalogue.random(queries=20, documents_per_query=10)
    model = PositionBasedModel(positions=10, query_doc_pairs=catalogue.pair_table_size)
    draw_random_parameters(model, np.random.default_rng(0))
    simulated = simulate(model, catalogue, sessions=100_000, seed=1)
    write_log("simulated.txt.gz", simulated.log, "baidu")
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from clickjax import __version__
from clickjax.data import ClickLog
from clickjax.models import MODELS
from clickjax.parameters import EmbeddingLogits, GlobalLogit, RankLogits
from clickjax.serialization import load_model, load_training_pairs
from clickjax.writers import WRITE_FORMATS, document_keys, query_keys, write_log

__all__ = [
    "Catalogue",
    "SimulationConfig",
    "SimulatedLog",
    "draw_random_parameters",
    "run_simulation",
    "simulate",
    "true_parameters",
    "truth_path",
    "write_simulated_log",
]

logger = logging.getLogger(__name__)

DEFAULT_POSITIONS = 10
DEFAULT_QUERIES = 100
DEFAULT_DOCUMENTS_PER_QUERY = 20

# Sessions per call of the jitted sampler. Every call has this shape (the last one is padded),
# so the sampler compiles once.
SAMPLE_CHUNK = 16384

# Most random numbers drawn at once when shuffling rankings: rows x pool size.
_SHUFFLE_BUDGET = 1 << 24

_PAIR_BETA = {"attraction": (2.0, 3.0), "satisfaction": (2.0, 3.0), "click_through_rate": (1.5, 4.0)}
_DEFAULT_PAIR_BETA = (2.0, 3.0)
_DECREASING_BY_RANK_TOP = {"examination": (0.85, 0.99), "click_through_rate": (0.3, 0.6)}
_DECAY = (0.5, 1.0)
_UNIFORM_BY_RANK = (0.3, 0.9)
_GLOBAL_UNIFORM = {
    "continuation": (0.6, 0.95),
    "tau1": (0.6, 0.95),
    "tau2": (0.5, 0.9),
    "tau3": (0.1, 0.5),
    "click_through_rate": (0.05, 0.3),
}
_DEFAULT_GLOBAL_UNIFORM = (0.2, 0.8)
_UBM_LOGIT_NOISE = 0.25


@dataclass(frozen=True)
class Catalogue:
    """Queries and the pool of documents each can show, as query-document pairs.

    The pairs of a query are listed in the order of its fixed ranking, which `simulate` uses
    without shuffling. Ids follow the batch contract (real ids start at 2).

    Attributes:
      query_id: `[pairs]` int32 dense query id of each pair.
      doc_id: `[pairs]` int32 dense document id of each pair.
      query_doc_id: `[pairs]` int32 dense id of each pair, all different.
      query_weight: `[queries]` relative frequency of each query of `queries`, or None for
        uniform.
    """

    query_id: np.ndarray
    doc_id: np.ndarray
    query_doc_id: np.ndarray
    query_weight: np.ndarray | None = None
    _pools: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        arrays = {}
        for name in ("query_id", "doc_id", "query_doc_id"):
            array = np.asarray(getattr(self, name))
            if array.ndim != 1 or array.dtype.kind not in "iu":
                raise ValueError(f"{name} must be a [pairs] integer array, got {array.dtype} {array.shape}")
            arrays[name] = array.astype(np.int32)
            object.__setattr__(self, name, arrays[name])
        if not (len(self.query_id) == len(self.doc_id) == len(self.query_doc_id)):
            raise ValueError(
                f"query_id, doc_id and query_doc_id have lengths {len(self.query_id)}, "
                f"{len(self.doc_id)} and {len(self.query_doc_id)}; expected one entry per pair in each"
            )
        if len(self.query_id) == 0:
            raise ValueError("the catalogue has no query-document pairs")
        for name, array in arrays.items():
            if array.min() < 2:
                raise ValueError(f"{name} contains {array.min()}, but real dense ids start at 2")
        if len(np.unique(self.query_doc_id)) != len(self.query_doc_id):
            raise ValueError("query_doc_id contains a pair id twice; each pair needs its own id")
        object.__setattr__(self, "_pools", _pools(self.query_id))
        if self.query_weight is not None:
            weight = np.asarray(self.query_weight, np.float64)
            if weight.shape != (self.num_queries,) or not np.all(weight >= 0) or weight.sum() <= 0:
                raise ValueError(
                    f"query_weight must have one non-negative weight per query ({self.num_queries}), "
                    "not all 0"
                )
            object.__setattr__(self, "query_weight", weight)

    @classmethod
    def random(cls, queries: int, documents_per_query: int) -> Catalogue:
        """Build a catalogue of `queries` queries, each with its own `documents_per_query` documents.

        Documents are not shared between queries, so document and pair ids coincide: query q
        (0-based) has id q + 2 and its documents the pair ids q * documents_per_query + 2 onwards.
        The fixed ranking lists them in id order.
        """
        if queries < 1:
            raise ValueError(f"queries must be at least 1, got {queries}")
        if documents_per_query < 1:
            raise ValueError(f"documents_per_query must be at least 1, got {documents_per_query}")
        pairs = np.arange(queries * documents_per_query, dtype=np.int32) + 2
        query_id = np.repeat(np.arange(queries, dtype=np.int32) + 2, documents_per_query)
        return cls(query_id=query_id, doc_id=pairs, query_doc_id=pairs)

    @classmethod
    def from_training_pairs(
        cls,
        pairs: Mapping[str, np.ndarray],
        *,
        max_queries: int | None = None,
        max_documents_per_query: int | None = None,
    ) -> Catalogue:
        """Build a catalogue from the pairs a model was trained on (`clickjax.serialization`).

        Each query's pool lists its pairs by decreasing impressions, so the fixed ranking shows
        the documents the training log showed most. Queries are weighted by their total
        impressions, which is proportional to their training sessions when pages have equal
        lengths.

        Args:
          pairs: `query_id`, `doc_id`, `query_doc_id` and `impressions`, each `[pairs]`.
          max_queries: keep only this many queries, those with the most impressions.
          max_documents_per_query: keep only this many pairs per query, those with the most
            impressions.
        """
        missing = [name for name in ("query_id", "doc_id", "query_doc_id", "impressions") if name not in pairs]
        if missing:
            raise ValueError(f"the training pairs have no {', '.join(missing)}")
        query_id = np.asarray(pairs["query_id"])
        impressions = np.asarray(pairs["impressions"], np.float64)
        if len(query_id) == 0:
            raise ValueError("the training pairs are empty")

        # Sort by query, then by decreasing impressions (pair id breaks ties).
        order = np.lexsort((np.asarray(pairs["query_doc_id"]), -impressions, query_id))
        query_id = query_id[order]
        rank_in_query = np.arange(len(order)) - np.searchsorted(query_id, query_id, side="left")
        keep = np.ones(len(order), bool)
        if max_documents_per_query is not None:
            if max_documents_per_query < 1:
                raise ValueError(f"max_documents_per_query must be at least 1, got {max_documents_per_query}")
            keep &= rank_in_query < max_documents_per_query

        queries, query_index = np.unique(query_id, return_inverse=True)
        query_impressions = np.bincount(query_index, weights=impressions[order])
        if max_queries is not None:
            if max_queries < 1:
                raise ValueError(f"max_queries must be at least 1, got {max_queries}")
            top = np.argsort(-query_impressions, kind="stable")[:max_queries]
            keep &= np.isin(query_index, top)

        kept_pairs = order[keep]
        kept_queries = np.unique(query_id[keep])
        weight = query_impressions[np.searchsorted(queries, kept_queries)]
        return cls(
            query_id=np.asarray(pairs["query_id"])[kept_pairs],
            doc_id=np.asarray(pairs["doc_id"])[kept_pairs],
            query_doc_id=np.asarray(pairs["query_doc_id"])[kept_pairs],
            query_weight=weight if weight.sum() > 0 else None,
        )

    @property
    def queries(self) -> np.ndarray:
        """`[queries]` int32 the distinct query ids, ascending."""
        return self._pools[0]

    @property
    def num_queries(self) -> int:
        return len(self.queries)

    @property
    def num_pairs(self) -> int:
        return len(self.query_doc_id)

    @property
    def pair_table_size(self) -> int:
        """Rows a per-pair parameter table needs: the largest pair id plus 1."""
        return int(self.query_doc_id.max()) + 1

    @property
    def pool_sizes(self) -> np.ndarray:
        """`[queries]` int64 the number of pairs of each query of `queries`."""
        return self._pools[2]


def _pools(query_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the queries, a `[queries, largest pool]` table of pair indices (-1 = none) and pool sizes.

    A query's pairs keep their order in the catalogue.
    """
    queries, query_index, sizes = np.unique(query_id, return_inverse=True, return_counts=True)
    order = np.argsort(query_index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    slot = np.arange(len(order)) - np.repeat(starts, sizes)
    table = np.full((len(queries), int(sizes.max())), -1, np.int64)
    table[query_index[order], slot] = order
    return queries.astype(np.int32), table, sizes


@dataclass
class SimulatedLog:
    """Sessions drawn by `simulate`.

    Attributes:
      log: the sessions in the batch contract; `weight` is 1 for every row.
      hidden: the model's hidden states at every slot, each `[sessions, positions]` uint8, such
        as `examination`, `attraction` and `satisfaction` (the model's `sample` lists them).
    """

    log: ClickLog
    hidden: dict[str, np.ndarray]


def simulate(
    model: nnx.Module,
    catalogue: Catalogue,
    sessions: int,
    *,
    positions: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
) -> SimulatedLog:
    """Draw sessions from a click model on rankings drawn from a catalogue.

    Each session shows min(pool size, `positions`) results of its query at ranks 1, 2, ...
    The same arguments give the same sessions.

    Args:
      model: a click model from `clickjax.models`; its per-pair tables must cover every pair id
        of the catalogue.
      catalogue: the queries and their document pools.
      sessions: the number of sessions to draw.
      positions: the page length P of the log, at most the model's; the model's by default.
      shuffle: show a uniformly random subset of the pool in uniformly random order, drawn
        anew for each session. Otherwise show the first P pairs of the pool in pool order.
      seed: seed of the query, ranking and click draws.

    Returns:
      The sessions as a `ClickLog` (`[sessions]` and `[sessions, positions]` columns) and the
      hidden states.

    Raises:
      ValueError: an argument is out of range or the model's tables do not cover the catalogue.
    """
    positions = model.positions if positions is None else positions
    if sessions < 1:
        raise ValueError(f"sessions must be at least 1, got {sessions}")
    if not 1 <= positions <= model.positions:
        raise ValueError(f"positions must be from 1 to the model's page length {model.positions}, got {positions}")
    if catalogue.pair_table_size > model.query_doc_pairs:
        raise ValueError(
            f"the catalogue has pair ids up to {catalogue.pair_table_size - 1}, but the model's "
            f"per-pair tables have {model.query_doc_pairs} rows; build the model with "
            f"query_doc_pairs={catalogue.pair_table_size}"
        )

    rng = np.random.default_rng(seed)
    columns = _draw_rankings(rng, catalogue, sessions, positions, shuffle)
    hidden = _draw_clicks(model, columns, jax.random.key(seed))
    columns["click"] = hidden.pop("click")
    return SimulatedLog(log=ClickLog(columns=columns, positions=positions), hidden=hidden)


def _draw_rankings(
    rng: np.random.Generator, catalogue: Catalogue, sessions: int, positions: int, shuffle: bool
) -> dict[str, np.ndarray]:
    """Draw each session's query and ranking; return the batch columns without `click`."""
    queries, pool, pool_sizes = catalogue._pools
    if catalogue.query_weight is None:
        query_index = rng.integers(len(queries), size=sessions)
    else:
        query_index = rng.choice(len(queries), size=sessions, p=catalogue.query_weight / catalogue.query_weight.sum())

    # Sorting random keys gives a uniformly random order of the pool, and keys of 2 keep the
    # empty places of shorter pools at the end. The draw goes by blocks to bound memory.
    largest_pool = pool.shape[1]
    drawn_slots = min(largest_pool, positions)
    places = np.empty((sessions, drawn_slots), np.int64)
    block = max(1, _SHUFFLE_BUDGET // largest_pool)
    for start in range(0, sessions, block):
        rows = query_index[start : start + block]
        if shuffle:
            keys = rng.random((len(rows), largest_pool))
            keys[np.arange(largest_pool)[None, :] >= pool_sizes[rows][:, None]] = 2.0
            places[start : start + len(rows)] = np.argsort(keys, axis=1)[:, :drawn_slots]
        else:
            places[start : start + len(rows)] = np.arange(drawn_slots)[None, :]

    mask = np.arange(positions)[None, :] < np.minimum(pool_sizes[query_index], positions)[:, None]
    pair_index = np.zeros((sessions, positions), np.int64)
    pair_index[:, :drawn_slots] = pool[query_index[:, None], places]
    pair_index = np.where(mask, pair_index, 0)

    def pair_column(values: np.ndarray) -> np.ndarray:
        return np.where(mask, values[pair_index], 0).astype(np.int32)

    query_doc_id = pair_column(catalogue.query_doc_id)
    return {
        "query_id": queries[query_index],
        "doc_id": pair_column(catalogue.doc_id),
        "query_doc_id": query_doc_id,
        "query_doc_hash": np.where(mask, _pair_hash(query_doc_id), 0).astype(np.int32),
        "position": np.where(mask, np.arange(1, positions + 1)[None, :], 0).astype(np.int32),
        "mask": mask.astype(np.uint8),
        "weight": np.ones(sessions, np.float32),
    }


def _pair_hash(query_doc_id: np.ndarray) -> np.ndarray:
    """Return a non-negative 31-bit hash of each pair id (the SplitMix64 finaliser).

    NOTE: this is not the readers' fingerprint hash, which keys the pair's text, so a
    simulated log and the same log read back from a file have different `query_doc_hash`.
    """
    value = query_doc_id.astype(np.uint64)
    with np.errstate(over="ignore"):
        value = (value ^ (value >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        value = (value ^ (value >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        value = value ^ (value >> np.uint64(31))
    return (value & np.uint64(0x7FFFFFFF)).astype(np.int32)


@nnx.jit
def _sample_chunk(model, batch, key):
    return model.sample(batch, nnx.Rngs(sample=key))


def _draw_clicks(model: nnx.Module, columns: dict[str, np.ndarray], key: jax.Array) -> dict[str, np.ndarray]:
    """Draw clicks and hidden states with the model's `sample`, in chunks of `SAMPLE_CHUNK` rows."""
    sessions, positions = columns["mask"].shape
    names = ("query_id", "doc_id", "query_doc_id", "query_doc_hash", "position", "mask")
    outputs: dict[str, np.ndarray] = {}
    for chunk, start in enumerate(range(0, sessions, SAMPLE_CHUNK)):
        rows = min(SAMPLE_CHUNK, sessions - start)
        batch = {}
        for name in names:
            part = columns[name][start : start + rows]
            widths = [(0, SAMPLE_CHUNK - rows)] + [(0, 0)] * (part.ndim - 1)
            batch[name] = np.pad(part, widths)
        states = _sample_chunk(model, batch, jax.random.fold_in(key, chunk))
        for name, value in states.items():
            if name not in outputs:
                outputs[name] = np.zeros((sessions, positions), np.uint8)
            outputs[name][start : start + rows] = np.asarray(value)[:rows]
    return outputs


# ---------------------------------------------------------------- true parameters


def _parameter_tables(model: nnx.Module) -> list[tuple[str, str, nnx.Variable, object]]:
    """Return (name, role, variable, owner module) for every `nnx.Param` of the model.

    The name is the parameter's path joined by `/` without a final `logit` or `logits`. The
    role is the attribute name of the module that owns the table (`attraction`, `tau1`, ...).
    """
    tables = []
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        path = tuple(path)
        owner = model
        for part in path[:-1]:
            owner = owner[part] if isinstance(part, int) else getattr(owner, part)
        if path[-1] in ("logit", "logits") and len(path) > 1:
            name_path = path[:-1]
        else:
            name_path = path
        role = str(name_path[-1])
        tables.append(("/".join(str(part) for part in name_path), role, variable, owner))
    return tables


def draw_random_parameters(model: nnx.Module, rng: np.random.Generator) -> None:
    """Set every parameter of `model` to a random value from the distribution of its role.

    The distributions are listed in this module's docstring. The model is changed in place.
    """
    for _, role, variable, owner in _parameter_tables(model):
        shape = variable.get_value().shape
        dtype = variable.get_value().dtype
        if isinstance(owner, EmbeddingLogits):
            alpha, beta = _PAIR_BETA.get(role, _DEFAULT_PAIR_BETA)
            probabilities = rng.beta(alpha, beta, size=shape)
            logits = _logit(probabilities)
            logits[:2] = 0.0
        elif isinstance(owner, RankLogits):
            logits = np.zeros(shape)
            logits[1:] = _logit(_rank_probabilities(rng, role, shape[0] - 1))
        elif isinstance(owner, GlobalLogit):
            low, high = _GLOBAL_UNIFORM.get(role, _DEFAULT_GLOBAL_UNIFORM)
            logits = _logit(rng.uniform(low, high, size=shape))
        elif role == "examination" and len(shape) == 2 and shape[0] == shape[1]:
            logits = _ubm_examination_logits(rng, shape[0] - 1)
        else:
            logits = rng.normal(0.0, 1.0, size=shape)
        variable.set_value(jax.numpy.asarray(logits, dtype))


def _rank_probabilities(rng: np.random.Generator, role: str, positions: int) -> np.ndarray:
    """Draw `[positions]` probabilities for ranks 1..positions."""
    ranks = np.arange(1, positions + 1)
    if role in _DECREASING_BY_RANK_TOP:
        top = rng.uniform(*_DECREASING_BY_RANK_TOP[role])
        decay = rng.uniform(*_DECAY)
        return top * ranks ** (-decay)
    return rng.uniform(*_UNIFORM_BY_RANK, size=positions)


def _ubm_examination_logits(rng: np.random.Generator, positions: int) -> np.ndarray:
    """Draw UBM's `[positions + 1, positions + 1]` logits of theta(r, r'), nonzero only where r' < r."""
    top = rng.uniform(*_DECREASING_BY_RANK_TOP["examination"])
    decay = rng.uniform(*_DECAY)
    rank = np.arange(positions + 1)[:, None]
    previous = np.arange(positions + 1)[None, :]
    used = (previous < rank) & (rank >= 1)
    distance = np.maximum(rank - previous, 1)
    logits = _logit(top * distance ** (-decay)) + rng.normal(0.0, _UBM_LOGIT_NOISE, size=distance.shape)
    return np.where(used, logits, 0.0)


def _logit(probability: np.ndarray) -> np.ndarray:
    probability = np.clip(np.asarray(probability, np.float64), 1e-6, 1 - 1e-6)
    return np.log(probability) - np.log1p(-probability)


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logit, np.float64)))


def true_parameters(model: nnx.Module, catalogue: Catalogue) -> dict:
    """Return every parameter of `model` as probabilities, ready for JSON.

    Per-pair tables become lists aligned with the catalogue's pairs (`catalogue.query_doc_id`),
    per-rank tables lists for ranks 1..positions, global parameters numbers, and UBM's
    examination a list whose entry r - 1 lists theta(r, r') for r' = 0..r-1. Any other table is
    converted whole. Keys are the parameter names, such as `attraction` or `continuation`.
    """
    parameters = {}
    for name, role, variable, owner in _parameter_tables(model):
        logits = np.asarray(variable.get_value(), np.float64)
        if isinstance(owner, EmbeddingLogits) and owner.column == "query_doc_id":
            value = _sigmoid(logits[catalogue.query_doc_id]).tolist()
        elif isinstance(owner, RankLogits):
            value = _sigmoid(logits[1:]).tolist()
        elif role == "examination" and logits.ndim == 2 and logits.shape[0] == logits.shape[1]:
            value = [_sigmoid(logits[rank, :rank]).tolist() for rank in range(1, logits.shape[0])]
        else:
            value = _sigmoid(logits).tolist()
        parameters[name] = value
    return parameters


# ---------------------------------------------------------------- files


def truth_path(output: str | os.PathLike) -> Path:
    """Return where `write_simulated_log` puts the true parameters of the log `output`: `<output>.truth.json`."""
    output = Path(output)
    return output.with_name(output.name + ".truth.json")


def write_simulated_log(
    output: str | os.PathLike,
    format: str,
    model_name: str,
    model: nnx.Module,
    catalogue: Catalogue,
    *,
    sessions: int,
    positions: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    source: str = "random parameters",
    settings: Mapping | None = None,
) -> dict:
    """Simulate sessions, write them to `output` as `format` text and the true parameters beside it.

    The true parameters go to `truth_path(output)` as JSON. Its keys are `model`, `source`,
    `format`, `log`, `sessions`, `clickjax_version`, `settings`, `click_rate` (clicks per shown
    result), `parameters` (every parameter as probabilities, see `true_parameters`) and
    `summary` (the model's `parameter_summary`, when it has one). The last key, `pairs`, lists
    for each pair, in the order of the per-pair parameter lists, its `query_doc_id`, `query_id`
    and `doc_id` and the `query_key` and `document_key` that the log uses (see
    `clickjax.writers`).

    Args:
      output: the log file; a name ending in `.gz` is gzip-compressed.
      format: `"baidu"` or `"wscd"`.
      model_name: the model's name in `clickjax.models.MODELS`, recorded in the truth file.
      model, catalogue, sessions, positions, shuffle, seed: as for `simulate`.
      source: where the parameters came from, recorded in the truth file.
      settings: further settings to record, such as the command-line options.

    Returns:
      The contents of the truth file.
    """
    simulated = simulate(model, catalogue, sessions, positions=positions, shuffle=shuffle, seed=seed)
    write_log(output, simulated.log, format)

    columns = simulated.log.columns
    truth = {
        "model": model_name,
        "source": source,
        "format": format,
        "log": str(output),
        "sessions": sessions,
        "clickjax_version": __version__,
        "settings": dict(settings or {}),
        "click_rate": float(columns["click"].sum() / max(int(columns["mask"].sum()), 1)),
        "parameters": true_parameters(model, catalogue),
    }
    try:
        truth["summary"] = model.parameter_summary()
    except NotImplementedError:
        logger.info("%s has no parameter_summary; the truth file has no summary", type(model).__name__)
    truth["pairs"] = {
        "query_doc_id": catalogue.query_doc_id.tolist(),
        "query_id": catalogue.query_id.tolist(),
        "doc_id": catalogue.doc_id.tolist(),
        "query_key": query_keys(format, catalogue.query_id),
        "document_key": document_keys(format, catalogue.doc_id),
    }
    # One line per key keeps the long per-pair lists readable.
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in truth.items()]
    truth_path(output).write_text("{\n" + ",\n".join(lines) + "\n}\n")
    return truth


@dataclass
class SimulationConfig:
    """Everything that defines a simulated log file, as `clickjax simulate` takes it; recorded in the truth file.

    Without `model_dir`, the parameters of `model` are drawn by `draw_random_parameters` on a
    `Catalogue.random` of `queries` x `documents_per_query` pairs. With `model_dir`, the model
    that `clickjax train` saved there supplies the parameters and its training pairs the
    catalogue, and `queries` and `documents_per_query` keep the most frequent ones.
    """

    output: str
    format: str
    sessions: int
    model: str | None = None
    model_dir: str | None = None
    positions: int | None = None
    queries: int | None = None
    documents_per_query: int | None = None
    shuffle: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.format not in WRITE_FORMATS:
            raise ValueError(f"unknown format {self.format!r} to write; expected one of {', '.join(WRITE_FORMATS)}")
        if self.model_dir is None and self.model is None:
            raise ValueError("a model name is required unless model_dir names a trained model")
        if self.model is not None and self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {', '.join(sorted(MODELS))}")
        for name in ("sessions", "positions", "queries", "documents_per_query"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


def run_simulation(config: SimulationConfig) -> dict:
    """Simulate the log that `config` describes, write it and its truth file, and return the truth.

    Raises:
      FileNotFoundError: `model_dir` contains no saved model or no training pairs.
      ValueError: the configuration does not fit the saved model.
    """
    settings = asdict(config)
    if config.model_dir is None:
        name = config.model
        positions = config.positions or DEFAULT_POSITIONS
        settings["queries"] = config.queries or DEFAULT_QUERIES
        settings["documents_per_query"] = config.documents_per_query or DEFAULT_DOCUMENTS_PER_QUERY
        catalogue = Catalogue.random(settings["queries"], settings["documents_per_query"])
        model = MODELS[name](positions=positions, query_doc_pairs=catalogue.pair_table_size, rngs=nnx.Rngs(config.seed))
        # A stream of its own, so that the parameters do not share draws with the sessions.
        draw_random_parameters(model, np.random.default_rng([config.seed, 1]))
        source = "random parameters"
    else:
        folder = _model_folder(Path(config.model_dir))
        model = load_model(folder)
        name = next(key for key, model_class in MODELS.items() if type(model) is model_class)
        if config.model is not None and config.model != name:
            raise ValueError(f"the model in {folder} is {name}, not {config.model}; leave out the model name")
        positions = config.positions or model.positions
        if positions > model.positions:
            raise ValueError(f"positions {positions} exceeds the page length {model.positions} of the model in {folder}")
        catalogue = Catalogue.from_training_pairs(
            load_training_pairs(folder),
            max_queries=config.queries,
            max_documents_per_query=config.documents_per_query,
        )
        source = f"trained model in {folder}"

    return write_simulated_log(
        config.output,
        config.format,
        name,
        model,
        catalogue,
        sessions=config.sessions,
        positions=positions,
        shuffle=config.shuffle,
        seed=config.seed,
        source=source,
        settings={**settings, "positions": positions},
    )


def _model_folder(folder: Path) -> Path:
    """Return the folder of a saved model: `folder` itself or its `model/` subfolder (`clickjax train --output`)."""
    if not (folder / "clickjax-model.json").exists() and (folder / "model" / "clickjax-model.json").exists():
        return folder / "model"
    return folder
