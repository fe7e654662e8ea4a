"""Use opshelf-fp's OPs in your own dflow workflow, run on this machine (dflow's local mode).

    python own_workflow.py [WORK_DIR]        (default: ./own-workflow)

Three plain dflow steps: opshelf-fp's `PrepFp` writes one task dir per frame, `RunFp` labels
each task in its own sliced step, and opshelf-core's `CollectLabels` gathers the labels into
one dpdata `deepmd/npy` system. The engine here is core's `ase` engine with ASE's EMT
calculator (seconds, no DFT program); swap `ENGINE` for CP2K, Quantum ESPRESSO, VASP, ... to
label with DFT (see the comment below). Nothing else changes.

The docs page "Use an opshelf OP in your own dflow workflow" shows this file, and
packages/fp/tests/test_own_workflow_example.py runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dpdata
from ase.build import bulk
from ase.io import write
from dflow import Step, Workflow, argo_len, argo_range, download_artifact, upload_artifact
from dflow.python import PythonOPTemplate, Slices

from opshelf.core.local import run_locally, use_local_mode
from opshelf.core.ops import CollectLabels
from opshelf.fp.ops import PrepFp, RunFp

# Any installed opshelf engine (`opshelf list`), as {name, settings, profile}. For CP2K:
# {"name": "cp2k", "settings": {"xc": "PBE", "cutoff_Ry": 300, "kpoints": [2, 2, 2]},
#  "profile": {"threads": 2}}: every key is in the opshelf-fp reference.
ENGINE = {"name": "ase", "settings": {"calculator": "emt"}}
TASK = {"kind": "single_point"}  # or {"kind": "relax"}


def make_frames(folder: Path, n_frames: int = 4) -> Path:
    """A few rattled 4-atom fcc Cu cells as one extxyz file (your own frames go here)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for seed in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(stdev=0.05, seed=seed)
        frames.append(atoms)
    path = folder / "frames.extxyz"
    write(path, frames)
    return path


def build(frames: Path) -> Workflow:
    """prep -> run (one sliced step per task) -> collect, as a dflow Workflow."""
    wf = Workflow(name="own-fp-labelling")
    prep = Step(
        name="prep-fp",
        template=PythonOPTemplate(PrepFp),
        parameters={"engine": ENGINE, "task": TASK, "fmt": "auto", "type_map": ["Cu"]},
        artifacts={"frames": upload_artifact([frames])},
        key="prep-fp",
    )
    run = Step(
        name="run-fp",
        template=PythonOPTemplate(
            RunFp,
            slices=Slices("{{item}}", input_parameter=["task_name"],
                          input_artifact=["task_path"],
                          output_artifact=["labeled_data", "raw_output"]),
        ),
        parameters={"task_name": prep.outputs.parameters["task_names"]},
        artifacts={"task_path": prep.outputs.artifacts["task_paths"]},
        with_param=argo_range(argo_len(prep.outputs.parameters["task_names"])),
        key="run-fp-{{item}}",
    )
    collect = Step(
        name="collect-fp",
        template=PythonOPTemplate(CollectLabels),
        parameters={"type_map": prep.outputs.parameters["type_map"],
                    "min_success_ratio": 1.0},
        artifacts={"labeled_data": run.outputs.artifacts["labeled_data"]},
        key="collect-fp",
    )
    wf.add(prep)
    wf.add(run)
    wf.add(collect)
    return wf


def main(work_dir: Path) -> dpdata.MultiSystems:
    work_dir = work_dir.resolve()
    use_local_mode(work_dir)        # dflow's debug mode, before any Step is built
    wf = build(make_frames(work_dir / "inputs"))
    phase = run_locally(wf, work_dir)  # blocks until done: "Succeeded" or "Failed"
    if phase != "Succeeded":
        raise SystemExit(f"workflow {phase}: see {work_dir}")
    collect = wf.query_step(key="collect-fp")[0]   # a step is found by its key
    results = work_dir / "results"                  # download: what works with Argo too
    data_dir = Path(download_artifact(collect.outputs.artifacts["data"], path=results)[0])
    summary_file = download_artifact(collect.outputs.artifacts["summary"], path=results)[0]
    summary = json.loads(Path(summary_file).read_text())
    labelled = dpdata.MultiSystems()
    labelled.from_deepmd_npy(str(data_dir), labeled=True)
    print(f"labelled {summary['n_succeeded']} of {summary['n_tasks']} tasks "
          f"({summary['n_frames']} frames) -> {data_dir}")
    for system in labelled:
        energies = system["energies"] / system.get_natoms()
        print(f"{system.formula}: energies per atom {energies.round(4).tolist()} eV")
    return labelled


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "own-workflow"))
