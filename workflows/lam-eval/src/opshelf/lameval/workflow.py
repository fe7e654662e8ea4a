"""`lameval`: evaluate large atomic models side by side, LAMBench-style.

    evaluate-<model> (one step per model: accuracy, delta, properties, md, efficiency)
        -> leaderboard (leaderboard.json/.csv, results.json, report.html)

One step per model loads the model once for all its tasks (loading CHGNet or SevenNet costs
seconds); models run in parallel steps. Results land in `<run>/results/`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from opshelf.core.config import StrictModel
from opshelf.core.errors import MissingInputError
from opshelf.core.execution import StepsConfig
from opshelf.core.workflow import BuildContext, Outcome, WorkflowPlugin
from opshelf.lameval.data import DatasetSpec, reference_datasets
from opshelf.lameval.predict import ModelSpec
from opshelf.lameval.tasks import TasksConfig

if TYPE_CHECKING:
    from dflow import Workflow

STEP_EVALUATE = "evaluate"
STEP_LEADERBOARD = "leaderboard"


def evaluate_step_id(model_name: str) -> str:
    """Step name and key of a model's evaluation: dflow/Argo keys allow only lower-case
    alphanumerics and '-' (a model named 'chgnet-0.3.0' would be rejected)."""
    return f"{STEP_EVALUATE}-{model_name}".lower().replace("_", "-").replace(".", "-")


class LamEvalConfig(StrictModel):
    """Configuration of the `lameval` workflow."""

    models: list[ModelSpec] = Field(min_length=1, description="the models to evaluate, each "
                                    "an ASE calculator with a name")
    datasets: list[DatasetSpec] | None = Field(
        None, description="labelled data sets; the shipped CP2K PBE reference set when unset")
    tasks: TasksConfig = Field(default_factory=TasksConfig,
                               description="which evaluations run, with their parameters")
    steps: StepsConfig = Field(default_factory=StepsConfig, description="how each step runs: "
                               "`default` and overrides for evaluate (one step per model) and "
                               "leaderboard")

    @model_validator(mode="after")
    def _unique_names(self) -> LamEvalConfig:
        for what, names in (("models", [m.name for m in self.models]),
                            ("datasets", [d.name for d in self.datasets or []])):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what}: names must be unique, repeated: {repeated}")
        return self


class LamEvalWorkflow(WorkflowPlugin[LamEvalConfig]):
    name = "lameval"
    description = "evaluate large atomic models (accuracy, Delta, properties, MD, speed)"
    Config = LamEvalConfig

    def step_names(self, config: LamEvalConfig) -> list[str]:
        return [STEP_EVALUATE, STEP_LEADERBOARD]

    def datasets(self, config: LamEvalConfig, ctx: BuildContext) -> list[DatasetSpec]:
        if config.datasets is None:
            return reference_datasets()
        resolved = []
        for spec in config.datasets:
            path = spec.path.expanduser()
            path = path if path.is_absolute() else (ctx.config_dir / path)
            if not path.exists():
                raise MissingInputError(f"datasets: {spec.name}: not found: {spec.path} "
                                        f"(looked at {path})")
            resolved.append(spec.model_copy(update={"path": path.resolve()}))
        return resolved

    def check(self, config: LamEvalConfig, ctx: BuildContext) -> None:
        super().check(config, ctx)
        from opshelf.core.models import resolve_calculator_factory
        from opshelf.lameval.data import load_frames

        for model in config.models:
            resolve_calculator_factory(model.calculator)  # unknown name / module: an error now
        if config.tasks.accuracy.enabled:
            for spec in self.datasets(config, ctx):
                load_frames(spec.path, spec.fmt)  # unreadable or unlabelled: an error now

    def build(self, config: LamEvalConfig, ctx: BuildContext) -> Workflow:
        from dflow import Workflow, upload_artifact

        from opshelf.core.dflow_build import make_step
        from opshelf.lameval.ops import EvaluateModel, MakeLeaderboard

        datasets = self.datasets(config, ctx) if config.tasks.accuracy.enabled else []
        data_artifact = upload_artifact([d.path for d in datasets]) if datasets else None
        specs = [d.model_dump(mode="json", exclude={"path"}) for d in datasets]
        workflow = Workflow(name="lameval", id=ctx.workflow_id)
        evaluations = []
        for model in config.models:
            step_id = evaluate_step_id(model.name)
            step = make_step(
                step_id, EvaluateModel, config.steps.for_step(STEP_EVALUATE),
                key=step_id, mode=ctx.mode,
                artifacts={"datasets": data_artifact} if data_artifact else {},
                parameters={"model": model.model_dump(mode="json"),
                            "tasks": config.tasks.model_dump(mode="json"),
                            "dataset_specs": specs, "config_dir": str(ctx.config_dir)})
            evaluations.append(step)
        workflow.add(evaluations)
        board = make_step(
            STEP_LEADERBOARD, MakeLeaderboard, config.steps.for_step(STEP_LEADERBOARD),
            key=STEP_LEADERBOARD, mode=ctx.mode,
            artifacts={"results": [s.outputs.artifacts["result"] for s in evaluations]})
        workflow.add(board)
        return workflow

    def results_inputs(self, config: LamEvalConfig, workflow: Workflow) -> dict[str, Any]:
        """An exported (Argo) run ends with core's results step on the leaderboard."""
        from opshelf.core.dflow_build import find_step

        return {"leaderboard": find_step(workflow, STEP_LEADERBOARD).outputs.artifacts[
            "leaderboard"]}

    def write_results(self, config: LamEvalConfig, inputs: dict[str, Path],
                      results_dir: Path) -> list[str]:
        outputs, results = inputs, results_dir
        if results.exists():
            shutil.rmtree(results)
        shutil.copytree(outputs["leaderboard"], results)
        return summary_lines(json.loads((results / "leaderboard.json").read_text()),
                             json.loads((results / "results.json").read_text()), results)

    def outcome(self, config: LamEvalConfig, ctx: BuildContext) -> Outcome:
        """Every model evaluated: the goal is reached. The verdict line (the run's last, and
        in `opshelf status`/`runs`) names the leader and counts the failed tasks, so that
        "0 failed" steps never stands alone when a model could not do some tasks."""
        from opshelf.lameval.leaderboard import answer_text

        results = ctx.run_dir / "results"
        return Outcome(True, answer_text(
            json.loads((results / "leaderboard.json").read_text()),
            json.loads((results / "results.json").read_text())).replace(", explained below", ""))

    def report(self, run_dir: Path) -> Path:
        from opshelf.lameval.leaderboard import write_leaderboard

        results = Path(run_dir) / "results"
        if not (results / "results.json").is_file():
            raise MissingInputError(f"{results / 'results.json'} not found: the run has not "
                                    f"finished (opshelf status {run_dir})")
        return write_leaderboard(json.loads((results / "results.json").read_text()),
                                 results)["html"]

    def compare(self, run_dirs: Sequence[Path]) -> str:
        from opshelf.lameval.leaderboard import compare_runs

        return compare_runs({Path(d).name: json.loads(
            (Path(d) / "results" / "results.json").read_text()) for d in run_dirs})

    def add_cli_commands(self, commands: argparse._SubParsersAction) -> None:
        """`opshelf lameval models`: the installed models (the `opshelf.models` group)."""
        parser = commands.add_parser("models", help="list the models installed for lameval")
        parser.set_defaults(func=list_models)


def summary_lines(board: dict[str, Any], results: list[dict[str, Any]], where: Path
                  ) -> list[str]:
    """The run's last lines: the answer (failed tasks counted), where the files are, one
    rounded line per model with its failures explained."""
    from opshelf.core.report import fmt
    from opshelf.lameval.leaderboard import answer_text, failure_lines

    lines = [answer_text(board, results),
             f"leaderboard of {len(board['models'])} model(s): {where / 'leaderboard.csv'}",
             f"report: {where / 'report.html'}"]
    by_name = {r["model"]["name"]: r for r in results}
    for row in board["models"]:
        lines.append(f"  {row['model']}: M_FF {fmt(row['generalizability_error'])}, "
                     f"Delta {fmt(row['mean_delta_meV_per_atom'])} meV/atom, "
                     f"M_IS {fmt(row['instability'], 2)}, "
                     f"{fmt(row['us_per_atom_per_step'])} µs/atom/step, "
                     f"{row.get('n_failed_tasks', 0)} failed tasks")
        lines += [f"    {line}" for line in failure_lines(by_name.get(row["model"], {}))]
    return lines


def list_models(args: argparse.Namespace) -> int:
    from opshelf.core.plugins import describe

    models = describe("opshelf.models")
    width = max((len(n) for n in models), default=0)
    for name, where in models.items():
        print(f"{name.ljust(width)}  {where}", file=sys.stdout)
    print("(any ASE calculator also works by import path: module:factory)")
    return 0
