"""DPGEN2's init_models_paths rule (InitModelOptions.given_model_first): in the first
iteration (no iteration data) a given frozen model is used as it is, not trained; once
iteration data exists, the init-model policy decides as before. No dp runs here: the rule
acts before dp is looked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import template

from opshelf.core.errors import ConfigError
from opshelf.train import DpProfile, InitModelOptions, train_model
from opshelf.train.script import SCRIPT_NAME, ensemble_scripts


def _task(path: Path) -> Path:
    path.mkdir(parents=True)
    (script,) = ensemble_scripts(template(), 1, ["Cu", "Au"], seed=1)
    (path / SCRIPT_NAME).write_text(json.dumps(script))
    return path


def test_the_given_model_is_the_first_iterations_model(emt_data: Path, tmp_path: Path
                                                       ) -> None:
    given = tmp_path / "given.pb"
    given.write_bytes(b"a frozen model's bytes")  # copied, never read: no dp here
    work = _task(tmp_path / "task")
    metrics = train_model(work, work, init_data=[emt_data], init_model=given,
                          init_options=InitModelOptions(given_model_first=True),
                          profile=DpProfile(command=["no-such-dp"]))
    assert metrics["start"] == "given"
    assert (work / "frozen_model.pb").read_bytes() == given.read_bytes()
    assert "used as it is, not trained" in (work / "train.log").read_text()
    assert json.loads((work / "opshelf-train.json").read_text())["mode"] == "given"
    assert (work / "lcurve.out").is_file()


def test_without_the_rule_or_with_iteration_data_it_trains(emt_data: Path, tmp_path: Path
                                                            ) -> None:
    """The rule off (the default), or iteration data present: training goes ahead, and so
    looks for dp (not found here: the error shows it got that far)."""
    given = tmp_path / "given.pb"
    given.write_bytes(b"x")
    for options, iter_data in ((InitModelOptions(policy="yes"), []),
                               (InitModelOptions(given_model_first=True), [emt_data])):
        work = _task(tmp_path / f"task-{len(iter_data)}")
        with pytest.raises(Exception, match="no-such-dp"):
            train_model(work, work, init_data=[emt_data], iter_data=iter_data,
                        init_model=given, init_options=options,
                        profile=DpProfile(command=["no-such-dp"]))
        assert not (work / "frozen_model.pb").exists()


def test_a_given_model_of_another_backend_is_refused(emt_data: Path, tmp_path: Path) -> None:
    given = tmp_path / "given.pth"
    given.write_bytes(b"x")
    work = _task(tmp_path / "task")
    with pytest.raises(ConfigError, match="frozen .pb model for the tensorflow backend"):
        train_model(work, work, init_data=[emt_data], init_model=given,
                    init_options=InitModelOptions(given_model_first=True))


def test_prep_run_train_hands_model_i_to_member_i(emt_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What cl's first iteration does with train.init_models, through dflow's local mode:
    PrepRunTrain slices the uploaded models, and each member's model is its given one,
    byte for byte (no dp runs)."""
    from dflow import Step, Workflow, config, upload_artifact

    from opshelf.core.execution import StepExecution
    from opshelf.core.local import run_locally, use_local_mode
    from opshelf.train.ops import PrepRunTrain

    for key in ("mode", "debug_workdir"):  # restored after the test
        monkeypatch.setitem(config, key, config[key])
    monkeypatch.chdir(tmp_path)
    use_local_mode(tmp_path / "dflow")
    given = []
    for i in range(2):
        given.append(tmp_path / f"given-{i}" / "frozen_model.pb")
        given[-1].parent.mkdir()
        given[-1].write_bytes(b"model %d" % i)
    execution = StepExecution()
    step = Step("train", PrepRunTrain("prep-run-train", execution, execution,
                                      numb_models_hint=2),
                key="iter-000000--train",
                artifacts={"init_data": upload_artifact([emt_data]),
                           "init_models": upload_artifact(given)},
                parameters={"template": template(), "numb_models": 2,
                            "block_id": "iter-000000",
                            "config": {"init_model": {"given_model_first": True},
                                       "dp": {"command": ["no-such-dp"]}}})
    workflow = Workflow(name="given-test", id="given-test")
    workflow.add(step)
    assert run_locally(workflow, tmp_path / "dflow") == "Succeeded"
    outputs = tmp_path / "dflow" / "given-test" / "iter-000000--train" / "outputs"
    models = sorted(Path(outputs / "artifacts" / "models").resolve().rglob("*.pb"))
    assert [m.read_bytes() for m in models] == [b"model 0", b"model 1"]
