"""gamma_surface (the 2-D GSFE surface) on core's ASE engine with EMT Cu, against the same
surface built by hand on the primitive (111) cell and computed directly with ASE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT

from opshelf.props import compute_property

EV_PER_A2_TO_J_PER_M2 = 16.021766208


def explicit_surface(a: float, nx: int, ny: int) -> np.ndarray:
    """Rigid fcc {111} gamma surface by hand: 12 close-packed layers ABC.. of the 1x1
    primitive (111) cell (a1, a2 at 60 degrees); the upper 6 shifted by
    i/nx (a1 + a2) (the <112> repeat, three partials a/sqrt(6)) + j/ny (a2 - a1) (the <110>
    repeat normal to it), c tilted by the same shift."""
    side, spacing, n = a / np.sqrt(2), a / np.sqrt(3), 12
    a1, a2 = np.array([side, 0, 0]), np.array([side / 2, side * np.sqrt(3) / 2, 0])
    hollow = {"A": 0.0, "B": 1 / 3, "C": 2 / 3}
    energies = np.zeros((nx, ny))
    for i in range(nx):
        for j in range(ny):
            cell = np.array([a1, a2, [0, 0, spacing * n]])
            atoms = Atoms("Cu" * n, cell=cell, pbc=True, scaled_positions=[
                (hollow[s], hollow[s], k / n) for k, s in enumerate("ABC" * (n // 3))])
            shift = i / nx * (a1 + a2) + j / ny * (a2 - a1)
            atoms.positions[atoms.positions[:, 2] > spacing * (n / 2 - 0.5)] += shift
            cell[2] += shift
            atoms.set_cell(cell, scale_atoms=False)
            atoms.calc = EMT()
            energies[i, j] = atoms.get_potential_energy()
    area = side * side * np.sqrt(3) / 2
    return (energies - energies[0, 0]) / area * EV_PER_A2_TO_J_PER_M2


def test_rigid_gamma_surface_matches_the_hand_built_one(tmp_path: Path, emt: dict[str, Any],
                                                        cu_emt: Atoms) -> None:
    params = {"type": "gamma_surface", "relax": False, "n_points_x": 6, "n_points_y": 4}
    result = compute_property(params, cu_emt, emt, tmp_path)
    gamma = np.array(result["gamma_surface_J_per_m2"])
    assert gamma.shape == (6, 4) and gamma[0, 0] == 0.0
    expected = explicit_surface(cu_emt.cell.lengths()[0], 6, 4)
    # same rigid structures in another orientation (the (1-10) mirror makes the sign of the
    # <110> shift irrelevant): energies equal to EMT's round-off; 1e-4 J/m^2
    assert np.max(np.abs(gamma - expected)) < 1e-4
    # shift 2/6 of the <112> repeat = a/sqrt(6): the intrinsic stacking fault, a minimum
    assert gamma[2, 0] < gamma[1, 0] and gamma[2, 0] < gamma[3, 0]
    assert result["max_energy_J_per_m2"] == pytest.approx(expected.max(), abs=1e-4)
    # the <112> line through the origin is stacking_fault's curve
    line = compute_property({"type": "stacking_fault", "relax": False, "n_points": 6}, cu_emt,
                            emt, tmp_path / "line")
    assert np.allclose(gamma[:, 0], line["gsfe_J_per_m2"], atol=1e-6)
    assert result["stable_fault_energy_J_per_m2"] == pytest.approx(
        line["stable_fault_energy_J_per_m2"], abs=1e-9)


def test_gamma_surface_relax_names_its_own_key(tmp_path: Path, cu_emt: Atoms) -> None:
    """relax: true on an engine without per-axis relaxation is refused naming
    gamma_surface.relax (the check is stacking_fault's, shared through FaultParams)."""
    from opshelf.core.engines.ase_engine import AseEngine
    from opshelf.core.errors import ConfigError

    class RigidOnly(AseEngine):  # an engine without RelaxOptions.move_axes
        relax_features = frozenset()

    with pytest.raises(ConfigError, match=r"^gamma_surface\.relax: true .*move_axes"):
        compute_property({"type": "gamma_surface", "relax": True}, cu_emt,
                         RigidOnly({"calculator": "emt"}), tmp_path)
    assert not (tmp_path / "tasks").exists()  # refused before any work
