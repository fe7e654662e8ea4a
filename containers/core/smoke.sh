#!/bin/bash
# Smoke test of the opshelf-core image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
# A tiny real run of core's label workflow in dflow's local mode, inside the image.
work=$(mktemp -d)
cd "$work"
cat > config.yaml <<'YAML'
generate: {element: Cu, n_frames: 2, supercell: [1, 1, 1]}
engine: {name: ase, settings: {calculator: emt}}
task: {kind: single_point}
YAML
opshelf run label config.yaml --runs-dir runs --name smoke --no-progress
python3 - <<'PY'
import json
summary = json.load(open("runs/smoke/results/summary.json"))
assert summary["n_failed"] == 0 and summary["n_succeeded"] == summary["n_tasks"] > 0, summary
print("smoke: labelled", summary["n_succeeded"], "tasks")
PY
