"""`cubic_lattice_constant`: a cell cubic within a tolerance counts as cubic."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from opshelf.props.base import cubic_lattice_constant


def test_exactly_cubic_cell() -> None:
    assert cubic_lattice_constant(bulk("Cu", "fcc", a=3.6, cubic=True)) == pytest.approx(3.6)


def test_cell_cubic_to_1e_5_counts_as_cubic() -> None:
    # a CHGNet-relaxed Cu cell (opshelf-alloy's cu-compare) was cubic only to ~1e-5
    atoms = bulk("Cu", "fcc", a=3.616, cubic=True)
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + np.diag([1e-5, -1e-5, 0.0])), scale_atoms=True)
    a = cubic_lattice_constant(atoms)
    assert a is not None and a == pytest.approx(3.616, abs=1e-4)


@pytest.mark.parametrize("cell", [
    bulk("Cu", "fcc", a=3.6),                              # primitive fcc: 60 degree angles
    bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 2),      # tetragonal supercell
    bulk("Ti", "hcp", a=2.95, c=4.68),
])
def test_non_cubic_cells(cell: Atoms) -> None:
    assert cubic_lattice_constant(cell) is None
