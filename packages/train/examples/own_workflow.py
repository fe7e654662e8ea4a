"""Use opshelf-train's OPs in your own dflow workflow, run on this machine (dflow's local mode).

    python own_workflow.py [WORK_DIR]        (default: ./own-train-workflow)

An ensemble of two tiny DeePMD-kit models in plain dflow steps: opshelf-train's `PrepTrain`
writes one input script per model (each with its own seeds), `RunTrain` trains and freezes
each model in its own sliced step (in parallel), and `ScoreEnsemble` scores the ensemble on
held-out frames: each model's error, and the ensemble's spread (the model deviation a
concurrent-learning loop trusts) beside the error it stands for. The data are EMT-labelled rattled fcc Cu cells made here (use your
own deepmd/npy data instead). Needs `dp` (`pip install "./packages/train[deepmd-cpu]"`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dpdata
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from dflow import Step, Workflow, argo_len, argo_range, download_artifact, upload_artifact
from dflow.python import PythonOPTemplate, Slices

from opshelf.core.local import run_locally, use_local_mode
from opshelf.train.ops import PrepTrain, RunTrain, ScoreEnsemble

#: any DeePMD-kit input; opshelf-train fills in the data paths, type_map and seeds
TEMPLATE = {
    "model": {
        "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [40],
                       "neuron": [4, 8], "axis_neuron": 4},
        "fitting_net": {"neuron": [16, 16]},
    },
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 50},
    "loss": {"start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100, "limit_pref_f": 1,
             "start_pref_v": 0, "limit_pref_v": 0},
    "training": {"training_data": {"batch_size": "auto"}, "numb_steps": 400,
                 "disp_freq": 100, "save_freq": 400},
}
DP_CONFIG = {"dp": {"threads": 1}}   # RunTrain's `config`: how dp runs (command, threads, ...)


def make_data(folder: Path, n_frames: int, seed: int) -> Path:
    """EMT-labelled rattled 4-atom Cu cells as one deepmd/npy system."""
    rng = np.random.default_rng(seed)
    systems = None
    for _ in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.61 * rng.uniform(0.98, 1.02), cubic=True)
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        frame = dpdata.LabeledSystem(atoms, fmt="ase/structure")
        systems = frame if systems is None else systems + frame
    systems.to("deepmd/npy", str(folder))
    return folder


def build(train_data: Path, test_data: Path) -> Workflow:
    """prep -> train (one sliced step per model) -> score the ensemble."""
    wf = Workflow(name="own-train")
    prep = Step(
        name="prep-train",
        template=PythonOPTemplate(PrepTrain),
        parameters={"template": TEMPLATE, "numb_models": 2, "type_map": ["Cu"], "seed": 1},
        key="prep-train",
    )
    data = upload_artifact([train_data])
    train = Step(
        name="run-train",
        template=PythonOPTemplate(
            RunTrain,
            slices=Slices("{{item}}", input_parameter=["task_name"],
                          input_artifact=["task_path"],
                          output_artifact=["model", "lcurve", "log", "script", "metrics"]),
        ),
        parameters={"config": DP_CONFIG, "task_name": prep.outputs.parameters["task_names"]},
        artifacts={"task_path": prep.outputs.artifacts["task_paths"], "init_data": data},
        with_param=argo_range(argo_len(prep.outputs.parameters["task_names"])),
        key="run-train-{{item}}",
    )
    score = Step(
        name="score-ensemble",
        template=PythonOPTemplate(ScoreEnsemble),
        artifacts={"models": train.outputs.artifacts["model"],   # the list of both models
                   "data": upload_artifact([test_data])},
        key="score-ensemble",
    )
    wf.add(prep)
    wf.add(train)
    wf.add(score)
    return wf


def main(work_dir: Path) -> dict:
    work_dir = work_dir.resolve()
    use_local_mode(work_dir)        # dflow's debug mode, before any Step is built
    train_data = make_data(work_dir / "inputs" / "train", 30, seed=0)
    test_data = make_data(work_dir / "inputs" / "test", 10, seed=1)   # never trained on
    wf = build(train_data, test_data)
    phase = run_locally(wf, work_dir)  # blocks until done: "Succeeded" or "Failed"
    if phase != "Succeeded":
        raise SystemExit(f"workflow {phase}: see {work_dir}")
    step = wf.query_step(key="score-ensemble")[0]
    score_file = download_artifact(step.outputs.artifacts["score"], path=work_dir / "results")[0]
    score = json.loads(Path(score_file).read_text())
    for index, errors in enumerate(score["models"]):
        print(f"model {index}: held-out force RMSE {errors['force_rmse_eV_per_A']:.3f} eV/A, "
              f"energy RMSE {1000 * errors['energy_rmse_eV_per_atom']:.1f} meV/atom")
    print(f"ensemble on {score['n_frames']} held-out frames: median max force deviation "
          f"{score['devi_f_median_eV_per_A']:.3f} eV/A, median max force error "
          f"{score['max_force_error_median_eV_per_A']:.3f} eV/A")
    return score

if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "own-train-workflow"))
