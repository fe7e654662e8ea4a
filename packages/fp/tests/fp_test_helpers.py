"""Helpers of opshelf-fp's tests (a uniquely named module: every package has a tests/)."""

from __future__ import annotations

import os
from pathlib import Path

import dpdata
import pytest
from ase.build import bulk

from opshelf.core.testing.engines import REQUIRE_ENV, engines_required

#: packages/fp/tests -> repository root; shared/ sits beside the checkout (../shared).
REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_ENV = "OPSHELF_SHARED_DIR"


def shared_dir() -> Path:
    return Path(os.environ.get(SHARED_ENV) or REPO_ROOT.parent / "shared")


def require_data(path: Path, package: str) -> Path:
    """Data that a Debian package ships (basis sets, pseudopotentials): like an engine,
    missing means skip, or fail with OPSHELF_REQUIRE_ENGINES=1."""
    if path.exists():
        return path
    reason = f"{path} not found (Debian package {package})"
    if engines_required():
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 makes this a failure", pytrace=False)
    pytest.skip(reason)


def si2_frame(displacement: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dpdata.System:
    """2-atom diamond Si primitive cell, a = 5.43 A (experimental, ase reference_states),
    optionally with the second atom displaced (Angstrom)."""
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += displacement
    return dpdata.System(atoms, fmt="ase/structure")
