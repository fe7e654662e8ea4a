"""The train OPs against core's conformance kit, and PrepRunTrain (2 models) in local mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from train_helpers import template

from opshelf.core.execution import StepExecution
from opshelf.core.testing import REMOVE, BadInput, assert_op_conformance
from opshelf.train.ops import PrepRunTrain, PrepTrain, RunTrain, TestModel

# Short runs: the OPs' wiring is under test here; training quality is in test_train.py.
TINY = {"numb_steps": 40, "disp_freq": 20, "save_freq": 20}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep dflow's debug files inside the test's tmp dir."""
    monkeypatch.chdir(tmp_path)


def found(artifact: Path, name: str) -> Path:
    """The file `name` inside a dflow artifact (a link to a step's outputs)."""
    root = Path(artifact).resolve()
    if root.is_file():
        return root
    return next(p for p in sorted(root.rglob(name)) if ".dflow" not in p.parts)


def test_prep_train_conforms(emt_data: Path, tmp_path: Path) -> None:
    no_descriptor = template()
    del no_descriptor["model"]["descriptor"]
    result = assert_op_conformance(
        PrepTrain,
        good_inputs={"template": template(), "numb_models": 2, "data": [emt_data]},
        bad_inputs=[
            BadInput({"type_map": ["Cu"]}, match=r"type_map \['Cu', 'Au'\] differs"),
            BadInput({"template": {**template(), "model": {**template()["model"],
                                                           "type_map": ["Cu"]}}},
                     match=r"lacks elements of the data.*Au"),
            BadInput({"template": no_descriptor}, match=r"model.descriptor"),
            BadInput({"numb_models": 0}, match="numb_models must be >= 1"),
        ],
        workdir=tmp_path / "conf",
    )
    assert result.parameters["task_names"] == ["task-000000", "task-000001"]
    scripts = [json.loads(p.read_text()) for p in sorted(
        Path(result.artifacts["task_paths"]).resolve().rglob("input.json"))]
    assert len(scripts) == 2 and scripts[0]["training"]["seed"] != scripts[1]["training"]["seed"]


@pytest.mark.engine("dp")
def test_run_train_and_test_model_conform(emt_data: Path, tmp_path: Path) -> None:
    task = tmp_path / "task-000000"
    task.mkdir()
    from opshelf.train.script import ensemble_scripts

    (script,) = ensemble_scripts(template(**TINY), 1, ["Cu", "Au"])
    (task / "input.json").write_text(json.dumps(script))
    result = assert_op_conformance(
        RunTrain,
        good_inputs={"task_name": "task-000000", "task_path": task, "init_data": [emt_data]},
        bad_inputs=[
            BadInput({"init_data": REMOVE}, match="no training data"),
            BadInput({"init_data": [tmp_path / "nowhere"]}, match="training data not found"),
            BadInput({"config": {"init_model": {"policy": "sometimes"}}},
                     match="unknown init-model policy 'sometimes'"),
            BadInput({"config": {"dp": {"comand": ["dp"]}}},
                     match="unknown key 'comand'.*did you mean 'command'"),
            BadInput({"config": {"dp": {"command": ["no-such-dp"]}}},
                     match="'no-such-dp' not found on PATH"),
        ],
        workdir=tmp_path / "conf",
    )
    report = result.parameters["report"]
    assert (report["final_step"], report["start"]) == (40, "scratch")
    model = found(result.artifacts["model"], "frozen_model.pb")

    tested = assert_op_conformance(
        TestModel,
        good_inputs={"model": model, "data": [emt_data]},
        bad_inputs=[BadInput({"model": tmp_path / "none.pb"}, match="model file not found")],
        workdir=tmp_path / "conf-test",
    )
    assert tested.parameters["overall"]["n_frames"] == 40
    metrics = json.loads(found(tested.artifacts["metrics"], "test-metrics.json").read_text())
    assert sorted(Path(name).name for name in metrics["systems"]) == ["Cu3Au1", "Cu4Au0"]


@pytest.mark.engine("dp")
def test_prep_run_train_ensemble_in_local_mode(emt_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dflow import Step, Workflow, config, upload_artifact

    from opshelf.core.local import run_locally, use_local_mode

    for key in ("mode", "debug_workdir"):  # restored after the test
        monkeypatch.setitem(config, key, config[key])
    use_local_mode(tmp_path / "dflow")
    execution = StepExecution()
    super_op = PrepRunTrain("prep-run-train", execution, execution, numb_models_hint=2)
    step = Step("train", super_op, key="iter-000000--train",
                artifacts={"init_data": upload_artifact([emt_data])},
                parameters={"template": template(**TINY), "numb_models": 2,
                            "block_id": "iter-000000"})
    workflow = Workflow(name="train-test", id="train-test")
    workflow.add(step)
    assert run_locally(workflow, tmp_path / "dflow") == "Succeeded"

    wfdir = tmp_path / "dflow" / "train-test"
    keys = {p.name for p in wfdir.iterdir() if p.is_dir()}
    assert {"iter-000000--prep-train", "iter-000000--run-train-000000",
            "iter-000000--run-train-000001"} <= keys
    outputs = wfdir / "iter-000000--train" / "outputs"
    models = sorted(p for p in Path(outputs / "artifacts" / "models").resolve().rglob("*.pb"))
    assert len(models) == 2 and models[0].read_bytes() != models[1].read_bytes()
    reports: list[Any] = json.loads((outputs / "parameters" / "reports").read_text())
    # dflow's local mode hands a grouped slice's outputs back wrapped: unwrap them
    reports = [json.loads(r) if isinstance(r, str) else r for r in reports]
    reports = [item.get("dflow_list_item", item) for group in reports
               for item in (group if isinstance(group, list) else [group])]
    assert [r["final_step"] for r in reports] == [40, 40]
