"""core's one crystal spec and bulk builder (used by label, cl and lameval)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from opshelf.core.crystal import CrystalSpec, bulk
from opshelf.core.errors import ConfigError


def coordination(atoms, cutoff: float) -> np.ndarray:
    first = neighbor_list("i", atoms, cutoff)
    return np.bincount(first, minlength=len(atoms))


@pytest.mark.parametrize(("element", "crystal", "n_atoms", "neighbours"), [
    ("Cu", "fcc", 4, 12), ("Fe", "bcc", 2, 8), ("Si", "diamond", 8, 4), ("Mg", "hcp", 4, 12)])
def test_conventional_cells_have_the_lattice_s_coordination(
        element: str, crystal: str, n_atoms: int, neighbours: int) -> None:
    """Textbook coordination numbers: fcc 12, bcc 8, diamond 4, hcp 12 (ASE's Mg: c/a 1.624,
    so its 6 in-plane and 6 out-of-plane neighbours lie within 1% of each other; the 1.1 a
    cutoff (fcc: 1.1 a/sqrt2) holds the first shell and nothing else)."""
    cell = bulk(element, crystal)
    assert len(cell) == n_atoms
    angles = cell.cell.angles()
    np.testing.assert_allclose(angles, 90.0, atol=1e-9)  # cubic, or orthorhombic for hcp
    first_shell = min(cell.get_distance(0, i, mic=True) for i in range(1, len(cell))) \
        if len(cell) > 1 else cell.cell.lengths().min()
    supercell = cell * (3, 3, 3)
    assert set(coordination(supercell, 1.1 * first_shell)) == {neighbours}


def test_spec_repeats_the_cell_and_keeps_the_lattice_constant() -> None:
    atoms = CrystalSpec(element="Mg", crystal="hcp", lattice_constant_A=3.2,
                        supercell=(2, 1, 3)).atoms()
    assert len(atoms) == 4 * 6
    # orthorhombic hcp: a, sqrt(3) a, c
    a, b, _ = atoms.cell.lengths() / np.array([2, 1, 3])
    assert a == pytest.approx(3.2) and b == pytest.approx(3.2 * np.sqrt(3))
    primitive = CrystalSpec(element="Mg", crystal="hcp", cubic=False, supercell=(1, 1, 1))
    assert len(primitive.atoms()) == 2


def test_an_element_ase_cannot_build_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^generate: cannot build fcc Xx"):
        CrystalSpec(element="Xx").atoms(where="generate")
