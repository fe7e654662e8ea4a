#!/bin/bash
# Smoke test of the opshelf-train image: run inside it by `nox -s containers`.
set -euo pipefail
opshelf --version
opshelf list
dp --version
# A tiny real DeePMD-kit training (TensorFlow CPU) on EMT-labelled Cu frames, then freeze.
work=$(mktemp -d)
cd "$work"
python3 - <<'PY'
import json

import dpdata
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

systems = None
rng = np.random.default_rng(7)
for _ in range(20):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
    atoms.calc = EMT()
    frame = dpdata.LabeledSystem(atoms, fmt="ase/structure")
    systems = frame if systems is None else systems + frame
systems.to("deepmd/npy", "data")
json.dump({
    "model": {"type_map": ["Cu"],
              "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [40],
                             "neuron": [4, 8], "axis_neuron": 4},
              "fitting_net": {"neuron": [16, 16]}},
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 20},
    "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1},
    "training": {"training_data": {"systems": ["data"], "batch_size": "auto"},
                 "numb_steps": 100, "disp_freq": 20, "save_freq": 100},
}, open("input.json", "w"))
PY
dp --tf train input.json > train.log 2>&1 || { tail -30 train.log; exit 1; }
dp --tf freeze -o graph.pb > freeze.log 2>&1 || { tail -30 freeze.log; exit 1; }
python3 - <<'PY'
from pathlib import Path

from opshelf.train.train import lcurve_metrics

metrics = lcurve_metrics(Path("lcurve.out"))
assert Path("graph.pb").stat().st_size > 0, "no frozen model"
# it learnt: the force RMSE fell (1.02 -> 0.38 eV/A on the dev machine)
assert (metrics["training"]["rmse_f_eV_per_A"]
        < metrics["first_training"]["rmse_f_eV_per_A"]), metrics
print("smoke: trained 100 steps and froze graph.pb;", metrics)
PY
