#!/bin/bash
# Smoke test of the opshelf-fp image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
command -v cp2k pw.x
# A tiny real run of core's label workflow in dflow's local mode, inside the image.
work=$(mktemp -d)
cd "$work"
cat > config.yaml <<'YAML'
generate: {element: Si, crystal: diamond, cubic: false, lattice_constant_A: 5.43, supercell: [1, 1, 1], n_frames: 1, rattle_A: 0.02}
engine: {name: cp2k, settings: {basis: SZV, cutoff_Ry: 150.0, rel_cutoff_Ry: 30.0, kpoints: [2, 2, 2]}, profile: {threads: 1}}
task: {kind: single_point}
YAML
opshelf run label config.yaml --runs-dir runs --name smoke --no-progress
python3 - <<'PY'
import json
summary = json.load(open("runs/smoke/results/summary.json"))
assert summary["n_failed"] == 0 and summary["n_succeeded"] == summary["n_tasks"] > 0, summary
print("smoke: labelled", summary["n_succeeded"], "tasks")
PY
