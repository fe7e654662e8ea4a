"""dflow OPs of opshelf-train and the ensemble super-OP.

- `PrepTrain`: one DeePMD template -> N task dirs (own seeds, type_map filled, checked
  against the data when given).
- `RunTrain`: one task dir + data -> frozen model, lcurve, log, metrics; restarts from a
  checkpoint left by an earlier attempt; init-model policy; fine-tuning.
- `TestModel`: a frozen model + labelled data -> per-system and overall errors.
- `ScoreEnsemble`: every model of an ensemble + labelled data -> each model's errors, the
  ensemble mean's, and the ensemble's spread (one process, each model loaded once).
- `PrepRunTrain`: prep-train -> run-train (one sliced step per model), keyed
  `<block_id>--prep-train`, `<block_id>--run-train-000001`.
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

from dflow.python import (
    OP,
    OPIO,
    Artifact,
    BigParameter,
    FatalError,
    OPIOSign,
    Parameter,
    TransientError,
)
from pydantic import Field

from opshelf.core.config import StrictModel, validate_into
from opshelf.core.dflow_build import Mode
from opshelf.core.errors import CommandError, UserError
from opshelf.core.execution import StepExecution
from opshelf.core.fanout import (
    REQUIRED,
    Fan,
    FanOut,
    FanOutSteps,
    Stage,
    from_input,
    from_prep,
    from_run,
)
from opshelf.core.ops.labelling import task_name
from opshelf.train.data import check_type_map, find_systems
from opshelf.train.deepmd import DpProfile
from opshelf.train.evaluate import METRICS_FILE as TEST_METRICS_FILE
from opshelf.train.evaluate import evaluate_model
from opshelf.train.script import (
    SCRIPT_NAME,
    FinetuneOptions,
    InitModelOptions,
    StepScaling,
    ensemble_scripts,
    template_type_map,
)
from opshelf.train.train import LOG_FILE, METRICS_FILE, copy_task_inputs, train_model

STEP_PREP = "prep-train"
STEP_RUN = "run-train"


class TrainConfig(StrictModel):
    """`config` of RunTrain: how dp runs (its backend), the init-model policy, fine-tuning."""

    dp: DpProfile = Field(default_factory=DpProfile)
    init_model: InitModelOptions = Field(default_factory=InitModelOptions)
    scaling: StepScaling = Field(default_factory=StepScaling)
    finetune: FinetuneOptions = Field(default_factory=FinetuneOptions,
                                      description="fine-tuning, when a finetune_model is given")


def _paths(value: Any) -> list[Path]:
    return [Path(p) for p in value] if value else []


class PrepTrain(OP):
    """One DeePMD input template -> `numb_models` task dirs, each with its own seeds."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "template": BigParameter(dict),
            "numb_models": Parameter(int, default=4),
            "type_map": Parameter(List[str], default=[]),
            "seed": Parameter(int, default=0),
            "data": Artifact(List[Path], optional=True),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "task_names": Parameter(List[str]),
            "task_paths": Artifact(List[Path]),
            "type_map": Parameter(List[str]),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        try:
            type_map = template_type_map(ip["template"], ip["type_map"])
            if ip["data"]:
                check_type_map(type_map, find_systems(_paths(ip["data"])))
            scripts = ensemble_scripts(ip["template"], ip["numb_models"], type_map, ip["seed"])
        except UserError as exc:
            raise FatalError(str(exc)) from exc
        names, paths = [], []
        for index, script in enumerate(scripts):
            path = Path("tasks") / task_name(index)
            path.mkdir(parents=True, exist_ok=True)
            (path / SCRIPT_NAME).write_text(json.dumps(script, indent=1))
            names.append(path.name)
            paths.append(path)
        return OPIO({"task_names": names, "task_paths": paths, "type_map": type_map})


class RunTrain(OP):
    """Train and freeze one model. dp failing is a TransientError: a retry continues from
    the checkpoint the failed attempt left in the step's work dir."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        # a plain parameter: a BigParameter broadcast to the slices of a fan-out arrived
        # empty in dflow's local mode (every cl run trained with the default config)
        return OPIOSign({
            "config": Parameter(dict, default={}),
            "task_name": Parameter(str),
            "task_path": Artifact(Path),
            "init_data": Artifact(List[Path], optional=True),
            "iter_data": Artifact(List[Path], optional=True),
            "valid_data": Artifact(List[Path], optional=True),
            "init_model": Artifact(Path, optional=True),
            "finetune_model": Artifact(Path, optional=True),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "model": Artifact(Path),
            "lcurve": Artifact(Path),
            "log": Artifact(Path),
            "script": Artifact(Path),
            "metrics": Artifact(Path),
            "report": Parameter(dict),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        work_dir = Path(ip["task_name"])
        try:
            config = validate_into(TrainConfig, ip["config"], where="input 'config'")
            copy_task_inputs(Path(ip["task_path"]), work_dir)
            report = train_model(
                work_dir, work_dir, init_data=_paths(ip["init_data"]),
                iter_data=_paths(ip["iter_data"]), valid_data=_paths(ip["valid_data"]),
                init_model=ip["init_model"], finetune_model=ip["finetune_model"],
                profile=config.dp, init_options=config.init_model, scaling=config.scaling,
                finetune_options=config.finetune)
        except UserError as exc:
            raise FatalError(str(exc)) from exc
        except CommandError as exc:
            raise TransientError(str(exc)) from exc
        return OPIO({
            "model": work_dir / config.dp.backend.frozen_model,
            "lcurve": work_dir / "lcurve.out", "log": work_dir / LOG_FILE,
            "script": work_dir / SCRIPT_NAME, "metrics": work_dir / METRICS_FILE,
            "report": report,
        })


class TestModel(OP):
    """`dp test` of a frozen model over labelled data -> per-system and overall RMSE/MAE of
    energy per atom, force and virial per atom (`metrics` JSON; `overall` as a parameter)."""

    __test__ = False  # a dflow OP, not a pytest test class

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "model": Artifact(Path),
            "data": Artifact(List[Path]),
            "config": BigParameter(dict, default={}),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"metrics": Artifact(Path), "overall": Parameter(dict)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        work_dir = Path("test-model")
        try:
            profile = validate_into(DpProfile, ip["config"], where="input 'config'")
            metrics = evaluate_model(Path(ip["model"]), _paths(ip["data"]), work_dir, profile)
        except UserError as exc:
            raise FatalError(str(exc)) from exc
        except CommandError as exc:
            raise TransientError(str(exc)) from exc
        return OPIO({"metrics": work_dir / TEST_METRICS_FILE, "overall": metrics["overall"]})


class ScoreEnsemble(OP):
    """An ensemble on labelled data (`score.score_ensemble`) -> `score` (JSON file) and the
    same as a parameter."""

    #: file of the score in the step's work dir
    SCORE_FILE = "ensemble-score.json"

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({"models": Artifact(List[Path]), "data": Artifact(List[Path])})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"score": Artifact(Path), "overall": BigParameter(dict)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        from opshelf.train.score import score_ensemble

        try:
            score = score_ensemble(_paths(ip["models"]), _paths(ip["data"]))
        except UserError as exc:
            raise FatalError(str(exc)) from exc
        out = Path(self.SCORE_FILE)
        out.write_text(score.model_dump_json(indent=1))
        return OPIO({"score": out, "overall": score.model_dump(mode="json")})


class PrepRunTrain(FanOutSteps):
    """prep-train -> run-train, one sliced step per model (in parallel where the executor
    allows; on a GPU when the executor gives one: DeePMD-kit uses it by itself).

    Inputs: parameters `block_id`, `template`, `numb_models`, `type_map`, `seed`, `config`
    (RunTrain's); artifacts `init_data`, optional `iter_data`, `valid_data`, `init_models`
    (one per model, model i starts from init_models[i]) and `finetune_model`.
    Outputs: artifacts `models`, `lcurves`, `logs`, `scripts`, `metrics`; parameter
    `reports`. The OP classes can be replaced by subclasses (mocked OPs in tests).
    """

    def __init__(self, name: str, prep: StepExecution, run: StepExecution, *,
                 mode: Mode = "local", numb_models_hint: int | None = None,
                 prep_op: type[OP] = PrepTrain, run_op: type[OP] = RunTrain) -> None:
        passed_on = ("init_data", "iter_data", "valid_data", "finetune_model")
        declaration = FanOut(
            block_id="train",
            parameters={"template": REQUIRED, "numb_models": 4, "type_map": [], "seed": 0,
                        "config": {}},
            artifacts=("init_data",),
            optional_artifacts=("iter_data", "valid_data", "init_models", "finetune_model"),
            prep=Stage(STEP_PREP, prep_op, prep,
                       parameters={n: from_input(n) for n in ("template", "numb_models",
                                                               "type_map", "seed")},
                       artifacts={"data": from_input("init_data")}),
            run=Stage(STEP_RUN, run_op, run,
                      parameters={"config": from_input("config"),
                                  "task_name": from_prep("task_names")},
                      artifacts={"task_path": from_prep("task_paths"),
                                 "init_model": from_input("init_models"),
                                 **{n: from_input(n) for n in passed_on}}),
            fan=Fan(over="task_names", sliced_parameters=("task_name",),
                    sliced_artifacts=("task_path", "init_model"),
                    output_artifacts=("model", "lcurve", "log", "script", "metrics")),
            output_parameters={"reports": from_run("report")},
            output_artifacts={outer: from_run(inner) for outer, inner in (
                ("models", "model"), ("lcurves", "lcurve"), ("logs", "log"),
                ("scripts", "script"), ("metrics", "metrics"))},
        )
        super().__init__(name, declaration, mode=mode, n_items=numb_models_hint)
