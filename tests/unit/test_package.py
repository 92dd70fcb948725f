"""What an operator installing from a wheel gets: the example config, the units, the dashboard,
the alerts and the guide (`stocksync init DIR` writes them out), a licence, sound floors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from importlib import resources
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from daemon.cli import main
from daemon.share import FILES

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# Where each shipped file lives in a checkout: `init` writes the same layout, so the guide's
# `/path/to/stocksync/deploy/systemd/stocksync.service` works for a checkout and for DIR alike.
IN_CHECKOUT = {
    "config/stocksync.example.toml",
    "config/variant-map.example.csv",
    "deploy/systemd/stocksync.service",
    "deploy/systemd/stocksync@.service",
    "deploy/prometheus/stocksync-alerts.yml",
    "deploy/prometheus/prometheus.example.yml",
    "deploy/grafana/stocksync-dashboard.json",
    "docs/operations.md",
    "LICENSE",
}
BUILD_TIMEOUT = 300
# Not worth copying to build the wheel from a clean tree.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", ".ci-tools", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    ".hypothesis", "bench", "tests", "test-artifacts",
)  # fmt: skip


def test_every_file_an_operator_needs_is_shipped_in_the_package() -> None:
    assert set(FILES.values()) == IN_CHECKOUT
    shipped = resources.files("daemon.share")
    for name, destination in FILES.items():
        assert shipped.joinpath(name).read_bytes() == (REPO / destination).read_bytes(), name


def test_init_writes_the_files_in_the_layout_the_operations_guide_names(tmp_path: Path) -> None:
    target = tmp_path / "stocksync-files"

    assert main(["init", str(target)]) == 0

    written = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert written == IN_CHECKOUT
    for relative in IN_CHECKOUT:
        assert (target / relative).read_bytes() == (REPO / relative).read_bytes(), relative


def test_init_leaves_existing_files_alone_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = tmp_path / "config" / "stocksync.example.toml"
    edited.parent.mkdir()
    edited.write_text("# mine\n")

    refused = main(["init", str(tmp_path)])
    err = capsys.readouterr().err

    assert refused == 1
    assert str(edited) in err
    assert "--force" in err
    assert edited.read_text() == "# mine\n"
    assert not (tmp_path / "deploy").exists()  # nothing half-written
    assert main(["init", "--force", str(tmp_path)]) == 0
    assert edited.read_bytes() == (REPO / "config" / "stocksync.example.toml").read_bytes()


def test_the_licence_is_mit_as_an_spdx_expression_with_its_file() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    # SPDX license expressions need setuptools 77 (PEP 639).
    [setuptools] = [
        Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")
    ]
    assert setuptools.specifier.contains("77")
    assert not setuptools.specifier.contains("76.1")


def test_aiohttp_floor_excludes_releases_with_published_advisories() -> None:
    # 3.14.3 fixed the latest advisories known when the floor was set (GHSA-cq5v-8q36-5273,
    # an out-of-bounds read in the C response parser; 3.14.2 GHSA-mfx4-hv73-q22v, request
    # smuggling); older releases also break the simulators with current yarl.
    [aiohttp] = [
        Requirement(r) for r in PYPROJECT["project"]["dependencies"] if r.startswith("aiohttp")
    ]
    assert not aiohttp.specifier.contains("3.14.2")
    floor = min(Version(s.version) for s in aiohttp.specifier if s.operator == ">=")
    assert floor >= Version("3.14.3")


def test_the_built_wheel_carries_the_shipped_files_and_the_licence(tmp_path: Path) -> None:
    # Built from a copy, so the build leaves nothing in the working tree; without build
    # isolation, so it needs no network (the dev extra brings setuptools >= 77).
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCES)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--quiet", "--wheel-dir", str(wheels), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = wheels.glob("stocksync-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name, destination in FILES.items():
            member = f"daemon/share/{name}"
            assert member in names, member
            assert archive.read(member) == (REPO / destination).read_bytes(), member
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = Parser().parsestr(archive.read(metadata).decode())
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    assert headers["License-Expression"] == "MIT"
    assert "Requires-Dist: aiohttp>=3.14" in str(headers)
