"""cl's generated confs come from core's CrystalSpec: hcp included (its conventional cell is
orthorhombic, 4 atoms; before, cl built the 2-atom hexagonal cell and ignored `cubic`)."""

from __future__ import annotations

import numpy as np

from opshelf.cl.config import LatticeConfs
from opshelf.cl.inputs import lattice_confs


def test_hcp_confs_are_orthorhombic_supercells_with_their_substitutions() -> None:
    spec = LatticeConfs.model_validate({
        "element": "Mg", "crystal": "hcp", "supercell": [2, 2, 2], "n_confs": 2, "seed": 1,
        "substitutions": [{"replace": "Mg", "by": {"Al": 0.25}}], "rattle_A": 0.01})
    confs = lattice_confs(spec)
    assert len(confs) == 2
    for atoms in confs:
        assert len(atoms) == 4 * 8
        np.testing.assert_allclose(atoms.cell.angles(), 90.0, atol=1e-9)
        assert atoms.get_chemical_symbols().count("Al") == 8  # 0.25 of 32 sites
    assert not np.allclose(confs[0].positions, confs[1].positions)  # seeded, not repeated
