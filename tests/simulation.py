"""Small simulated click logs in the batch contract, built with numpy for tests."""

from __future__ import annotations

import numpy as np

from clickjax.data import ClickLog


def simulate_pbm(
    sessions: int, pairs: int, theta, seed: int, positions: int | None = None, alpha_range=(0.05, 0.95)
):
    """Simulate a position-based model: returns (ClickLog, alpha [pairs + 2] with ids 0 and 1 unused).

    Each session shows `len(theta)` distinct pairs drawn from ids 2..pairs+1; rank r is clicked with
    probability theta[r - 1] * alpha[id], where alpha is drawn uniformly from `alpha_range`.
    """
    rng = np.random.default_rng(seed)
    theta = np.asarray(theta, np.float64)
    shown = len(theta)
    positions = positions or shown
    alpha = np.concatenate([[0.0, 0.5], rng.uniform(*alpha_range, size=pairs)])
    ids = np.stack([rng.choice(pairs, size=shown, replace=False) + 2 for _ in range(sessions)])
    clicks = rng.random((sessions, shown)) < theta[None, :] * alpha[ids]

    columns = {
        "query_id": np.full(sessions, 2, np.int32),
        "doc_id": np.zeros((sessions, positions), np.int32),
        "query_doc_id": np.zeros((sessions, positions), np.int32),
        "query_doc_hash": np.zeros((sessions, positions), np.int32),
        "position": np.zeros((sessions, positions), np.int32),
        "click": np.zeros((sessions, positions), np.uint8),
        "mask": np.zeros((sessions, positions), np.uint8),
        "weight": np.ones(sessions, np.float32),
    }
    columns["doc_id"][:, :shown] = ids
    columns["query_doc_id"][:, :shown] = ids
    columns["query_doc_hash"][:, :shown] = ids
    columns["position"][:, :shown] = np.arange(1, shown + 1)
    columns["click"][:, :shown] = clicks
    columns["mask"][:, :shown] = 1
    return ClickLog(columns=columns, positions=positions), alpha
