"""Shared fixtures: the real click logs and small simulated logs."""

import os
from pathlib import Path

import pytest

REAL_DATA_HINT = "set CLICKJAX_DATA_DIR to the folder that contains yandex-wscd-pyclick/ and clickmodels/ to run the real-log tests"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real click logs named by CLICKJAX_DATA_DIR; skips the test when it is unset."""
    value = os.environ.get("CLICKJAX_DATA_DIR")
    if not value:
        pytest.skip(REAL_DATA_HINT)
    path = Path(value)
    if not (path / "yandex-wscd-pyclick").is_dir():
        pytest.fail(f"CLICKJAX_DATA_DIR={value} has no yandex-wscd-pyclick/ folder")
    return path


@pytest.fixture(params=["device", "host"])
def distinct_on(request, monkeypatch) -> str:
    """Where sparse steps find the distinct ids of a batch: the scratch array on the device, or the host.

    The host is chosen by tables of `clickjax.sparse.HOST_DISTINCT_MIN_ROWS` rows and more, far
    larger than a test's tables, so with "host" every table qualifies.
    """
    import clickjax.sparse

    if request.param == "host":
        monkeypatch.setattr(clickjax.sparse, "HOST_DISTINCT_MIN_ROWS", 1)
    return request.param
