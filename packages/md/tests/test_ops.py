"""The exploration OPs: core's conformance checks, and PrepRunExplore -> SelectConfs run in
dflow's local mode with real LAMMPS (EAM) and the ASE ensemble engine with DeePMD models."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from opshelf.core.execution import StepExecution
from opshelf.core.testing import REMOVE, BadInput, assert_op_conformance
from opshelf.md.explore import (
    ExploreConfig,
    SelectConfig,
    prepare_explore_tasks,
    run_explore_tasks,
    select_confs,
)
from opshelf.md.model_devi import read_model_devi
from opshelf.md.ops import PrepExplore, PrepRunExplore, RunExplore, SelectConfs

pytestmark = pytest.mark.engine("py:lammps")
EAM = {"name": "lammps", "settings": {"potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}}}}
EXPLORE = {"engine": EAM, "groups": [{"kind": "md", "temperatures_K": [300, 600],
                                      "n_steps": 40, "dump_every": 10}]}


def conf_file(path: Path) -> Path:
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2)
    atoms.rattle(0.03, seed=2)
    ase.io.write(path, atoms, format="extxyz")
    return path


def test_prep_and_run_explore_conform(tmp_path: Path) -> None:
    conf = conf_file(tmp_path / "conf.extxyz")
    prep = assert_op_conformance(
        PrepExplore,
        good_inputs={"confs": [conf], "explore": EXPLORE, "tasks_per_batch": 2},
        bad_inputs=[
            BadInput({"explore": {**EXPLORE, "groups": [{"kind": "md", "temperatures_K": [],
                                                         }]}}, match="temperatures_K"),
            BadInput({"explore": {**EXPLORE, "engine": {**EAM, "settings": {"potential": {
                "style": "eam", "files": {"Cu": "nope.eam"}}}}}}, match="nope.eam"),
            BadInput({"explore": {**EXPLORE, "groups": [{"kind": "md", "temperatures_K": [1],
                                                         "confs": [3]}]}},
                     match=r"confs: indices \[3\] out of range"),
            BadInput({"tasks_per_batch": 0}, match="tasks_per_batch"),
            BadInput({"explore": REMOVE}, match="explore"),
        ],
        workdir=tmp_path / "prep")
    assert prep.parameters["n_tasks"] == 2 and prep.parameters["batch_names"] == ["batch-000000"]
    batch = next(p for p in Path(prep.artifacts["batch_paths"]).resolve().rglob("batch-000000")
                 if ".dflow" not in p.parts)
    run = assert_op_conformance(
        RunExplore, good_inputs={"batch_name": "batch-000000", "batch_path": batch},
        bad_inputs=[BadInput({"batch_path": tmp_path}, match="no exploration task dirs")],
        workdir=tmp_path / "run")
    assert run.parameters["report"]["n_failed"] == 0


def test_prep_run_explore_then_select_in_local_mode(tmp_path: Path) -> None:
    from dflow import Step, Workflow, upload_artifact
    from dflow.python import PythonOPTemplate

    from opshelf.core.local import run_locally, use_local_mode
    from opshelf.core.workflows.outputs import local_step_outputs

    use_local_mode(tmp_path / "wf")
    conf = conf_file(tmp_path / "conf.extxyz")
    explore = PrepRunExplore("prep-run-explore", StepExecution(), StepExecution(group_size=2))
    step = Step("explore", explore, artifacts={"confs": upload_artifact([conf])},
                parameters={"explore": EXPLORE, "tasks_per_batch": 1, "block_id": "it0"},
                key="it0--explore")
    select = Step("select", PythonOPTemplate(SelectConfs, upload_dflow=False),
                  artifacts={"trajs": step.outputs.artifacts["trajs"]},
                  parameters={"select": {"trust": {"f_lo": 0.0, "f_hi": 100.0},
                                         "max_select": 3}},
                  key="it0--select")
    workflow = Workflow(name="explore-select", id="explore-select")
    workflow.add(step)
    workflow.add(select)
    assert run_locally(workflow, tmp_path / "wf") == "Succeeded"
    out = local_step_outputs(tmp_path / "wf", workflow, "it0--select")
    # EAM writes no model_devi.out: every frame has a missing deviation, so it is failed
    assert out.parameters["n_selected"] == 0
    report_path = Path(out.artifacts["report"]).resolve()
    if report_path.is_dir():
        report_path = next(p for p in report_path.rglob("report.json") if ".dflow" not in p.parts)
    report = json.loads(report_path.read_text())
    assert report["overall"]["n_frames"] == 2 * 5  # two runs, steps 0..40 every 10
    assert report["overall"]["n_failed"] == 10 and len(report["trajectories"]) == 2


def test_ase_ensemble_exploration_writes_model_devi(tiny_models: list[Path],
                                                    tmp_path: Path) -> None:
    conf = conf_file(tmp_path / "conf.extxyz")
    config = ExploreConfig(
        engine={"name": "ase-ensemble", "settings": {"calculators": [
            {"calculator": "deepmd.calculator:DP", "kwargs": {"model": str(m)}}
            for m in tiny_models]}},
        groups=[{"kind": "md", "ensemble": "nvt", "temperatures_K": [600], "n_steps": 6,
                 "dump_every": 2}])
    names, paths, _ = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    assert [r["status"] for r in run_explore_tasks(paths, tmp_path / "runs")] == ["succeeded"]
    devi = read_model_devi(tmp_path / "runs" / names[0] / "model_devi.out")
    assert devi[:, 0].tolist() == [0, 2, 4, 6]
    assert np.all(devi[:, 4] > 1e-4) and np.all(devi[:, 4] >= devi[:, 6])
    report = select_confs([tmp_path / "runs"], SelectConfig(
        trust={"style": "adaptive-lower", "f_hi": 10.0, "numb_candi_f": 2, "rate_candi_f": 0.0}),
        tmp_path / "sel")
    assert report["overall"]["n_candidate"] == 2 and report["overall"]["n_selected"] == 2
    # adaptive-lower: the lower level is the smaller of the two largest deviations
    assert report["level_f_lo"] == pytest.approx(np.sort(devi[:, 4])[-2])
    # a held-out sample: the two other frames (4 in all, 2 selected), none of the selected
    report = select_confs([tmp_path / "runs"], SelectConfig(
        trust={"style": "adaptive-lower", "f_hi": 10.0, "numb_candi_f": 2, "rate_candi_f": 0.0},
        n_test=5, seed=3), tmp_path / "sel-test")
    picked = {(r["trajectory"], r["frame"]) for r in report["selected"]}
    held_out = {(r["trajectory"], r["frame"]) for r in report["test"]}
    assert len(picked) == 2 and len(held_out) == 2 and not picked & held_out
    coords = list((tmp_path / "sel-test" / "test_confs").rglob("coord.npy"))
    assert sum(len(np.load(f)) for f in coords) == 2
