"""Saving and loading trained click models in a versioned folder format.

A saved model is a folder with two files:

- `clickjax-model.json`: the format version, the clickjax version that wrote it, the model name and
  its constructor arguments;
- `parameters.npz`: every `nnx.Param` of the model, keyed by its path joined with `/`.

`load_model` rebuilds the model from the JSON file and fills in the parameters. A folder written by a
newer format version is rejected with a message naming both versions.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax import __version__
from clickjax.models import MODELS

__all__ = ["FORMAT_VERSION", "load_model", "save_model"]

FORMAT_VERSION = 1
_METADATA = "clickjax-model.json"
_PARAMETERS = "parameters.npz"


def save_model(model: nnx.Module, folder: Path, config: dict) -> None:
    """Write `model` to `folder`.

    Args:
      model: a click model from `clickjax.models`.
      folder: created if missing; existing files of a saved model are replaced.
      config: the constructor arguments: `model` (the registry name), `positions` and
        `query_doc_pairs`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    arrays = {"/".join(str(part) for part in path): np.asarray(variable.get_value()) for path, variable in flat}
    np.savez(folder / _PARAMETERS, **arrays)
    metadata = {
        "format_version": FORMAT_VERSION,
        "clickjax_version": __version__,
        "model": config["model"],
        "positions": int(config["positions"]),
        "query_doc_pairs": int(config["query_doc_pairs"]),
    }
    (folder / _METADATA).write_text(json.dumps(metadata, indent=2) + "\n")


def load_model(folder: Path) -> nnx.Module:
    """Rebuild a model written by `save_model`.

    Raises:
      FileNotFoundError: `folder` contains no saved model.
      ValueError: the folder was written by a newer format version, or its parameters do not match.
    """
    folder = Path(folder)
    metadata_path = folder / _METADATA
    if not metadata_path.exists():
        raise FileNotFoundError(f"{metadata_path} not found: {folder} is not a folder written by save_model")
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
