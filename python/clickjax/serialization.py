"""Saving and loading trained click models in a versioned folder format.

A saved model is a folder with two files, and a third one when the training log is known:

- `clickjax-model.json`: the format version, the clickjax version that wrote it, the model name,
  its constructor arguments, and the class and arguments of each parameter module (`modules`);
- `parameters.npz`: every `nnx.Param` of the model, keyed by its path joined with `/`;
- `training-pairs.npz`: the query-document pairs of the training log with their query, document,
  impression and click counts (`training_pairs`). `clickjax simulate --model-dir` needs them to
  know which documents a query can show, and `clickjax export` writes them beside the relevance.

`clickjax train` also saves the training vocabulary in the folder as `VOCABULARY_FILE`
(`clickjax.vocabulary`), which `clickjax evaluate` and `export` read.

`load_model` rebuilds the model from the JSON file and fills in the parameters. A folder written by a
newer format version is rejected with a message naming both versions. Version 1 folders, written
before `modules` existed, load with the model's default modules.

Only the built-in parameter modules (`clickjax.parameters.PARAMETER_MODULES`) can be saved. A model
with a module of another class fails in `save_model` with a message that names the role and the
class. A module shared by two roles of one model is saved once and shared again on loading. A
module shared by two models is saved with each, so the two loaded models no longer share it.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax import __version__
from clickjax.data import ClickLog
from clickjax.models import MODELS
from clickjax.parameters import PARAMETER_MODULES
from clickjax.priors import prior_from_config

__all__ = ["FORMAT_VERSION", "VOCABULARY_FILE", "load_model", "load_training_pairs", "save_model", "training_pairs"]

FORMAT_VERSION = 2
VOCABULARY_FILE = "vocabulary.parquet"
_METADATA = "clickjax-model.json"
_PARAMETERS = "parameters.npz"
_TRAINING_PAIRS = "training-pairs.npz"
_TRAINING_PAIR_ARRAYS = ("query_id", "doc_id", "query_doc_id", "impressions")
# Folders saved before clicks were counted lack this array.
_OPTIONAL_TRAINING_PAIR_ARRAYS = ("clicks",)


def save_model(model: nnx.Module, folder: Path, config: dict, pairs: dict[str, np.ndarray] | None = None) -> None:
    """Write `model` to `folder`.

    Args:
      model: a click model from `clickjax.models`.
      folder: created if missing; existing files of a saved model are replaced.
      config: the constructor arguments: `model` (the registry name), `positions` and
        `query_doc_pairs`.
      pairs: the training pairs from `training_pairs`, written to `training-pairs.npz`.

    Raises:
      ValueError: a parameter module of the model is not a built-in module, so it could not be
        rebuilt on loading.
    """
    modules = _module_configs(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    arrays = {"/".join(str(part) for part in path): np.asarray(variable.get_value()) for path, variable in flat}
    np.savez(folder / _PARAMETERS, **arrays)
    if pairs is not None:
        names = _TRAINING_PAIR_ARRAYS + tuple(name for name in _OPTIONAL_TRAINING_PAIR_ARRAYS if name in pairs)
        np.savez(folder / _TRAINING_PAIRS, **{name: pairs[name] for name in names})
    metadata = {
        "format_version": FORMAT_VERSION,
        "clickjax_version": __version__,
        "model": config["model"],
        "positions": int(config["positions"]),
        "query_doc_pairs": int(config["query_doc_pairs"]),
        "modules": modules,
    }
    (folder / _METADATA).write_text(json.dumps(metadata, indent=2) + "\n")


def load_model(folder: Path) -> nnx.Module:
    """Rebuild a model written by `save_model`.

    `folder` may also be the output folder of `clickjax train`, whose `model/` subfolder is read.

    Raises:
      FileNotFoundError: `folder` contains no saved model.
      ValueError: the folder was written by a newer format version, or its parameters do not match.
    """
    folder = Path(folder)
    if not (folder / _METADATA).exists() and (folder / "model" / _METADATA).exists():
        # The output folder of `clickjax train`, which keeps the model in its `model/` subfolder.
        folder = folder / "model"
    metadata_path = folder / _METADATA
    if not metadata_path.exists():
        raise FileNotFoundError(
            f"{metadata_path} not found: {folder} is not a folder written by save_model or by clickjax train"
        )
    metadata = json.loads(metadata_path.read_text())
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{folder} has model format version {version!r} (written by clickjax "
            f"{metadata.get('clickjax_version')}), but clickjax {__version__} reads versions up to "
            f"{FORMAT_VERSION}; upgrade clickjax"
        )
    model = MODELS[metadata["model"]](
        positions=metadata["positions"],
        query_doc_pairs=metadata["query_doc_pairs"],
        rngs=nnx.Rngs(0),
        **_build_modules(metadata.get("modules", {}), metadata_path),
    )
    state = nnx.state(model, nnx.Param)
    with np.load(folder / _PARAMETERS) as saved:
        for path, variable in nnx.to_flat_state(state):
            key = "/".join(str(part) for part in path)
            if key not in saved:
                raise ValueError(f"{folder / _PARAMETERS} has no parameter {key!r}")
            value = saved[key]
            if value.shape != variable.get_value().shape:
                raise ValueError(
                    f"parameter {key!r} in {folder} has shape {value.shape}, expected {variable.get_value().shape}"
                )
            variable.set_value(jnp.asarray(value))
    nnx.update(model, state)
    return model


def _module_configs(model: nnx.Module) -> dict[str, dict]:
    """Describe each parameter module that is an attribute of the model, keyed by the attribute's name."""
    configs: dict[str, dict] = {}
    seen: dict[int, str] = {}
    for role, module in vars(model).items():
        if not isinstance(module, nnx.Module):
            continue
        if id(module) in seen:
            configs[role] = {"same_as": seen[id(module)]}
            continue
        kind = type(module).__name__
        if PARAMETER_MODULES.get(kind) is not type(module):
            raise ValueError(
                f"cannot save the {role} module of {type(model).__name__}: {type(module).__module__}.{kind} "
                f"is not a built-in parameter module ({', '.join(PARAMETER_MODULES)}), so load_model "
                "could not rebuild it. Save its parameters yourself with nnx.state"
            )
        seen[id(module)] = role
        configs[role] = {"type": kind, "config": module.config()}
    return configs


def _build_modules(configs: dict[str, dict], source: Path) -> dict[str, nnx.Module]:
    """Rebuild the modules `_module_configs` described, as keyword arguments of the model's constructor."""
    modules: dict[str, nnx.Module] = {}
    for role, description in configs.items():
        if "same_as" in description:
            continue
        kind = description.get("type")
        if kind not in PARAMETER_MODULES:
            raise ValueError(
                f"{source} names the unknown parameter module {kind!r} for {role}; it was written by a "
                "clickjax version with other modules"
            )
        cls = PARAMETER_MODULES[kind]
        arguments = dict(description.get("config", {}))
        if "prior" in arguments:
            arguments["prior"] = prior_from_config(arguments["prior"])
        if "rngs" in inspect.signature(cls.__init__).parameters:
            arguments["rngs"] = nnx.Rngs(0)
        modules[role] = cls(**arguments)
    for role, description in configs.items():
        if "same_as" in description:
            modules[role] = modules[description["same_as"]]
    return modules


def training_pairs(log: ClickLog, batch_size: int = 65_536) -> dict[str, np.ndarray]:
    """Count the query-document pairs of a training log: the queries and documents a trained model has parameters for.

    A log on disk (`clickjax.shards.ShardedLog`) is read once in batches of `batch_size`, so
    memory grows with the number of pairs, not of sessions.

    Returns:
      `query_id`, `doc_id` and `query_doc_id` (int32), `impressions` (float64, the summed
      `weight` of the pair's real results) and `clicks` (float64, the summed `weight` of its
      clicks), each `[pairs]` in order of pair id. Padding and out-of-vocabulary ids (below 2)
      are left out.
    """
    batches = [log.columns] if hasattr(log, "columns") else log.batches(batch_size)
    # Indexed by pair id, grown as larger ids appear.
    query_of = np.zeros(0, np.int32)
    doc_of = np.zeros(0, np.int32)
    impressions = np.zeros(0, np.float64)
    clicks = np.zeros(0, np.float64)
    seen = np.zeros(0, bool)
    for columns in batches:
        real = columns["mask"].astype(bool) & (columns["query_doc_id"] >= 2)
        pair_id = columns["query_doc_id"][real]
        if pair_id.size == 0:
            continue
        size = max(len(impressions), int(pair_id.max()) + 1)
        query_of, doc_of, impressions, clicks, seen = (
            np.pad(array, (0, size - len(array))) for array in (query_of, doc_of, impressions, clicks, seen)
        )
        seen[pair_id] = True
        weight = np.broadcast_to(columns["weight"][:, None], real.shape)[real]
        # Every row of a pair has the pair's query and document, so any row may set them.
        query_of[pair_id] = np.broadcast_to(columns["query_id"][:, None], real.shape)[real]
        doc_of[pair_id] = columns["doc_id"][real]
        impressions += np.bincount(pair_id, weights=weight, minlength=size)
        clicks += np.bincount(pair_id, weights=weight * (columns["click"][real] == 1), minlength=size)
    ids = np.flatnonzero(seen)
    return {
        "query_id": query_of[ids].astype(np.int32),
        "doc_id": doc_of[ids].astype(np.int32),
        "query_doc_id": ids.astype(np.int32),
        "impressions": impressions[ids],
        "clicks": clicks[ids],
    }


def load_training_pairs(folder: Path) -> dict[str, np.ndarray]:
    """Read the training pairs that `save_model` wrote beside a model.

    `clicks` is present only in folders written by a clickjax version that counts them.

    Raises:
      FileNotFoundError: the folder has no `training-pairs.npz`, because the model was saved
        without `pairs` or by a clickjax version that did not write them.
      ValueError: the file lacks one of the arrays.
    """
    path = Path(folder) / _TRAINING_PAIRS
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the model was saved without its training pairs; retrain it with "
            "clickjax train, which writes them"
        )
    with np.load(path) as saved:
        missing = [name for name in _TRAINING_PAIR_ARRAYS if name not in saved]
        if missing:
            raise ValueError(f"{path} has no {', '.join(missing)}; retrain the model with clickjax train")
        names = _TRAINING_PAIR_ARRAYS + tuple(name for name in _OPTIONAL_TRAINING_PAIR_ARRAYS if name in saved)
        return {name: saved[name] for name in names}
