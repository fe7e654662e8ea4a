#!/bin/bash
# Smoke test of the opshelf-alloy image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
opshelf list | grep -w alloy > /dev/null  # not -q: an early exit breaks the pipe (pipefail)
opshelf schema alloy > /dev/null
# A tiny real alloy run: relax + EOS of fcc Cu with LAMMPS (EAM), local mode, in the image.
work=$(mktemp -d)
cd "$work"
cat > config.yaml <<'YAML'
structures:
  - {name: cu, generate: {element: Cu, prototype: fcc, lattice_constant_A: 3.6}}
interactions:
  - {name: eam, lammps: {potential: {style: eam, files: {Cu: Cu_u3.eam}}}, profile: {threads: 1}}
relax: {relax_cell: true}
properties:
  - {type: eos}
YAML
opshelf run alloy config.yaml --runs-dir runs --name smoke --no-progress
python3 - <<'PY'
import json

eos = json.load(open("runs/smoke/results/results.json"))["results"]["cu"]["eam"]["eos"]
# FIELD-NOTES (Cu_u3.eam, PyPI lmp): a0 3.6150 A, B 138.5 GPa (Birch-Murnaghan)
assert abs(eos["lattice_constant_A"] - 3.6150) < 1e-3, eos["lattice_constant_A"]
assert abs(eos["bulk_modulus_GPa"] - 138.5) < 1.0, eos["bulk_modulus_GPa"]
print(f"smoke: alloy EOS of EAM Cu: a0 {eos['lattice_constant_A']:.4f} A, "
      f"B {eos['bulk_modulus_GPa']:.1f} GPa")
PY
