"""Pretrain the cu-emt-finetune example's model: a tiny multi-element DPA-3 on EMT Cu-Au.

The stand-in for a large atomic model: trained here, not downloaded, on 80 EMT-labelled
2x2x2 fcc Cu-Au cells (32 atoms) with 25, 50, 75 and 100 % gold on random sites (20 cells
each; lattice constant by Vegard's law between 3.61 and 4.08 A, strain <= 2 %,
displacements 0.08 A). No pure Cu frame: the loop fine-tunes it to a composition it never
saw (Cu-Cu neighbours it saw, in the Cu-rich cells).

Writes pretrained/dpa3-cuau.pt (the checkpoint's model weights and script, no optimizer
state: what `dp --pt train --finetune` reads) and pretrained/provenance.json (data, script,
learning curve, deepmd-kit and torch versions, sha256).
Run: python make_pretrained.py [--steps N]  (seeded: data seed 2026, training seed 7;
torch on CPU is deterministic for one thread, not across machines: the committed file is
the reference)
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import dpdata
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from opshelf.train import DpProfile, ensemble_scripts, train_model
from opshelf.train.script import SCRIPT_NAME

HERE = Path(__file__).resolve().parent
OUT = HERE / "pretrained"
TYPE_MAP = ["Cu", "Au"]
GOLD_FRACTIONS = (0.25, 0.5, 0.75, 1.0)

#: the model: the same DPA-3 as config.yaml's template (fine-tuning takes it from here)
DPA3 = {"type": "dpa3",
        "repflow": {"n_dim": 8, "e_dim": 8, "a_dim": 4, "nlayers": 2, "e_rcut": 4.0,
                    "e_rcut_smth": 3.0, "e_sel": 30, "a_rcut": 3.0, "a_rcut_smth": 2.5,
                    "a_sel": 20, "axis_neuron": 4, "update_angle": True,
                    "update_style": "res_residual", "update_residual": 0.1,
                    "update_residual_init": "const"}}
TEMPLATE: dict[str, Any] = {
    "model": {"type_map": TYPE_MAP, "descriptor": DPA3, "fitting_net": {"neuron": [16, 16]}},
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-4, "decay_steps": 100},
    "loss": {"start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100, "limit_pref_f": 10,
             "start_pref_v": 0, "limit_pref_v": 0},
    "training": {"training_data": {"systems": [], "batch_size": 2},
                 "numb_steps": 2000, "disp_freq": 100, "save_freq": 2000},
}


def pretraining_data(out: Path, seed: int = 2026, per_fraction: int = 20) -> Path:
    """EMT-labelled Cu-Au cells (see the module docstring) as deepmd/npy systems."""
    rng = np.random.default_rng(seed)
    multi = dpdata.MultiSystems(type_map=TYPE_MAP)
    for gold in GOLD_FRACTIONS:
        for _ in range(per_fraction):
            atoms = bulk("Cu", "fcc", a=3.61 + (4.08 - 3.61) * gold, cubic=True) * (2, 2, 2)
            sites = rng.choice(len(atoms), size=round(gold * len(atoms)), replace=False)
            atoms.symbols[sites] = "Au"
            strain = rng.uniform(-0.02, 0.02, (3, 3))
            atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2),
                           scale_atoms=True)
            atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
            atoms.calc = EMT()
            atoms.get_potential_energy()
            multi.append(dpdata.LabeledSystem(atoms, fmt="ase/structure"))
    multi.to("deepmd/npy", str(out))
    return out


def main(steps: int) -> None:
    import deepmd
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = pretraining_data(work / "data")
        template = copy.deepcopy(TEMPLATE)
        template["training"]["numb_steps"] = steps
        (script,) = ensemble_scripts(template, 1, TYPE_MAP, seed=7)
        (work / SCRIPT_NAME).write_text(json.dumps(script))
        beside = Path(sys.executable).parent / "dp"  # a venv not on PATH
        profile = DpProfile(command=[str(beside) if beside.is_file() else "dp"],
                            backend={"name": "pytorch", "data_workers": 0}, threads=1)
        metrics = train_model(work, work, init_data=[data], profile=profile)
        state = torch.load(work / "model.ckpt.pt", map_location="cpu", weights_only=True)
        OUT.mkdir(exist_ok=True)
        target = OUT / "dpa3-cuau.pt"
        torch.save({"model": state["model"]}, target)
        shutil.copyfile(work / "lcurve.out", OUT / "lcurve.out")
    provenance = {
        "made_by": "examples/cu-emt-finetune/make_pretrained.py",
        "data": {"labels": "ASE EMT", "cells": "2x2x2 fcc (32 atoms)",
                 "gold_fractions": list(GOLD_FRACTIONS), "frames_per_fraction": 20,
                 "strain_max": 0.02, "displacement_sigma_A": 0.08, "seed": 2026},
        "script": {k: v for k, v in script.items() if k != "training"} | {
            "training": {k: v for k, v in script["training"].items()
                         if k != "training_data"}},
        "learning_curve": {k: metrics[k] for k in ("first_training", "training", "final_step")},
        "versions": {"deepmd-kit": deepmd.__version__, "torch": torch.__version__},
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    (OUT / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"wrote {target} ({target.stat().st_size} bytes); training force RMSE "
          f"{metrics['first_training']['rmse_f_eV_per_A']:.3f} -> "
          f"{metrics['training']['rmse_f_eV_per_A']:.3f} eV/A")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps")
    main(parser.parse_args().steps)
