"""Use opshelf-props' OPs in your own dflow workflow, run on this machine (dflow's local mode).

    python own_workflow.py [WORK_DIR]        (default: ./own-props-workflow)

The equation of state of fcc Cu in three plain dflow steps: opshelf-props' `MakeProperty`
writes one task dir per volume, opshelf-core's `RunEngineTask` computes each in its own sliced
step, and `PostProperty` fits the EOS (pymatgen) and writes `eos.json` and `eos.png`. The
engine is core's `ase` engine with ASE's EMT calculator (seconds); any engine works, e.g.
{"name": "lammps", "settings": {"potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}}}}
with opshelf-md installed. Any property type works the same way: {"type": "elastic"},
{"type": "vacancy", "supercell": [3, 3, 3]}, ... (the opshelf-props reference lists them).

The docs page "Use an opshelf OP in your own dflow workflow" shows this file, and
packages/props/tests/test_own_workflow_example.py runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ase.build import bulk
from ase.io import write
from dflow import Step, Workflow, argo_len, argo_range, download_artifact, upload_artifact
from dflow.python import PythonOPTemplate, Slices

from opshelf.core.local import run_locally, use_local_mode
from opshelf.core.ops import RunEngineTask
from opshelf.props.ops import MakeProperty, PostProperty

ENGINE = {"name": "ase", "settings": {"calculator": "emt"}}
PROPERTY = {"type": "eos", "n_points": 7}


def build(structure: Path) -> Workflow:
    """make -> run (one sliced step per volume) -> post, as a dflow Workflow."""
    wf = Workflow(name="own-props-eos")
    make = Step(
        name="eos-make",
        template=PythonOPTemplate(MakeProperty),
        parameters={"property": PROPERTY, "engine": ENGINE},
        artifacts={"structure": upload_artifact(structure)},
        key="eos-make",
    )
    run = Step(
        name="eos-run",
        template=PythonOPTemplate(
            RunEngineTask,
            slices=Slices("{{item}}", input_parameter=["task_name"],
                          input_artifact=["task_path"],
                          output_artifact=["labeled_data", "raw_output"]),
        ),
        parameters={"task_name": make.outputs.parameters["task_names"]},
        artifacts={"task_path": make.outputs.artifacts["task_paths"]},
        with_param=argo_range(argo_len(make.outputs.parameters["task_names"])),
        key="eos-run-{{item}}",
    )
    post = Step(
        name="eos-post",
        template=PythonOPTemplate(PostProperty),
        artifacts={"context": make.outputs.artifacts["context"],
                   "labeled_data": run.outputs.artifacts["labeled_data"]},
        key="eos-post",
    )
    wf.add(make)
    wf.add(run)
    wf.add(post)
    return wf


def main(work_dir: Path) -> dict:
    work_dir = work_dir.resolve()
    use_local_mode(work_dir)        # dflow's debug mode, before any Step is built
    (work_dir / "inputs").mkdir(parents=True, exist_ok=True)
    structure = work_dir / "inputs" / "cu.extxyz"   # your own structure file goes here
    write(structure, bulk("Cu", "fcc", a=3.6, cubic=True))
    wf = build(structure)
    phase = run_locally(wf, work_dir)  # blocks until done: "Succeeded" or "Failed"
    if phase != "Succeeded":
        raise SystemExit(f"workflow {phase}: see {work_dir}")
    post = wf.query_step(key="eos-post")[0]
    results = Path(download_artifact(post.outputs.artifacts["results"],
                                     path=work_dir / "results")[0])
    eos = json.loads((results / "eos.json").read_text())
    print(f"EOS of fcc Cu ({PROPERTY['n_points']} volumes) -> {results}")
    print(f"a0 {eos['lattice_constant_A']:.3f} A, E0 {eos['e0_eV_per_atom']:.4f} eV/atom, "
          f"B {eos['bulk_modulus_GPa']:.1f} GPa")
    return eos


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "own-props-workflow"))
