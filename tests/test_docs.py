"""The documentation site builds in strict mode, so every page, link, snippet and API reference resolves."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"

# Objects whose reference must appear on each API page: a mkdocstrings failure that leaves a page
# with only the module heading shows up here.
API_OBJECTS = {
    "api/data": ["clickjax.data.ClickLog", "clickjax.data.read_batches", "clickjax.data.Vocabulary"],
    "api/models": ["clickjax.models.base.ClickModel", "clickjax.models.pbm.PositionBasedModel"],
    "api/training": ["clickjax.training.Trainer", "clickjax.training.Trainer.fit"],
    "api/distributed": ["clickjax.distributed.DataParallel", "clickjax.distributed.initialize"],
    "api/metrics": ["clickjax.metrics.Metrics", "clickjax.metrics.evaluate"],
    "api/serialization": ["clickjax.serialization.save_model", "clickjax.serialization.load_model"],
    "api/ranking": ["clickjax.ranking.ranking_metrics", "clickjax.ranking.expected_ranking_metrics"],
    "api/comparison": ["clickjax.comparison.bootstrap_click_metrics"],
    "api/export": ["clickjax.export.export_pairs", "clickjax.export.GradeMapping"],
    "api/ingest": ["clickjax.ingest.ingest", "clickjax.ingest.aggregate_sessions"],
    "api/shards": ["clickjax.shards.read_shards", "clickjax.shards.shuffled_batches"],
    "api/parameters": [
        "clickjax.compressed.HashedLogits",
        "clickjax.compressed.QuotientRemainderLogits",
        "clickjax.compressed.RobeLogits",
        "clickjax.neural.DCNLogits",
        "clickjax.priors.BetaPrior",
    ],
    "api/uncertainty": ["clickjax.uncertainty.pair_statistics", "clickjax.uncertainty.rank_by_lower_bound"],
}

if importlib.util.find_spec("mkdocs") is None:
    # scripts/test.sh installs the docs extra, so there a missing mkdocs is an error.
    if os.environ.get("CLICKJAX_RELEASE_CHECKS") == "1":
        raise ImportError("mkdocs is not installed; install the docs extra: pip install 'clickjax[docs]'")
    pytest.skip("mkdocs is not installed; install the docs extra to build the docs", allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Build the site once in strict mode and return its folder."""
    site_dir = tmp_path_factory.mktemp("site")
    # The snippets extension resolves BENCHMARKS.md from the working folder, so run in the repository root.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(CONFIG), "--site-dir", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return site_dir


def _nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages.extend(_nav_pages(value))
        else:
            pages.append(value)
    return pages


def test_docs_build_strict(site):
    assert (site / "index.html").is_file()
    assert (site / "getting-started" / "index.html").is_file()


@pytest.mark.parametrize("page", sorted(API_OBJECTS))
def test_api_page_lists_objects(site, page):
    html = (site / page / "index.html").read_text()
    anchors = set(re.findall(r'id="(clickjax\.[\w.]+)"', html))

    for name in API_OBJECTS[page]:
        assert name in anchors, f"{page} has no reference for {name}"


def test_benchmarks_page_includes_record(site):
    html = (site / "benchmarks" / "index.html").read_text()
    headings = [line[3:].strip() for line in (ROOT / "BENCHMARKS.md").read_text().splitlines() if line.startswith("## ")]

    assert headings, "BENCHMARKS.md has no section headings"
    for heading in headings:
        assert heading in html, f"the benchmarks page lacks the section {heading!r} of BENCHMARKS.md"


def test_every_docs_page_in_nav():
    config = yaml.safe_load(CONFIG.read_text())
    in_nav = set(_nav_pages(config["nav"]))
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}

    assert pages - in_nav == set(), "add these pages to the nav of mkdocs.yml"
    assert in_nav - pages == set(), "the nav of mkdocs.yml names pages that do not exist"


def test_api_reference_reads_sources_statically():
    config = yaml.safe_load(CONFIG.read_text())
    plugin = next(p["mkdocstrings"] for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    python = plugin["handlers"]["python"]

    # The tests run against the installed wheel, and python/ contains no compiled extension in a fresh
    # checkout, so the reference must come from the sources and the _native.pyi stub alone.
    assert python["paths"] == ["python"]
    assert python["options"]["allow_inspection"] is False
    assert (ROOT / "python" / "clickjax" / "_native.pyi").is_file()
