"""What `make run` and `make test` install: the locked versions CI tested, and no older ones."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKED: dict[str, Version] = {}  # the oldest locked version (numpy is locked per Python)
for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]:
    if "version" in package:
        version = Version(package["version"])
        LOCKED[package["name"]] = min(version, LOCKED.get(package["name"], version))


def _direct() -> list[Requirement]:
    extras = PROJECT.get("optional-dependencies", {}).values()
    return [Requirement(r) for r in [*PROJECT["dependencies"], *(r for e in extras for r in e)]]


def _floor(requirement: Requirement) -> Version:
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert floors, f"{requirement}: no >= floor in pyproject.toml"
    return max(floors)


@pytest.mark.parametrize("requirement", _direct(), ids=str)
def test_each_floor_is_the_locked_version_that_ci_tests(requirement: Requirement) -> None:
    name = requirement.name.lower()
    assert name in LOCKED, f"{name} is in pyproject.toml but not in uv.lock"
    assert _floor(requirement) == LOCKED[name], (
        f"{name}: pyproject.toml allows {_floor(requirement)}, CI tests {LOCKED[name]}"
    )


def test_keras_floor_has_the_safe_mode_fixes() -> None:
    keras = next(r for r in _direct() if r.name == "keras")
    assert _floor(keras) >= Version("3.13.2")


def test_the_lock_agrees_with_pyproject() -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is missing: `make test` installs it into .venv")
    check = subprocess.run(  # noqa: S603 - a fixed command on the checkout
        [uv, "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
