#!/bin/bash
# Smoke test of the opshelf-lameval image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
opshelf list | grep -w lameval > /dev/null  # not -q: an early exit breaks the pipe (pipefail)
opshelf schema lameval > /dev/null
echo "smoke: workflow lameval is installed and has a schema"
# The universal potentials run on the image's CPU torch (weights ship inside the wheels).
python3 - <<'PY'
import numpy as np
import torch
from ase.build import bulk
from chgnet.model.dynamics import CHGNetCalculator

assert not torch.cuda.is_available() and "+cpu" in torch.__version__, torch.__version__
atoms = bulk("Cu", "fcc", a=3.616)  # CHGNet's own a0 for fcc Cu (FIELD-NOTES)
atoms.calc = CHGNetCalculator(use_device="cpu")
energy, forces = atoms.get_potential_energy(), atoms.get_forces()
# a perfect fcc lattice: no force by symmetry (float32 model: 1e-4 eV/A)
assert np.isfinite(energy) and np.abs(forces).max() < 1e-4, (energy, forces)
print(f"smoke: torch {torch.__version__}, CHGNet Cu {energy:.4f} eV/atom")
PY
