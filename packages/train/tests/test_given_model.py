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
