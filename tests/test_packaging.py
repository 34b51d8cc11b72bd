"""Packaging stays honest: the wheel holds the `unitcost` package (mapped from sdk/, exporters/ and
cli/) and nothing named after the source folders, and `import unitcost` stays light."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# setuptools reads a PEP 639 license expression (`license = "Apache-2.0"`) from version 77 on.
SETUPTOOLS_FOR_LICENSE_EXPRESSION = 77


def _setuptools_major() -> int:
    """The setuptools a --no-build-isolation build would use (PYTHONPATH included)."""
    done = subprocess.run(
        [sys.executable, "-c", "import setuptools; print(setuptools.__version__)"],
        capture_output=True, text=True, check=True,
    )
    return int(done.stdout.split(".")[0])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    if _setuptools_major() < SETUPTOOLS_FOR_LICENSE_EXPRESSION:
        pytest.skip(
            f"this environment's setuptools cannot build pyproject.toml (needs >= "
            f"{SETUPTOOLS_FOR_LICENSE_EXPRESSION}); see test_build_requirement_can_read_the_license"
        )
    # Build from a copy: a build in the work tree leaves build/ and *.egg-info behind.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("sdk", "exporters", "cli"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.db*"))
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation and no index: the build uses this environment's setuptools, offline.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("unitcost-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_holds_the_unitcost_package_only(wheel):
    names = set(wheel.namelist())
    for expected in (
        "unitcost/__init__.py",
        "unitcost/py.typed",
        "unitcost/exporters/store.py",
        "unitcost/cli/main.py",
        "unitcost/providers/openai.py",
    ):
        assert expected in names
    # Every module of every package pyproject lists, from whichever folder package-dir maps it to.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in setuptools["packages"]:
        for source in (ROOT / setuptools["package-dir"][package]).glob("*.py"):
            assert f"{package.replace('.', '/')}/{source.name}" in names, source
    for folder in ("common", "record", "pipeline", "pricing", "store", "report"):
        assert f"unitcost/{folder}/__init__.py" in names
    # The UI's templates and static files are package data: `unitcost ui` runs from a wheel.
    for folder, pattern in (("templates", "*.html"), ("static", "*.*")):
        for source in (ROOT / "sdk" / "ui" / folder).glob(pattern):
            assert f"unitcost/ui/{folder}/{source.name}" in names, source
    top_level = {name.split("/")[0] for name in names}
    assert {"sdk", "cli", "exporters", "tests"}.isdisjoint(top_level)
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"unitcost"}


def test_wheel_declares_the_unitcost_command(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "unitcost = unitcost.cli.main:cli" in wheel.read(entry_points).decode()


def test_the_unpacked_wheel_imports(wheel, tmp_path):
    # Every module the wheel ships imports from the wheel itself, not from the work tree.
    wheel.extractall(tmp_path / "site")
    code = (
        "import unitcost, unitcost.cli.main, unitcost.exporters.store, unitcost.providers.openai, "
        "unitcost.pipeline.wiring, unitcost.report.html, unitcost.store.doctor; "
        "print(unitcost.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")},
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(tmp_path / "site")


def test_build_requirement_can_read_the_license():
    # `license = "Apache-2.0"` (a PEP 639 expression) is refused by setuptools < 77 ("must be valid
    # exactly by one definition"), so the build requirement must not admit those versions.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    if not isinstance(pyproject["project"].get("license"), str):
        return
    (requirement,) = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.search(r">=\s*(\d+)", requirement)
    assert minimum and int(minimum.group(1)) >= SETUPTOOLS_FOR_LICENSE_EXPRESSION, requirement


def test_import_unitcost_does_not_import_provider_sdks(tmp_path):
    code = (
        "import sys, unitcost\n"
        "assert 'openai' not in sys.modules and 'anthropic' not in sys.modules\n"
        # instrument() waits for the application to import openai; it never imports it itself.
        "unitcost.instrument()\n"
        "assert 'openai' not in sys.modules\n"
        "import openai\n"
        "from unitcost.record.instrument import is_instrumented\n"
        "assert is_instrumented()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
