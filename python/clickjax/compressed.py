"""Compressed per-pair logits over `query_doc_hash`: tables far smaller than the number of pairs.

A full table keeps one logit per query-document pair and needs a vocabulary of dense ids. The
modules here read the non-negative 31-bit `query_doc_hash` column, which needs no vocabulary, and
store `pairs / compression` parameters, so several pairs share each parameter:

- `HashedLogits`: the hashing trick. A pair's logit is a learned bias plus the sum, over `hashes`
  hash functions, of a table entry at a hashed bucket times a hashed sign of +1 or -1. The signs
  make the pairs that collide in a bucket cancel in expectation instead of adding up.
- `QuotientRemainderLogits`: the quotient-remainder trick. The pair's hash x picks one entry of a
  remainder table at `x % m` and one of a quotient table at `(x // m) % q`. The logit is the bias
  plus both. Two pairs share both entries only if they agree on both indices.
- `RobeLogits`: ROBE-D, one circular array. Each pair reads a block of `block_size` consecutive
  entries starting at a hashed offset (wrapping around the end); its logit is the bias plus the
  signed sum of the block. For scalar logits a block acts as `block_size` hashed parameters that
  sit next to each other in memory, so one pair reads one cache line instead of several.

Every module stores its deviations from the bias, so an unseen pair starts at the bias and the
bias learns the mean logit. Hashes use 32-bit unsigned arithmetic (the murmur3 finaliser), which
JAX computes exactly with x64 disabled, so ids up to 2**31 - 1 hash without overflow.

Example:

    >>> import numpy as np
    >>> from clickjax.compressed import HashedLogits
    >>> attraction = HashedLogits(pairs=1_000_000, compression=100)
    >>> attraction.buckets
    10000
    >>> attraction({"query_doc_hash": np.array([[7, 2**31 - 1]], np.int32)}).shape
    (1, 2)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clickjax.priors import BetaPrior, L2Prior, Prior, check_prior

__all__ = ["HashedLogits", "QuotientRemainderLogits", "RobeLogits", "hash_ids", "table_size"]

# Odd 32-bit constants: the golden-ratio increment that separates the seeds, and the two
# multipliers of the murmur3 32-bit finaliser (fmix32).
_SEED_STEP = 0x9E3779B9
_MIX_1 = 0x85EBCA6B
_MIX_2 = 0xC2B2AE35


def hash_ids(ids: jax.Array | np.ndarray, seed: int) -> jax.Array:
    """Hash non-negative int32 ids to uint32 with the murmur3 finaliser, seeded.

    The hash is `fmix32((id + seed * 0x9E3779B9) mod 2**32)`, where fmix32 is
    `h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35; h ^= h >> 16`, every product
    taken modulo 2**32. Different seeds give independent-looking hash functions.

    Args:
      ids: an int32 array of any shape with values in 0..2**31 - 1.
      seed: selects the hash function.

    Returns:
      A uint32 array of the shape of `ids`.
    """
    h = jnp.asarray(ids).astype(jnp.uint32) + jnp.uint32((seed * _SEED_STEP) % 2**32)
    h = h ^ (h >> 16)
    h = h * jnp.uint32(_MIX_1)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(_MIX_2)
    return h ^ (h >> 16)


def table_size(pairs: int | None, compression: float | None, buckets: int | None) -> int:
    """Return the number of parameters of a compressed table: `buckets`, or `ceil(pairs / compression)`.

    Raises:
      ValueError: unless exactly one of `buckets` and (`pairs`, `compression`) is given, or if a
        value is out of range.
    """
    if buckets is not None:
        if compression is not None:
            raise ValueError("give either buckets or compression, not both")
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, got {buckets}")
        return int(buckets)
    if compression is None or pairs is None:
        raise ValueError("give buckets, or pairs (the number of distinct query-document pairs) and compression")
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    if not (math.isfinite(compression) and compression >= 1):
        raise ValueError(
            f"compression must be a finite number of at least 1 (pairs per parameter), got {compression}; "
            "use EmbeddingLogits for one parameter per pair"
        )
    return max(1, math.ceil(pairs / compression))


def _check_ids(ids, column: str) -> None:
    if isinstance(ids, np.ndarray) and ids.size and ids.min() < 0:
        raise ValueError(
            f"{column} contains the negative value {ids.min()}, but compressed tables need non-negative "
            "31-bit ids such as query_doc_hash"
        )


def _sign(ids, seed: int) -> jax.Array:
    """Return +1 or -1 per id from the top bit of a hash independent of the bucket hashes."""
    top_bit = hash_ids(ids, seed) >> 31
    return 1.0 - 2.0 * top_bit.astype(jnp.float32)


class _CompressedLogits(nnx.Module):
    """Shared parts: the bias, the deviation table, the prior and the id column."""

    def _setup(self, size: int, column: str, seed: int, init: float, prior: Prior | None, param_dtype) -> None:
        check_prior(prior)
        if isinstance(prior, L2Prior) and prior.mean != 0:
            raise ValueError(
                f"{type(self).__name__} applies an L2Prior to deviations from its learned bias, so the "
                f"prior mean must be 0, got {prior.mean}"
            )
        self.buckets = size
        self.column = column
        self.seed = int(seed)
        self.prior = prior
        self.param_dtype = jnp.dtype(param_dtype)
        self.bias = nnx.Param(jnp.asarray(init, dtype=param_dtype))
        self.table = nnx.Param(jnp.zeros((size,), dtype=param_dtype))

    def __call__(self, batch: dict) -> jax.Array:
        """Compute the logit of each slot's pair.

        Args:
          batch: a batch dict that contains the id column named by `column`.

        Returns:
          `[batch, positions]` logits.

        Raises:
          ValueError: if the id column is a numpy array with a negative id.
        """
        from clickjax.parameters import batch_column  # clickjax.parameters imports this module

        ids = batch_column(batch, self.column)
        _check_ids(ids, self.column)
        return self._logits(ids)

    def _logits(self, ids) -> jax.Array:
        raise NotImplementedError

    def penalty(self) -> jax.Array:
        """Compute the prior's negative log density of the stored deviations, summed, or 0 without a prior."""
        if self.prior is None:
            return jnp.zeros((), self.param_dtype)
        return jnp.sum(self.prior.negative_log_density(self.table[...]))

    def _base_config(self) -> dict:
        return {
            "buckets": self.buckets,
            "column": self.column,
            "seed": self.seed,
            "prior": None if self.prior is None else self.prior.config(),
            "param_dtype": self.param_dtype.name,
        }


class HashedLogits(_CompressedLogits):
    """Signed feature hashing: `logit = bias + sum_j sign_j(id) * table[bucket_j(id)]`.

    Hash function j (seeded `seed + 2 j`) picks the bucket, `hash % buckets`, and an independent
    hash (seeded `seed + 2 j + 1`) picks the sign. All `hashes` functions share one table of
    `buckets` entries.

    With `hashes=1`, a pair's logit is `bias + sign * table[bucket]`. A `BetaPrior` then applies
    to the probabilities of both signs, `sigmoid(bias + w)` and `sigmoid(bias - w)`, half each,
    because about half of the pairs in a bucket read it with each sign. With more than one hash a
    pair's probability depends on several entries, so only an `L2Prior` is accepted.

    Args:
      pairs: the number of distinct query-document pairs the table stands for.
      compression: pairs per table entry, at least 1; the table has `ceil(pairs / compression)`
        entries. Give this or `buckets`.
      buckets: the number of table entries, instead of `pairs` and `compression`.
      hashes: the number of hash functions summed per pair.
      signed: multiply each entry by a hashed sign; False gives the plain hashing trick.
      column: the batch column of non-negative 31-bit int32 ids, `[batch, positions]`.
      seed: selects the hash functions.
      init: the initial bias logit.
      prior: an `L2Prior` on the table entries, a `BetaPrior` (only with `hashes=1`), or None.
      param_dtype: dtype of the parameters.
    """

    def __init__(
        self,
        pairs: int | None = None,
        *,
        compression: float | None = None,
        buckets: int | None = None,
        hashes: int = 1,
        signed: bool = True,
        column: str = "query_doc_hash",
        seed: int = 0,
        init: float = 0.0,
        prior: Prior | None = None,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        if hashes < 1:
            raise ValueError(f"hashes must be at least 1, got {hashes}")
        if isinstance(prior, BetaPrior) and hashes > 1:
            raise ValueError(
                f"a BetaPrior needs one table entry per pair, but hashes={hashes} sums several; "
                "use an L2Prior or hashes=1"
            )
        self._setup(table_size(pairs, compression, buckets), column, seed, init, prior, param_dtype)
        self.hashes = int(hashes)
        self.signed = bool(signed)

    def _logits(self, ids) -> jax.Array:
        table = self.table[...]
        logits = jnp.broadcast_to(self.bias[...], jnp.shape(ids))
        for j in range(self.hashes):
            bucket = hash_ids(ids, self.seed + 2 * j) % jnp.uint32(self.buckets)
            entry = table[bucket.astype(jnp.int32)]
            if self.signed:
                entry = entry * _sign(ids, self.seed + 2 * j + 1).astype(table.dtype)
            logits = logits + entry
        return logits

    def penalty(self) -> jax.Array:
        """Compute the prior's negative log density of the table, summed, or 0 without a prior.

        Under a `BetaPrior` an entry w counts as the pair logit `bias + w`, and, when signed, half
        as `bias + w` and half as `bias - w`.
        """
        if not isinstance(self.prior, BetaPrior):
            return super().penalty()
        bias = self.bias[...]
        table = self.table[...]
        positive = self.prior.negative_log_density(bias + table)
        if not self.signed:
            return jnp.sum(positive)
        return jnp.sum(0.5 * (positive + self.prior.negative_log_density(bias - table)))

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return {**self._base_config(), "hashes": self.hashes, "signed": self.signed}


def _reject_beta_prior(name: str, prior) -> None:
    if isinstance(prior, BetaPrior):
        raise ValueError(
            f"{name} sums several entries per pair, so a Beta prior on a pair's probability cannot be "
            "split over its entries; use an L2Prior, or HashedLogits(hashes=1) for a BetaPrior"
        )


class QuotientRemainderLogits(_CompressedLogits):
    """The quotient-remainder trick: `logit = bias + remainder[x % m] + quotient[(x // m) % q]`.

    x is the hash of the pair's id, `m = ceil(buckets / 2)` entries form the remainder table and
    `q = buckets - m` (at least 1) the quotient table, stored one after the other in `table`.
    Two pairs whose x agree modulo `m * q` share both entries; pairs that share one index still
    differ by the other entry.

    Args:
      pairs: the number of distinct query-document pairs the table stands for.
      compression: pairs per table entry, at least 1. Give this or `buckets`.
      buckets: the total number of entries of both tables, at least 2.
      column: the batch column of non-negative 31-bit int32 ids, `[batch, positions]`.
      seed: selects the hash function.
      init: the initial bias logit.
      prior: an `L2Prior` on the entries, or None. A `BetaPrior` is rejected.
      param_dtype: dtype of the parameters.
    """

    def __init__(
        self,
        pairs: int | None = None,
        *,
        compression: float | None = None,
        buckets: int | None = None,
        column: str = "query_doc_hash",
        seed: int = 0,
        init: float = 0.0,
        prior: Prior | None = None,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        _reject_beta_prior("QuotientRemainderLogits", prior)
        size = max(2, table_size(pairs, compression, buckets))
        self._setup(size, column, seed, init, prior, param_dtype)
        self.remainders = math.ceil(size / 2)
        self.quotients = size - self.remainders

    def _logits(self, ids) -> jax.Array:
        x = hash_ids(ids, self.seed)
        remainder = (x % jnp.uint32(self.remainders)).astype(jnp.int32)
        quotient = ((x // jnp.uint32(self.remainders)) % jnp.uint32(self.quotients)).astype(jnp.int32)
        table = self.table[...]
        return self.bias[...] + table[remainder] + table[self.remainders + quotient]

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return self._base_config()


class RobeLogits(_CompressedLogits):
    """ROBE-D: `logit = bias + sign(id) * sum_{t < block_size} table[(offset(id) + t) % buckets]`.

    Every parameter is in one circular array of `buckets` entries. A pair's block starts at
    `hash % buckets` and wraps around the end. Blocks of different pairs overlap partly, so a
    pair shares each entry with different neighbours, and the hashed sign makes the shared part
    cancel in expectation.

    Args:
      pairs: the number of distinct query-document pairs the table stands for.
      compression: pairs per array entry, at least 1. Give this or `buckets`.
      buckets: the length of the circular array, at least `block_size`.
      block_size: the number of consecutive entries a pair reads.
      signed: multiply the block's sum by a hashed sign.
      column: the batch column of non-negative 31-bit int32 ids, `[batch, positions]`.
      seed: selects the hash functions.
      init: the initial bias logit.
      prior: an `L2Prior` on the entries, or None. A `BetaPrior` is rejected.
      param_dtype: dtype of the parameters.
    """

    def __init__(
        self,
        pairs: int | None = None,
        *,
        compression: float | None = None,
        buckets: int | None = None,
        block_size: int = 4,
        signed: bool = True,
        column: str = "query_doc_hash",
        seed: int = 0,
        init: float = 0.0,
        prior: Prior | None = None,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        _reject_beta_prior("RobeLogits", prior)
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        size = table_size(pairs, compression, buckets)
        if size < block_size:
            raise ValueError(
                f"the array has {size} entries, fewer than block_size={block_size}; lower the "
                "compression or the block size"
            )
        self._setup(size, column, seed, init, prior, param_dtype)
        self.block_size = int(block_size)
        self.signed = bool(signed)

    def _logits(self, ids) -> jax.Array:
        offset = (hash_ids(ids, self.seed) % jnp.uint32(self.buckets)).astype(jnp.int32)
        index = (offset[..., None] + jnp.arange(self.block_size, dtype=jnp.int32)) % self.buckets
        block_sum = jnp.sum(self.table[...][index], axis=-1)
        if self.signed:
            block_sum = block_sum * _sign(ids, self.seed + 1).astype(block_sum.dtype)
        return self.bias[...] + block_sum

    def config(self) -> dict:
        """Return the constructor arguments as a JSON-ready dict, for `save_model`."""
        return {**self._base_config(), "block_size": self.block_size, "signed": self.signed}
