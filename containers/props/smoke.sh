#!/bin/bash
# Smoke test of the opshelf-props image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
python3 - <<'PY'
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

import phonopy  # noqa: F401  (the phonon property's library)
from opshelf.props.eos import fit_eos

# props' EOS fit (pymatgen) on 7 EMT energies of fcc Cu, +-3 % in lattice constant
volumes, energies = [], []
for scale in np.linspace(0.97, 1.03, 7):
    atoms = bulk("Cu", "fcc", a=3.6 * scale)
    atoms.calc = EMT()
    volumes.append(atoms.get_volume())
    energies.append(atoms.get_potential_energy())
fit = fit_eos(np.array(volumes), np.array(energies))["birch_murnaghan"]
# the same fit on the dev machine gave B0 134.25 GPa, V0 11.5655 A^3/atom; the image must
# reproduce it (0.5 GPa: other BLAS/pymatgen builds)
assert abs(fit["b0_GPa"] - 134.25) < 0.5 and abs(fit["v0_A3_per_atom"] - 11.5655) < 1e-3, fit
print(f"smoke: props EOS of EMT Cu: B0 {fit['b0_GPa']:.2f} GPa, V0 {fit['v0_A3_per_atom']:.4f} A^3")
PY
