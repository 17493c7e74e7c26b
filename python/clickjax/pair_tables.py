"""Choose the per-pair parameter modules of a model by name, as `clickjax train` does.

Every click model except GCTR and RCTR has roles that hold one parameter per query-document pair:
attraction (PBM, CM, UBM, DCM, CCM, DBN, SDBN), satisfaction (DBN, SDBN) and the click-through
rate (DCTR). `pair_table_modules` builds one module for each of those roles, of one kind:

| kind | module | ids |
|---|---|---|
| `table` | `EmbeddingLogits`, one row per pair | `query_doc_id` (vocabulary) |
| `hashed` | `HashedLogits`, signed hashing | `query_doc_hash` |
| `qr` | `QuotientRemainderLogits` | `query_doc_hash` |
| `robe` | `RobeLogits` (ROBE-D) | `query_doc_hash` |

The compressed kinds keep `pairs / compression` entries per role (see docs/parameters.md for
the memory cost and accuracy). A prior is given as text: `none`, `l2:STRENGTH` or `beta:A,B`.

Example:

    >>> from clickjax.pair_tables import pair_table_modules, parse_prior
    >>> modules = pair_table_modules("dbn", "hashed", pairs=1000, compression=10, prior=parse_prior("l2:1"))
    >>> sorted(modules), modules["attraction"].buckets
    (['attraction', 'satisfaction'], 100)
"""

from __future__ import annotations

import math

from flax import nnx

from clickjax.compressed import HashedLogits, QuotientRemainderLogits, RobeLogits
from clickjax.parameters import EmbeddingLogits
from clickjax.priors import BetaPrior, L2Prior, Prior

__all__ = ["PAIR_ROLES", "TABLE_KINDS", "pair_table_modules", "parse_prior"]

# The constructor arguments of each model that take a per-pair module.
PAIR_ROLES: dict[str, tuple[str, ...]] = {
    "gctr": (),
    "rctr": (),
    "dctr": ("click_through_rate",),
    "pbm": ("attraction",),
    "cm": ("attraction",),
    "ubm": ("attraction",),
    "dcm": ("attraction",),
    "ccm": ("attraction",),
    "dbn": ("attraction", "satisfaction"),
    "sdbn": ("attraction", "satisfaction"),
}

TABLE_KINDS = ("table", "hashed", "qr", "robe")


def parse_prior(text: str | None) -> Prior | None:
    """Read a prior from its text form: `none`, `l2:STRENGTH` or `beta:A,B`.

    Raises:
      ValueError: the text has another form or its numbers are out of range; the message
        quotes the text.
    """
    if text is None or text.strip().lower() == "none":
        return None
    kind, _, arguments = text.strip().partition(":")
    try:
        numbers = [float(part) for part in arguments.split(",")] if arguments else []
        if kind == "l2" and len(numbers) == 1:
            return L2Prior(strength=numbers[0])
        if kind == "beta" and len(numbers) == 2:
            return BetaPrior(a=numbers[0], b=numbers[1])
    except ValueError as error:
        raise ValueError(f"invalid prior {text!r}: {error}") from error
    raise ValueError(f"invalid prior {text!r}; expected none, l2:STRENGTH (such as l2:1) or beta:A,B (such as beta:2,8)")


def pair_table_modules(
    model: str,
    kind: str,
    *,
    pairs: int,
    compression: float = 1.0,
    prior: Prior | None = None,
    seed: int = 0,
) -> dict[str, nnx.Module]:
    """Build the per-pair modules of `model` as keyword arguments of its constructor.

    Args:
      model: a name of `clickjax.models.MODELS`.
      kind: one of `TABLE_KINDS`.
      pairs: rows of a `table` (the vocabulary's pair table size), and the number of pairs a
        compressed table stands for.
      compression: pairs per entry of a compressed table, at least 1; a `table` needs 1.
      prior: the prior of every per-pair module, or None.
      seed: seed of the hash functions; each role gets its own.

    Returns:
      A dict from role name to module, empty for GCTR and RCTR.

    Raises:
      ValueError: an unknown model or kind, or a compression that does not fit the kind.
    """
    if model not in PAIR_ROLES:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(PAIR_ROLES)}")
    if kind not in TABLE_KINDS:
        raise ValueError(f"unknown pair table {kind!r}; expected one of {', '.join(TABLE_KINDS)}")
    if not (isinstance(compression, (int, float)) and math.isfinite(compression) and compression >= 1):
        raise ValueError(f"compression must be a number of at least 1, got {compression!r}")
    if kind == "table" and compression != 1:
        raise ValueError(
            f"compression {compression} needs a compressed pair table (hashed, qr or robe); a full table keeps one row per pair"
        )
    modules: dict[str, nnx.Module] = {}
    for index, role in enumerate(PAIR_ROLES[model]):
        role_seed = seed + 1000 * index
        if kind == "table":
            modules[role] = EmbeddingLogits(pairs, prior=prior)
        elif kind == "hashed":
            modules[role] = HashedLogits(pairs, compression=compression, seed=role_seed, prior=prior)
        elif kind == "qr":
            modules[role] = QuotientRemainderLogits(pairs, compression=compression, seed=role_seed, prior=prior)
        else:
            modules[role] = RobeLogits(pairs, compression=compression, seed=role_seed, prior=prior)
    return modules
