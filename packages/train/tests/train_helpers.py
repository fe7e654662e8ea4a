"""Shared helpers of opshelf-train's tests: EMT-labelled Cu/Cu3Au data and tiny templates."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import ase.build
import ase.io
import numpy as np

from opshelf.core.engine import Task
from opshelf.core.engines.ase_engine import AseEngine
from opshelf.core.ops.labelling import collect_labels, prepare_engine_tasks, run_engine_task

TYPE_MAP = ["Cu", "Au"]

#: A tiny se_e2_a model: trains 300 steps on 40 four-atom frames in a few seconds.
SE_E2_A_TEMPLATE: dict[str, Any] = {
    "model": {
        "type_map": TYPE_MAP,
        "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [40, 40],
                       "neuron": [4, 8], "axis_neuron": 4},
        "fitting_net": {"neuron": [16, 16]},
    },
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 50},
    "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
             "start_pref_v": 0.02, "limit_pref_v": 1},
    "training": {"training_data": {"systems": [], "batch_size": "auto"},
                 "numb_steps": 300, "disp_freq": 50, "save_freq": 100},
}


def template(**training: Any) -> dict[str, Any]:
    out = copy.deepcopy(SE_E2_A_TEMPLATE)
    out["training"].update(training)
    return out


def cu_frames(n_per_formula: int = 20, seed: int = 7) -> list[Any]:
    """Rattled (0.08 A) and strained (+-3 %) 4-atom fcc cells of Cu4 and Cu3Au."""
    rng = np.random.default_rng(seed)
    frames = []
    for gold in (False, True):
        for _ in range(n_per_formula):
            atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
            if gold:
                atoms.symbols[0] = "Au"
            strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
            atoms.set_cell(atoms.cell @ (strain + strain.T) / 2, scale_atoms=True)
            atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
            frames.append(atoms)
    return frames


def label_with_emt(frames: list[Any], work: Path) -> Path:
    """Label `frames` with EMT through core's labelling functions; returns the deepmd/npy
    multi-system folder (one system per formula)."""
    work.mkdir(parents=True, exist_ok=True)
    ase.io.write(work / "frames.extxyz", frames)
    names, paths, type_map = prepare_engine_tasks(
        [work / "frames.extxyz"], "auto", AseEngine({"calculator": "emt"}), Task(),
        work / "tasks", type_map=TYPE_MAP)
    labelled = []
    for name, path in zip(names, paths):
        run_engine_task(path, work / "run" / name, work / "labelled" / name, name)
        labelled.append(work / "labelled" / name)
    collect_labels(labelled, work / "collected", type_map=type_map)
    return work / "collected" / "data"


def finetune_split(frames: list[Any]) -> tuple[list[Any], list[Any]]:
    """The fine-tuning tests' split of `emt_data`'s 40 frames: 3 Cu4 + 3 Cu3Au to train on,
    the other 34 held out (the same split for every trainer)."""
    cu = [f for f in frames if f.get_chemical_formula() == "Cu4"]
    cu3au = [f for f in frames if f.get_chemical_formula() == "AuCu3"]
    assert len(cu) == len(cu3au) == 20  # conftest's emt_data: 20 frames per formula
    return cu[:3] + cu3au[:3], cu[3:] + cu3au[3:]
