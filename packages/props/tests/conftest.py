"""Fixtures of opshelf-props' tests: core's ASE engine with EMT, and EMT Cu."""

from __future__ import annotations

from typing import Any

import pytest
from ase import Atoms
from ase.build import bulk

EMT = {"name": "ase", "settings": {"calculator": "emt"}}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def emt() -> dict[str, Any]:
    return dict(EMT)


@pytest.fixture(scope="session")
def cu_emt() -> Atoms:
    """Conventional fcc Cu at EMT's equilibrium: relaxed directly with ASE (a, then the
    cell of a cubic crystal stays cubic)."""
    from ase.calculators.emt import EMT as Calculator
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = Calculator()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-5)
    atoms.calc = None
    return atoms
