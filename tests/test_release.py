"""Release checks: one version number everywhere, the installed wheel, the package metadata and the release workflow.

The tests marked `release_only` pass only in the environment of `scripts/test.sh`, which installs the
wheel it has just built and removes the Rust toolchain from PATH. That script sets
CLICKJAX_RELEASE_CHECKS=1; elsewhere those tests skip.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

import clickjax

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PATH = ROOT / ".github" / "workflows" / "wheels.yml"

# The newest glibc a published Linux wheel may need; the manylinux_2_28 tag promises it.
MAX_GLIBC = (2, 28)
# Legacy manylinux tags and the glibc version that each one is equivalent to (PEP 600).
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}

# Platforms of the release wheels: (runner operating system, Rust target).
RELEASE_TARGETS = {
    ("linux", "x86_64-unknown-linux-gnu"),
    ("linux", "aarch64-unknown-linux-gnu"),
    ("macos", "x86_64-apple-darwin"),
    ("macos", "aarch64-apple-darwin"),
    ("windows", "x86_64-pc-windows-msvc"),
}

# Wheels that the workflow builds but cannot test, because a dependency has no wheel there:
# jaxlib 0.10 has none for Intel Macs.
UNTESTED_WHEELS = {"macos-x86_64"}

release_only = pytest.mark.skipif(
    os.environ.get("CLICKJAX_RELEASE_CHECKS") != "1",
    reason="runs under scripts/test.sh, which sets CLICKJAX_RELEASE_CHECKS=1",
)


def _cargo_version() -> str:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return cargo["workspace"]["package"]["version"]


def _clickjax_command() -> str:
    command = shutil.which("clickjax", path=sysconfig.get_path("scripts"))
    assert command is not None, f"no clickjax command in {sysconfig.get_path('scripts')}"
    return command


def _wheel_tags() -> list[str]:
    wheel_metadata = metadata.distribution("clickjax").read_text("WHEEL")
    assert wheel_metadata is not None, "the installed clickjax has no WHEEL file"
    return [line.split(":", 1)[1].strip() for line in wheel_metadata.splitlines() if line.startswith("Tag:")]


def _glibc_of_platform_tag(platform_tag: str) -> tuple[int, int] | None:
    """Return the glibc version that a manylinux platform tag requires, or None for another tag."""
    for legacy, glibc in LEGACY_MANYLINUX.items():
        if platform_tag.startswith(legacy + "_"):
            return glibc
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", platform_tag)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


# ---------------------------------------------------------------- version


def test_version_agrees_with_cargo():
    cargo_version = Version(_cargo_version())

    assert Version(clickjax.__version__) == cargo_version
    assert Version(metadata.version("clickjax")) == cargo_version


def test_cli_version_agrees_with_cargo():
    result = subprocess.run([_clickjax_command(), "--version"], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"clickjax {Version(_cargo_version())}"


def test_pyproject_version_is_dynamic():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    assert "version" not in project, "pyproject.toml must not set the version, because maturin takes it from Cargo.toml"
    assert "version" in project["dynamic"]


# ---------------------------------------------------------------- metadata


def test_metadata_declares_release_fields():
    info = metadata.metadata("clickjax")

    assert info["Name"] == "clickjax"
    assert info["License-Expression"] == "Apache-2.0"
    assert info["Requires-Python"] == ">=3.11"
    assert "LICENSE" in (info.get_all("License-File") or [])
    assert {"test", "docs", "plot"} <= set(info.get_all("Provides-Extra") or [])
    urls = info.get_all("Project-URL") or []
    assert any(url.endswith("https://github.com/clickjax/clickjax") for url in urls), urls


def test_metadata_has_no_jax_gpu_dependency():
    requirements = metadata.requires("clickjax") or []

    assert not [r for r in requirements if "cuda" in r.lower()], requirements


def test_license_file_in_wheel():
    files = metadata.distribution("clickjax").files or []

    assert any(file.name == "LICENSE" for file in files), "the wheel does not ship LICENSE"


# ---------------------------------------------------------------- the installed wheel


@release_only
def test_package_imported_from_installation():
    installed = {Path(sysconfig.get_path("purelib")).resolve(), Path(sysconfig.get_path("platlib")).resolve()}
    package = Path(clickjax.__file__).resolve().parent

    assert package.parent in installed, f"clickjax was imported from {package}, not from the installed wheel"


@release_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="manylinux tags exist only on Linux")
def test_wheel_tag_at_most_manylinux_2_28():
    tags = _wheel_tags()

    assert tags, "the WHEEL file lists no tag"
    for tag in tags:
        interpreter, abi, platform_tag = tag.split("-")
        assert (interpreter, abi) == ("cp311", "abi3"), tag
        glibc = _glibc_of_platform_tag(platform_tag)
        assert glibc is not None, f"{tag} is not a manylinux tag"
        assert glibc <= MAX_GLIBC, f"{tag} needs glibc {glibc}, newer than {MAX_GLIBC}"


@release_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc symbol versions exist only on Linux")
def test_extension_needs_at_most_glibc_2_28():
    extensions = list(Path(clickjax.__file__).parent.glob("_native*.so"))
    assert len(extensions) == 1, extensions

    # Symbol versions such as GLIBC_2.28 are plain strings in the dynamic string table.
    versions = {
        (int(major), int(minor))
        for major, minor in re.findall(rb"GLIBC_(\d+)\.(\d+)", extensions[0].read_bytes())
    }

    assert versions, "the extension names no glibc symbol version"
    assert max(versions) <= MAX_GLIBC


@release_only
def test_demo_runs_without_rust_toolchain():
    assert shutil.which("cargo") is None, f"cargo is on PATH: {shutil.which('cargo')}"
    assert shutil.which("rustc") is None, f"rustc is on PATH: {shutil.which('rustc')}"

    result = subprocess.run(
        [_clickjax_command(), "demo", "--epochs", "1"], capture_output=True, text=True, timeout=600
    )

    assert result.returncode == 0, result.stderr
    assert "perplexity" in result.stdout


@release_only
def test_docs_tools_installed():
    assert shutil.which("mkdocs", path=sysconfig.get_path("scripts")) is not None


# ---------------------------------------------------------------- release workflow


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW_PATH.read_text())


def _triggers(workflow: dict) -> dict:
    # YAML 1.1, which PyYAML follows, reads the key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def _maturin_steps(job: dict) -> list[dict]:
    return [step for step in job["steps"] if step.get("uses", "").startswith("PyO3/maturin-action@")]


def _platforms(job: dict) -> list[dict]:
    return job["strategy"]["matrix"]["platform"]


def _runner_os(runner: str) -> str:
    return runner.split("-")[0].replace("ubuntu", "linux")


def test_workflow_builds_every_release_target(workflow):
    job = workflow["jobs"]["wheels"]
    built = {(_runner_os(p["runner"]), p["target"]) for p in _platforms(job)}

    assert built == RELEASE_TARGETS
    assert job["runs-on"] == "${{ matrix.platform.runner }}"
    build = _maturin_steps(job)
    assert len(build) == 1
    assert build[0]["with"]["target"] == "${{ matrix.platform.target }}"


def test_workflow_builds_with_dist_profile(workflow):
    build = _maturin_steps(workflow["jobs"]["wheels"])[0]["with"]

    assert build.get("command", "build") == "build"
    assert "--profile dist" in build["args"]
    assert str(build["manylinux"]) == "2_28"


def test_workflow_builds_sdist(workflow):
    sdist = _maturin_steps(workflow["jobs"]["sdist"])

    assert [step["with"]["command"] for step in sdist] == ["sdist"]


def test_workflow_tests_each_built_wheel(workflow):
    job = workflow["jobs"]["test"]
    tested = {p["name"] for p in _platforms(job)}
    built = {p["name"] for p in _platforms(workflow["jobs"]["wheels"])}
    runners = {p["name"]: p["runner"] for p in _platforms(job)}
    script = "\n".join(step.get("run", "") for step in job["steps"])

    assert tested == built - UNTESTED_WHEELS
    # Each wheel runs on a machine of its own architecture.
    assert runners["linux-aarch64"].endswith("-arm")
    assert not runners["macos-arm64"].endswith("-intel")
    assert "wheels" in job["needs"]
    assert "3.11" in job["strategy"]["matrix"]["python"]
    assert not _maturin_steps(job), "the test job must install the built wheel, not build another"
    assert "dist/clickjax-*.whl" in script
    assert "[test,docs]" in script
    assert "-m pytest" in script


def test_workflow_publishes_only_on_tags(workflow):
    triggers = _triggers(workflow)
    publish = workflow["jobs"]["publish"]
    uses = [step.get("uses", "") for step in publish["steps"]]

    assert triggers["push"]["tags"] == ["v*"]
    assert "github.event_name == 'push'" in publish["if"]
    assert "startsWith(github.ref, 'refs/tags/v')" in publish["if"]
    assert set(publish["needs"]) == {"wheels", "sdist", "test"}
    assert any(action.startswith("pypa/gh-action-pypi-publish@") for action in uses)


def test_workflow_publishes_with_trusted_publishing(workflow):
    publish = workflow["jobs"]["publish"]
    publish_step = next(s for s in publish["steps"] if s.get("uses", "").startswith("pypa/gh-action-pypi-publish@"))

    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    assert "password" not in publish_step.get("with", {}), "trusted publishing needs no API token"
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        if name != "publish":
            assert "id-token" not in job.get("permissions", {}), name
