"""dflow OPs of the lameval workflow: thin wrappers over `tasks` and `leaderboard`."""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import json
from pathlib import Path
from typing import List

from dflow.python import OP, OPIO, Artifact, BigParameter, OPIOSign, Parameter

from opshelf.core.config import validate_into
from opshelf.lameval.data import DatasetSpec
from opshelf.lameval.leaderboard import leaderboard_row, write_leaderboard
from opshelf.lameval.predict import ModelSpec
from opshelf.lameval.tasks import TasksConfig, evaluate_model


class EvaluateModel(OP):
    """Every enabled task of one model -> `result` (a JSON file) and its leaderboard row."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "model": BigParameter(dict),
            "tasks": BigParameter(dict),
            "datasets": Artifact(List[Path], optional=True),
            "dataset_specs": BigParameter(list, default=[]),
            "config_dir": Parameter(str, default="."),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"result": Artifact(Path), "row": BigParameter(dict)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        model = validate_into(ModelSpec, ip["model"], where="input 'model'")
        tasks = validate_into(TasksConfig, ip["tasks"], where="input 'tasks'")
        paths = [Path(p) for p in ip["datasets"] or []]
        datasets = [DatasetSpec(**{**spec, "path": path})
                    for spec, path in zip(ip["dataset_specs"], paths)]
        result = evaluate_model(model, tasks, datasets, Path("work"), Path(ip["config_dir"]))
        out = Path(f"{model.name}.json")
        out.write_text(json.dumps(result, indent=1) + "\n")
        return OPIO({"result": out, "row": leaderboard_row(result)})


class MakeLeaderboard(OP):
    """Per-model results -> leaderboard.json/.csv, results.json and report.html."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({"results": Artifact(List[Path])})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"leaderboard": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        results = [json.loads(Path(p).read_text()) for p in ip["results"]]
        write_leaderboard(results, Path("leaderboard"))
        return OPIO({"leaderboard": Path("leaderboard")})
