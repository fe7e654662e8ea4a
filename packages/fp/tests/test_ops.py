"""The FP dflow OPs: contract checks with core's conformance kit, and PrepRunFp run end to
end in local (debug) mode with REAL pw.x on two 2-atom Si frames."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import dpdata
import numpy as np
import pytest
from fp_test_helpers import si2_frame

from opshelf.core.engine import Task
from opshelf.core.execution import StepExecution
from opshelf.core.testing import REMOVE, BadInput, assert_op_conformance
from opshelf.fp import label_frames
from opshelf.fp.ops import PrepFp, PrepRunFp, RunFp

QE = {
    "name": "qe",
    "settings": {
        "pseudopotentials": {"Si": "Si.pz-vbc.UPF"},
        "ecutwfc_Ry": 20.0,
        "kpoints": [2, 2, 2],
    },
    "profile": {"threads": 1},
}
DISPLACEMENTS = [(0.0, 0.0, 0.0), (0.05, -0.03, 0.02)]


def found(artifact: Path, name: str) -> Path:
    """The file or folder `name` inside a dflow artifact (a link to a step's outputs)."""
    root = artifact.resolve()
    if root.is_file():
        return root
    return next(p for p in sorted(root.rglob(name)) if ".dflow" not in p.parts)


def write_frames(path: Path) -> Path:
    ase.io.write(
        path, [si2_frame(d).to("ase/structure")[0] for d in DISPLACEMENTS], format="extxyz"
    )
    return path


def test_prep_fp_conforms_and_checks_inputs_first(pw_ready: None, tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames.extxyz")
    no_pseudo = {**QE, "settings": {**QE["settings"], "pseudopotentials": {"Si": "Si.nope.UPF"}}}
    result = assert_op_conformance(
        PrepFp,
        good_inputs={"frames": [frames], "engine": QE, "task": {"kind": "single_point"}},
        bad_inputs=[
            BadInput({"engine": no_pseudo}, match=r"element 'Si'.*Si\.nope\.UPF"),
            BadInput({"engine": {"name": "qee"}}, match=r"unknown engine 'qee'"),
            BadInput({"task": {"kind": "md"}}, match=r"task kind 'md'"),
            BadInput({"engine": REMOVE}, match=r"engine"),
        ],
        workdir=tmp_path / "conf",
    )
    assert result.parameters["task_names"] == ["task-000000", "task-000001"]


def test_run_fp_conforms(pw_ready: None, tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames.extxyz")
    prep = assert_op_conformance(
        PrepFp, good_inputs={"frames": [frames], "engine": QE, "task": {}}, workdir=tmp_path / "p"
    )
    # A List[Path] artifact comes back as the folder that holds the task dirs.
    task_path = next(Path(prep.artifacts["task_paths"]).rglob("task-000001"))
    result = assert_op_conformance(
        RunFp,
        good_inputs={"task_name": "task-000001", "task_path": task_path},
        bad_inputs=[BadInput({"task_path": tmp_path / "missing"}, match=r"missing")],
        workdir=tmp_path / "conf",
    )
    assert result.parameters["report"]["status"] == "succeeded"


def test_prep_run_fp_in_local_mode(
    pw_ready: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dflow import Step, Workflow, config, upload_artifact

    from opshelf.core.local import run_locally, use_local_mode

    for key in ("mode", "debug_workdir"):  # restored after the test
        monkeypatch.setitem(config, key, config[key])
    use_local_mode(tmp_path / "dflow")  # build in local mode: uploads land in the run's workdir

    frames = write_frames(tmp_path / "frames.extxyz")
    execution = StepExecution()
    super_op = PrepRunFp("prep-run-fp", execution, execution, execution, n_tasks_hint=2)
    step = Step(
        "label",
        super_op,
        key="iter-000000--fp",
        artifacts={"frames": upload_artifact([frames])},
        parameters={"engine": QE, "task": {}, "block_id": "iter-000000"},
    )
    workflow = Workflow(name="fp-test", id="fp-test")
    workflow.add(step)
    assert run_locally(workflow, tmp_path / "dflow") == "Succeeded"

    wfdir = tmp_path / "dflow" / "fp-test"
    keys = {p.name for p in wfdir.iterdir() if p.is_dir()}
    assert {"iter-000000--prep-fp", "iter-000000--collect-fp"} <= keys
    # Read through the super-OP's own outputs: that checks its output wiring too.
    outputs = wfdir / "iter-000000--fp" / "outputs"
    assert (outputs / "parameters" / "n_frames").read_text().strip() == "2"
    summary = json.loads(found(outputs / "artifacts" / "summary", "summary.json").read_text())
    assert (summary["n_tasks"], summary["n_failed"], summary["n_frames"]) == (2, 0, 2)
    data_dir = found(outputs / "artifacts" / "data", "data")
    data = dpdata.MultiSystems.from_file(str(data_dir), fmt="deepmd/npy")
    # The same labels as the plain-Python path (same inputs, same pw.x): 1e-8 eV apart at most.
    direct, failures = label_frames(
        [si2_frame(d) for d in DISPLACEMENTS], QE, tmp_path / "direct", Task()
    )
    assert failures == []
    (got,) = data.systems.values()
    (want,) = direct.systems.values()
    np.testing.assert_allclose(np.sort(got["energies"]), np.sort(want["energies"]), atol=1e-8)


@pytest.fixture(autouse=True)
def _dflow_debug_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep dflow's debug files inside the test's tmp dir."""
    monkeypatch.chdir(tmp_path)
