"""`cl`: the concurrent-learning workflow plugin (config, checks, build, collect, status, report)."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opshelf.cl.config import ClConfig, DataSource
from opshelf.cl.flow import STEP_NAMES
from opshelf.cl.inputs import (
    CONFS_DIR,
    INIT_DATA_DIR,
    TEST_DATA_DIR,
    init_energy_reference,
    init_model_files,
    load_template,
    read_labelled,
    resolve,
    with_models,
    write_init_data,
    write_labelled,
    write_stage_confs,
)
from opshelf.cl.scheduler import LoopState, iteration_inputs
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.keys import StepKey
from opshelf.core.workflow import BuildContext, Outcome, WorkflowPlugin

if TYPE_CHECKING:
    from dflow import Step, Workflow

    from opshelf.cl.flow import ClOps

#: block id of the fine-tuning before the loop (DPGEN2's finetune step: block "finetune"):
#: keys finetune--train, finetune--prep-train, finetune--run-train-NNNNNN
FINETUNE_BLOCK = "finetune"


def finetune_model_file(config: ClConfig, base: Path) -> Path | None:
    """`train.finetune_model` resolved against the config's folder and checked to exist."""
    given = config.train.finetune_model
    if given is None:
        return None
    path = resolve(given, base)
    if not path.is_file():
        raise MissingInputError(f"train.finetune_model: file not found: {given} (looked at "
                                f"{path})")
    return path


def _workflow_dir(run_dir: Path) -> Path:
    from opshelf.core.rundir import RunDir

    return RunDir(run_dir).workflow_dir()


class ClWorkflow(WorkflowPlugin[ClConfig]):
    name = "cl"
    description = "DPGEN2-style concurrent learning: train -> explore -> select -> label, repeated"
    Config = ClConfig
    #: OP classes of the loop; tests replace them with mocked subclasses
    ops: ClOps | None = None

    def step_names(self, config: ClConfig) -> list[str]:
        return list(STEP_NAMES)

    def check(self, config: ClConfig, ctx: BuildContext) -> None:
        super().check(config, ctx)
        from opshelf.core.engine import Task, TaskKind, load_engine
        from opshelf.train.script import ensemble_scripts

        init = [system for source in config.init_data
                for system in read_labelled(source, ctx.config_dir, config.type_map)]
        init_energy_reference(config, init)  # the init data identify the elements' energies
        for source in config.test.data:
            read_labelled(source, ctx.config_dir, config.type_map, "test.data")
        template = load_template(config, ctx.config_dir)
        ensemble_scripts(template, config.train.numb_models, config.type_map)
        init_model_files(config, ctx.config_dir)
        finetune_model_file(config, ctx.config_dir)
        if self.ops is not None:
            write_stage_confs(config, ctx.config_dir, None)
            return  # mocked OPs: no engine needs to exist
        _, explores = write_stage_confs(config, ctx.config_dir, None)
        for explore in explores:
            with_models(explore, ["model.pb"])
        engine = load_engine(config.fp.engine)
        if not engine.supports(config.fp.task):
            raise ConfigError(f"fp.engine {engine.name!r} cannot run task kind "
                              f"{config.fp.task.kind.value!r}")
        if config.fp.task.kind != TaskKind.SINGLE_POINT:
            raise ConfigError("fp.task.kind must be 'single_point' (labels of selected frames)")
        engine.check(config.type_map, Task())
        import os

        from opshelf.core.local.patches import step_path
        from opshelf.train.deepmd import check_dp

        # steps run with this interpreter's bin/ first on PATH: check dp as they will see it
        saved = os.environ.get("PATH")
        os.environ["PATH"] = step_path(saved)
        try:
            check_dp(config.train.dp, ctx.config_dir)
        finally:
            if saved is not None:
                os.environ["PATH"] = saved

    def build(self, config: ClConfig, ctx: BuildContext) -> Workflow:
        from dflow import Step, Workflow, upload_artifact

        from opshelf.cl.flow import ClLoop, ClOps

        inputs = ctx.run_dir / "inputs"
        init_dir, test_dir = inputs / INIT_DATA_DIR, inputs / TEST_DATA_DIR
        for folder in (init_dir, test_dir):
            if folder.exists():
                shutil.rmtree(folder)
        n_init = write_init_data(config, ctx.config_dir, init_dir)
        if config.test.data:
            write_labelled(config.test.data, config.type_map, ctx.config_dir, test_dir,
                           "test.data")
        conf_files, explores = write_stage_confs(config, ctx.config_dir, inputs / CONFS_DIR)
        template = load_template(config, ctx.config_dir)
        select = config.select.model_dump(mode="json")
        state = LoopState(
            n_init_frames=n_init,
            stage_names=[s.name or "" for s in config.explore.stages],
            n_test_sample=config.test.n_frames if config.test.sampled else 0)
        stages_explore = [explore.model_dump(mode="json") for explore in explores]
        first = iteration_inputs(state, stages_explore, select, config.seed)
        ops = self.ops or ClOps.real()
        loop = ClLoop("cl-loop", ops, config.steps, mode=ctx.mode,
                      numb_models=config.train.numb_models)
        parameters: dict[str, Any] = {
            **first,
            "template": template, "numb_models": config.train.numb_models,
            "type_map": config.type_map,
            "train_config": {
                "dp": config.train.dp.model_dump(mode="json"),
                # a given model and no iteration data yet: used as it is, as DPGEN2's
                # RunDPTrain.skip_training does. The given model is the user's
                # (train.init_models) in the first iteration, then the previous iteration's:
                # while no iteration has labelled anything the data are unchanged, and a
                # retrain only reshuffles seeds (the demo: 0.162 -> 0.167 eV/A on the same 6
                # frames, a minute of training)
                "init_model": {**config.train.loop_init_model().model_dump(mode="json"),
                               "given_model_first": True},
                "scaling": {"reference_frames": n_init if config.train.scale_steps else None,
                            "max_numb_steps": config.train.max_numb_steps}},
            "tasks_per_batch": config.explore.tasks_per_batch,
            "fp_engine": config.fp.engine.model_dump(mode="json"),
            "fp_task": config.fp.task.model_dump(mode="json"),
            "min_success_ratio": config.fp.min_success_ratio,
            "keep_files": config.fp.keep_files,
            "energy_reference": init_energy_reference(config, read_labelled(
                DataSource(path=str(init_dir)), init_dir, config.type_map)),
            "state": state.model_dump(mode="json"),
            "convergence": [s.convergence.model_dump(mode="json")
                            for s in config.explore.stages],
            "stages_explore": stages_explore, "seed": config.seed,
            "max_iterations": config.max_iterations,
        }
        artifacts = {"init_data": upload_artifact([init_dir]),
                     "confs": upload_artifact(conf_files)}
        if config.test.data:
            artifacts["test_data"] = upload_artifact([test_dir])
        if config.train.init_models:
            artifacts["init_models"] = upload_artifact(init_model_files(config, ctx.config_dir))
        finetune = self._finetune_step(config, ctx, ops, template, artifacts["init_data"])
        if finetune is not None:  # the loop's first models: the fine-tuned ones, as they are
            artifacts["init_models"] = finetune.outputs.artifacts["models"]
        step = Step("cl-loop", loop, key=str(StepKey(first["block_id"], "loop")),
                    parameters=parameters, artifacts=artifacts)
        workflow = Workflow(name="cl", id=ctx.workflow_id)
        if finetune is not None:
            workflow.add(finetune)
        workflow.add(step)
        return workflow

    def _finetune_step(self, config: ClConfig, ctx: BuildContext, ops: ClOps,
                       template: dict[str, Any], init_data: Any) -> Step | None:
        """DPGEN2's finetune step (its do_finetune): every ensemble member fine-tuned from
        `train.finetune_model` on the init data, before the loop (opshelf-train's
        PrepRunTrain with the run-train steps' settings); None without a finetune_model."""
        model = finetune_model_file(config, ctx.config_dir)
        if model is None:
            return None
        from dflow import Step, upload_artifact

        from opshelf.cl.flow import STEP_PREP_TRAIN, STEP_RUN_TRAIN
        from opshelf.train.ops import PrepRunTrain

        train = config.train
        prep_run = PrepRunTrain("cl-finetune", config.steps.for_step(STEP_PREP_TRAIN),
                                config.steps.for_step(STEP_RUN_TRAIN), mode=ctx.mode,
                                numb_models_hint=train.numb_models, prep_op=ops.prep_train,
                                run_op=ops.run_train)
        return Step("finetune", prep_run, key=str(StepKey.of(FINETUNE_BLOCK, "train")),
                    parameters={"block_id": FINETUNE_BLOCK, "template": template,
                                "numb_models": train.numb_models, "type_map": config.type_map,
                                "seed": config.seed,
                                "config": {"dp": train.dp.model_dump(mode="json"),
                                           "finetune": train.finetune.model_dump(mode="json")}},
                    artifacts={"init_data": init_data,
                               "finetune_model": upload_artifact(model)})

    def add_cli_commands(self, commands: argparse._SubParsersAction) -> None:
        """`opshelf cl import-dpgen2 input.json [-o config.yaml]`."""
        parser = commands.add_parser(
            "import-dpgen2", help="turn a DPGEN2 input.json into an opshelf cl config")
        parser.add_argument("input", help="the DPGEN2 input (JSON)")
        parser.add_argument("-o", "--output", help="the opshelf config to write (YAML; "
                            "default: print it); paths in it are relative to its folder")
        parser.set_defaults(func=import_dpgen2_command)

    # -- results ---------------------------------------------------------------------------
    def collect(self, config: ClConfig, ctx: BuildContext, workflow: Workflow) -> list[str]:
        """The local run's results, from its workflow folder (every step's outputs)."""
        from opshelf.cl.report import write_report
        from opshelf.cl.results import (
            final_models,
            held_out_data,
            iteration_data,
            labelling_cost,
            write_results_folder,
        )
        from opshelf.cl.status import latest_state, status_rows

        wfdir, run_dir = _workflow_dir(ctx.run_dir), ctx.run_dir
        return write_results_folder(
            run_dir / "results", final_models(wfdir), run_dir / "inputs" / "init-data",
            iteration_data(wfdir), latest_state(wfdir) or {}, status_rows(wfdir),
            lambda report: write_report(wfdir, report,
                                        title=f"concurrent learning: {run_dir.name}"),
            held_out_data(wfdir), labelling_cost(wfdir))

    def results_inputs(self, config: ClConfig, workflow: Workflow) -> dict[str, Any]:
        """What an Argo run's results step can reach of a recursive loop: the loop step's
        outputs (the final iteration's models and data set, the final state with every
        iteration's record) and the uploaded initial data. Not each iteration's steps: the
        learning curves and model deviations of earlier iterations stay in the artifact
        store, so that report has the table and the ratio plots only."""
        steps = workflow.entrypoint.steps if workflow.entrypoint is not None else []
        # build adds the loop step, after the fine-tuning step when there is one
        (loop,) = [s for s in steps if s.name == "cl-loop"]
        return {"models": loop.outputs.artifacts["models"],
                "iter_data": loop.outputs.artifacts["iter_data"],
                "state": loop.outputs.artifacts["state_file"],
                "test_data": loop.outputs.artifacts["test_data"],
                "init_data": loop.inputs.artifacts["init_data"].source}

    def write_results(self, config: ClConfig, inputs: dict[str, Path],
                      results_dir: Path) -> list[str]:
        """The results step of an Argo run: what `collect` writes, from the loop's outputs."""
        import json

        from opshelf.cl.report import render_report
        from opshelf.cl.results import write_results_folder

        def paths(value: Any) -> list[Path]:
            return [] if value is None else list(value) if isinstance(value, list) else [value]

        state = json.loads(Path(inputs["state"]).read_text())
        rows = [dict(r) for r in state.get("history", [])]  # a finished loop: every iteration
        return write_results_folder(
            results_dir, paths(inputs["models"]), Path(inputs["init_data"]),
            paths(inputs.get("iter_data")), state, rows,
            lambda report: render_report(state, rows, {}, {}, report,
                                         title="concurrent learning"),
            Path(inputs["test_data"]) if inputs.get("test_data") else None)

    def outcome(self, config: ClConfig, ctx: BuildContext) -> Outcome:
        """Converged when every stage met its criterion (the scheduler's verdict)."""
        from opshelf.cl.status import latest_state

        state = latest_state(_workflow_dir(ctx.run_dir)) or {}
        if not state.get("done"):
            return Outcome(False, "the loop ended without a final state (no scheduler "
                           "finished its last iteration)")
        return Outcome(bool(state.get("converged")), str(state.get("reason", "")))

    def status_table(self, run_dir: Path) -> str | None:
        from opshelf.cl.status import status_table

        return status_table(run_dir)

    def report(self, run_dir: Path) -> Path:
        from opshelf.cl.report import write_report

        out = run_dir / "results" / "report.html"
        write_report(_workflow_dir(run_dir), out, title=f"concurrent learning: {run_dir.name}")
        return out

    def compare(self, run_dirs: Sequence[Path]) -> str:
        from opshelf.cl.report import compare_runs

        return compare_runs({Path(d).name: history_json(Path(d)) for d in run_dirs})


def history_json(run_dir: Path) -> dict[str, Any]:
    from opshelf.cl.status import latest_state

    return latest_state(_workflow_dir(run_dir)) or {}



def import_dpgen2_command(args: argparse.Namespace) -> int:
    """Map, validate, write; warnings and errors on stderr naming the DPGEN2 keys."""
    import sys

    import yaml
    from pydantic import ValidationError

    from opshelf.cl.dpgen2 import import_dpgen2, write_import_files
    from opshelf.core.config import read_mapping
    from opshelf.core.errors import MissingInputError, UserError
    from opshelf.core.outputs import refuse_output_over_inputs

    source = Path(args.input)
    if not source.is_file():
        raise MissingInputError(f"DPGEN2 input not found: {source}")
    data = read_mapping(source)  # UTF-8 JSON/YAML whose top level is a mapping, else one line
    out = Path(args.output) if args.output else None
    if out is not None:
        refuse_output_over_inputs(out, [source])
    result = import_dpgen2(data, source.parent, (out or Path("x")).resolve().parent)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not result.errors:
        try:
            ClConfig.model_validate(result.config)
        except ValidationError as exc:
            result.errors.append(f"the mapped config does not validate: {exc}")
    if out is None and (result.files or result.links):
        result.errors.append("the config needs files written next to it "
                             f"({sorted(map(str, [*result.files, *result.links]))}): give -o")
    if result.errors:
        raise UserError(f"cannot import {source} ({len(result.errors)} problem(s), nothing "
                        "written):\n  " + "\n  ".join(result.errors))
    text = (f"# opshelf cl config imported from DPGEN2 input {source.name} "
            "(opshelf cl import-dpgen2)\n"
            + "".join(f"# warning: {w}\n" for w in result.warnings)
            + yaml.safe_dump(result.config, sort_keys=False, default_flow_style=None))
    if out is None:
        print(text, end="")
    else:
        write_import_files(result.files, result.links)
        out.write_text(text)
        print(f"wrote {out} ({len(result.warnings)} warning(s))", file=sys.stderr)
    return 0
