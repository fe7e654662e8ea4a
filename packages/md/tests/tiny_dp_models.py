"""Train tiny DeePMD-kit models for opshelf-md's tests (no binary blobs in the repo).

Data: 40 rattled, strained 2x2x2 fcc Cu cells (32 atoms) labelled with ASE's EMT.
Model: se_e2_a, rcut 4.5 A, a few hundred steps with `dp --tf train`, then `dp --tf freeze`
(or with `--pt`: DeePMD-kit's PyTorch backend, a frozen `.pth`; there also a tiny DPA-3).
Two seeds give two different models: their disagreement is the model deviation the tests see.
About 10 s per model on one core (FIELD-NOTES: ~6 s training + ~3 s freezing).

Usage: python tiny_dp_models.py OUT_DIR   (writes OUT_DIR/model-<seed>.pb)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import dpdata
import numpy as np

from opshelf.core.process import run_command

TYPE_MAP = ["Cu"]
N_FRAMES = 40
DP_ENV = {
    "OMP_NUM_THREADS": "1",
    "TF_INTRA_OP_PARALLELISM_THREADS": "1",
    "TF_INTER_OP_PARALLELISM_THREADS": "1",
    "DP_INTRA_OP_PARALLELISM_THREADS": "1",
    "DP_INTER_OP_PARALLELISM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "NUM_WORKERS": "0",  # dp --pt: no data-loader processes (they died under load)
}


def dp_command() -> str:
    """`dp` next to this interpreter (a venv not on PATH), else from PATH."""
    beside = Path(sys.executable).parent / "dp"
    return str(beside) if beside.is_file() else "dp"


def emt_cu_frames(out_dir: Path, n_frames: int = N_FRAMES, seed: int = 0) -> Path:
    """EMT-labelled rattled Cu frames as a deepmd/npy folder."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    system: dpdata.LabeledSystem | None = None
    for _ in range(n_frames):
        atoms = base.copy()
        strain = rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        frame = dpdata.LabeledSystem(atoms, fmt="ase/structure")
        system = frame if system is None else system + frame
    assert system is not None
    data_dir = out_dir / "data"
    system.to("deepmd/npy", str(data_dir), set_size=n_frames)
    return data_dir


#: descriptor name -> its settings (tiny: seconds per hundred steps on one core)
DESCRIPTORS: dict[str, dict] = {
    "se_e2_a": {"type": "se_e2_a", "sel": [40], "rcut_smth": 3.5, "rcut": 4.5,
                "neuron": [4, 8], "axis_neuron": 4},
    # DPA-3 (PyTorch backend only): two repflow layers, 8-wide node and edge features
    "dpa3": {"type": "dpa3",
             "repflow": {"n_dim": 8, "e_dim": 8, "a_dim": 4, "nlayers": 2, "e_rcut": 4.5,
                         "e_rcut_smth": 3.5, "e_sel": 40, "a_rcut": 3.0, "a_rcut_smth": 2.5,
                         "a_sel": 20, "axis_neuron": 4, "update_angle": True,
                         "update_style": "res_residual", "update_residual": 0.1,
                         "update_residual_init": "const"}},
}


def training_input(data_dir: Path, seed: int, n_steps: int, descriptor: str = "se_e2_a"
                   ) -> dict:
    return {
        "model": {
            "type_map": TYPE_MAP,
            "descriptor": {**DESCRIPTORS[descriptor], "seed": seed},
            "fitting_net": {"neuron": [16, 16], "seed": seed},
        },
        "learning_rate": {"type": "exp", "start_lr": 0.005, "decay_steps": 100,
                          "stop_lr": 1e-4},
        "loss": {"start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100,
                 "limit_pref_f": 1, "start_pref_v": 0.02, "limit_pref_v": 1},
        "training": {"training_data": {"systems": [str(data_dir)], "batch_size": 2},
                     "numb_steps": n_steps, "seed": seed, "disp_freq": 100,
                     "save_freq": n_steps},
    }


#: backend -> (dp flag, frozen model suffix)
BACKENDS = {"tensorflow": ("--tf", ".pb"), "pytorch": ("--pt", ".pth")}


def train_tiny_models(out_dir: Path, seeds: Sequence[int] = (1, 2), n_steps: int = 300,
                      backend: str = "tensorflow", descriptor: str = "se_e2_a") -> list[Path]:
    """Frozen models `out_dir/model-<seed>.pb` (`.pth` for the PyTorch backend; a descriptor
    other than se_e2_a is in the name: `dpa3-model-<seed>.pth`), one per seed (existing ones
    are reused)."""
    flag, suffix = BACKENDS[backend]
    prefix = "" if descriptor == "se_e2_a" else f"{descriptor}-"
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = out_dir / "data"
    if not (data_dir / "type.raw").is_file():
        emt_cu_frames(out_dir)
    models = []
    for seed in seeds:
        model = out_dir / f"{prefix}model-{seed}{suffix}"
        if not model.is_file():
            work = out_dir / f"{prefix}train-{seed}{suffix.replace('.', '-')}"
            work.mkdir(exist_ok=True)
            (work / "input.json").write_text(json.dumps(training_input(data_dir, seed, n_steps,
                                                                       descriptor)))
            run_command([dp_command(), flag, "train", "input.json"], work, env=DP_ENV,
                        log_name="train", timeout=600)
            run_command([dp_command(), flag, "freeze", "-o", str(model)], work, env=DP_ENV,
                        log_name="freeze", timeout=300)
        models.append(model)
    return models


if __name__ == "__main__":
    for path in train_tiny_models(Path(sys.argv[1])):
        print(path)
