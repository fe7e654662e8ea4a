"""The loop as recursive dflow Steps (as DPGEN2 builds it).

    cl-loop(state)                                   key iter-NNNNNN--loop
      block: train -> explore -> select -> label, label-test -> collect-data -> score-models
             (train, explore, label, label-test: the packages' super-OPs, PrepRunTrain,
              PrepRunExplore, PrepRunFp, built on the injected OPs; keys of label-test's
              steps end in -test)
             keys iter-NNNNNN--prep-train, iter-NNNNNN--run-train-000001, ...,
                  iter-NNNNNN--run-fp-000013, iter-NNNNNN--run-fp-test-000002,
                  iter-NNNNNN--collect-data, iter-NNNNNN--score-models
      scheduler                                      key iter-NNNNNN--scheduler
      next: cl-loop(new state)   when scheduler's done == 0

Every OP class is injected through `ClOps`, so tests wire mocked subclasses into the same
graph. The loop state travels as a parameter (a small dict) from scheduler to scheduler.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dflow import (
    InputArtifact,
    InputParameter,
    Inputs,
    OutputArtifact,
    OutputParameter,
    Outputs,
    Step,
    Steps,
    if_expression,
)
from dflow.python import OP

from opshelf.core.dflow_build import Mode, make_step
from opshelf.core.execution import StepsConfig
from opshelf.core.keys import StepKey

STEP_PREP_TRAIN = "prep-train"
STEP_RUN_TRAIN = "run-train"
STEP_PREP_EXPLORE = "prep-explore"
STEP_RUN_EXPLORE = "run-explore"
STEP_SELECT = "select-confs"
STEP_PREP_FP = "prep-fp"
STEP_RUN_FP = "run-fp"
STEP_COLLECT_FP = "collect-fp"
STEP_COLLECT_DATA = "collect-data"
STEP_SCORE = "score-models"
STEP_SCHEDULER = "scheduler"
#: keys of the held-out set's labelling: the fp steps' names with this suffix (their
#: execution settings are the fp steps')
TEST_SUFFIX = "-test"
STEP_NAMES = [STEP_PREP_TRAIN, STEP_RUN_TRAIN, STEP_PREP_EXPLORE, STEP_RUN_EXPLORE, STEP_SELECT,
              STEP_PREP_FP, STEP_RUN_FP, STEP_COLLECT_FP, STEP_COLLECT_DATA, STEP_SCORE,
              STEP_SCHEDULER]
#: the phases of an iteration, for the status table and timing: step name -> phase
PHASE_OF_STEP = {STEP_PREP_TRAIN: "train", STEP_RUN_TRAIN: "train",
                 STEP_PREP_EXPLORE: "explore", STEP_RUN_EXPLORE: "explore",
                 STEP_SELECT: "select", STEP_PREP_FP: "label", STEP_RUN_FP: "label",
                 STEP_COLLECT_FP: "label", STEP_COLLECT_DATA: "label",
                 STEP_PREP_FP + TEST_SUFFIX: "test", STEP_RUN_FP + TEST_SUFFIX: "test",
                 STEP_COLLECT_FP + TEST_SUFFIX: "test", STEP_SCORE: "test",
                 STEP_SCHEDULER: "select"}


@dataclass
class ClOps:
    """The OP classes of the loop (real ones by default; tests inject mocked subclasses)."""

    prep_train: type[OP]
    run_train: type[OP]
    prep_explore: type[OP]
    run_explore: type[OP]
    select_confs: type[OP]
    prep_fp: type[OP]
    run_fp: type[OP]
    collect_fp: type[OP]
    collect_data: type[OP]
    scheduler: type[OP]
    score: type[OP] | None = None

    @classmethod
    def real(cls) -> ClOps:
        from opshelf.cl.ops import (
            CollectFpCl,
            CollectIterData,
            PrepExploreCl,
            PrepFpCl,
            Scheduler,
            ScoreCl,
        )
        from opshelf.fp.ops import RunFp
        from opshelf.md.ops import RunExplore, SelectConfs
        from opshelf.train.ops import PrepTrain, RunTrain

        return cls(PrepTrain, RunTrain, PrepExploreCl, RunExplore, SelectConfs, PrepFpCl, RunFp,
                   CollectFpCl, CollectIterData, Scheduler, ScoreCl)

    @property
    def score_op(self) -> type[OP]:
        if self.score is not None:
            return self.score
        from opshelf.cl.ops import ScoreCl

        return ScoreCl


_BLOCK_PARAMS = ("block_id", "template", "numb_models", "type_map", "train_seed", "train_config",
                 "explore", "tasks_per_batch", "select", "fp_engine", "fp_task",
                 "min_success_ratio", "keep_files", "energy_reference")
_BLOCK_ARTS = ("init_data", "iter_data", "init_models", "confs", "test_data")
_LOOP_PARAMS = (*_BLOCK_PARAMS, "state", "convergence", "stages_explore", "seed",
                "max_iterations")
_OPTIONAL_ARTS = ("iter_data", "init_models", "test_data")


@dataclass
class ClSuperOps:
    """The pieces one iteration is composed of (DPGEN2's block: injected super-OPs):
    the packages' super-OPs (opshelf-train's PrepRunTrain, opshelf-md's PrepRunExplore,
    opshelf-fp's PrepRunFp twice: the new frames and the held-out sample) built on the
    injected OP classes, and the single-step OPs."""

    train: Steps
    explore: Steps
    label: Steps
    label_test: Steps
    select_confs: type[OP]
    collect_data: type[OP]
    score: type[OP]

    @classmethod
    def build(cls, ops: ClOps, steps: StepsConfig, *, mode: Mode = "local",
              numb_models: int | None = None) -> ClSuperOps:
        from opshelf.fp.ops import PrepRunFp
        from opshelf.md.ops import PrepRunExplore
        from opshelf.train.ops import PrepRunTrain

        def label(suffix: str) -> PrepRunFp:
            # the held-out labelling runs with the fp steps' settings, keyed apart by suffix
            return PrepRunFp(
                f"cl-label{suffix}", *(steps.for_step(s) for s in (STEP_PREP_FP, STEP_RUN_FP,
                                                                     STEP_COLLECT_FP)),
                mode=mode, prep_op=ops.prep_fp, run_op=ops.run_fp, collect_op=ops.collect_fp,
                key_suffix=suffix)

        return cls(
            train=PrepRunTrain("cl-train", steps.for_step(STEP_PREP_TRAIN),
                               steps.for_step(STEP_RUN_TRAIN), mode=mode,
                               numb_models_hint=numb_models, prep_op=ops.prep_train,
                               run_op=ops.run_train),
            explore=PrepRunExplore("cl-explore", steps.for_step(STEP_PREP_EXPLORE),
                                   steps.for_step(STEP_RUN_EXPLORE), mode=mode,
                                   prep_op=ops.prep_explore, run_op=ops.run_explore,
                                   prep_artifacts=("confs", "models")),
            label=label(""), label_test=label(TEST_SUFFIX),
            select_confs=ops.select_confs, collect_data=ops.collect_data, score=ops.score_op)


class ClBlock(Steps):
    """One iteration: train -> explore -> select -> label (+ label the held-out sample) ->
    collect-data -> score the models on the held-out set, composed of `ClSuperOps`.

    Each fan-out (run-train, run-explore, run-fp) sits in its super-OP (a small Steps):
    dflow's local mode deep-copies and pickles the fan-out's whole enclosing Steps, finished
    steps included, for every slice; in one flat block that cost ~10 s before each run-fp
    fan-out (measured, benchmarks/cl_demo_time.py).

    The held-out set: select draws it (the first iteration only, when the config samples
    one), `label-test` labels it (no task otherwise), and `score-models` scores this
    iteration's models on whichever set exists and hands it on as `test_data`."""

    def __init__(self, name: str, ops: ClOps, steps: StepsConfig, *, mode: Mode = "local",
                 numb_models: int | None = None) -> None:
        super().__init__(
            name=name,
            inputs=Inputs(parameters={p: InputParameter() for p in _BLOCK_PARAMS},
                          artifacts={a: InputArtifact(optional=a in _OPTIONAL_ARTS)
                                     for a in _BLOCK_ARTS}),
            outputs=Outputs(
                parameters={"n_selected": OutputParameter()},
                artifacts={a: OutputArtifact() for a in (
                    "models", "iter_data", "select_report", "fp_summary", "trajs",
                    "test_data", "test_score")}),
        )
        parts = ClSuperOps.build(ops, steps, mode=mode, numb_models=numb_models)
        self.steps_config, self.mode = steps, mode
        ip, ia = self.inputs.parameters, self.inputs.artifacts
        train = self._sub("train", parts.train, parameters={
            "template": ip["template"], "numb_models": ip["numb_models"],
            "type_map": ip["type_map"], "seed": ip["train_seed"], "config": ip["train_config"]},
            artifacts={a: ia[a] for a in ("init_data", "iter_data", "init_models")})
        models = train.outputs.artifacts["models"]
        explore = self._sub("explore", parts.explore, parameters={
            p: ip[p] for p in ("explore", "type_map", "tasks_per_batch")},
            artifacts={"confs": ia["confs"], "models": models})
        select = self._op(STEP_SELECT, parts.select_confs, parameters={
            "select": ip["select"], "type_map": ip["type_map"]},
            artifacts={"trajs": explore.outputs.artifacts["trajs"]})
        labels = {}
        for name, template, frames in (("label", parts.label, "confs"),
                                       (f"label{TEST_SUFFIX}", parts.label_test, "test_confs")):
            labels[name] = self._sub(name, template, parameters={
                "engine": ip["fp_engine"], "task": ip["fp_task"], "fmt": "deepmd/npy",
                **{p: ip[p] for p in ("type_map", "keep_files", "min_success_ratio",
                                      "energy_reference")}},
                artifacts={"frames": select.outputs.artifacts[frames]})
        label, label_test = labels["label"], labels[f"label{TEST_SUFFIX}"]
        collect_data = self._op(STEP_COLLECT_DATA, parts.collect_data, parameters={
            "block_id": ip["block_id"]}, artifacts={
            "iter_data": ia["iter_data"], "labeled_data": label.outputs.artifacts["data"]})
        score = self._op(STEP_SCORE, parts.score, artifacts={
            "models": models, **{a: ia[a] for a in ("init_data", "iter_data", "test_data")},
            "new_test_data": label_test.outputs.artifacts["data"]})
        self._wire_outputs(models=models, iter_data=collect_data.outputs.artifacts["iter_data"],
                           select_report=select.outputs.artifacts["report"],
                           fp_summary=label.outputs.artifacts["summary"],
                           trajs=explore.outputs.artifacts["trajs"],
                           test_data=score.outputs.artifacts["test_data"],
                           test_score=score.outputs.artifacts["score"])
        self.outputs.parameters["n_selected"].value_from_parameter = \
            select.outputs.parameters["n_selected"]

    def _sub(self, name: str, template: Steps, *, parameters: dict[str, Any],
             artifacts: dict[str, Any]) -> Step:
        """A super-OP step of the block, keyed `<block_id>--<name>`; its steps' keys share
        the block id."""
        block = self.inputs.parameters["block_id"]
        step = Step(name, template, key=str(StepKey.of(block, name)),
                    parameters={"block_id": block, **parameters}, artifacts=artifacts)
        self.add(step)
        return step

    def _op(self, name: str, op: type[OP], *, parameters: dict[str, Any] | None = None,
            artifacts: dict[str, Any]) -> Step:
        """An OP step of the block with its `steps` settings, keyed `<block_id>--<name>`."""
        step = make_step(name, op, self.steps_config.for_step(name), mode=self.mode,
                         key=StepKey.of(self.inputs.parameters["block_id"], name),
                         parameters=parameters, artifacts=artifacts)
        self.add(step)
        return step

    def _wire_outputs(self, **sources: Any) -> None:
        for name, source in sources.items():
            self.outputs.artifacts[name]._from = source


#: outputs of the whole loop (the final iteration's): what an Argo run's results step reads
LOOP_OUTPUTS = ("models", "iter_data", "state_file", "test_data")


class ClLoop(Steps):
    """block -> scheduler -> (when not done) the next ClLoop: recursion, as in DPGEN2.

    Outputs (``LOOP_OUTPUTS``), as DPGEN2's loop hands them out: the last iteration's
    models and its data set (every iteration's labels), and the final loop state (the
    history); taken from this level when its scheduler ends the loop, else from `next`."""

    def __init__(self, name: str, ops: ClOps, steps: StepsConfig, *, mode: Mode = "local",
                 numb_models: int | None = None) -> None:
        super().__init__(
            name=name,
            inputs=Inputs(parameters={p: InputParameter() for p in _LOOP_PARAMS},
                          artifacts={a: InputArtifact(optional=a in _OPTIONAL_ARTS)
                                     for a in _BLOCK_ARTS}),
            outputs=Outputs(artifacts={a: OutputArtifact() for a in LOOP_OUTPUTS}),
        )
        ip, ia = self.inputs.parameters, self.inputs.artifacts
        block_tpl = ClBlock("cl-block", ops, steps, mode=mode, numb_models=numb_models)
        block = Step("block", block_tpl, key=str(StepKey.of(ip["block_id"], "block")),
                     parameters={p: ip[p] for p in _BLOCK_PARAMS},
                     artifacts={a: ia[a] for a in _BLOCK_ARTS})
        scheduler = make_step(
            STEP_SCHEDULER, ops.scheduler, steps.for_step(STEP_SCHEDULER), mode=mode,
            key=StepKey.of(ip["block_id"], STEP_SCHEDULER),
            parameters={p: ip[p] for p in ("state", "convergence", "stages_explore", "select",
                                           "seed", "max_iterations")},
            artifacts={"select_report": block.outputs.artifacts["select_report"],
                       "fp_summary": block.outputs.artifacts["fp_summary"],
                       "test_score": block.outputs.artifacts["test_score"]})
        sched_out = scheduler.outputs.parameters
        following = {p: ip[p] for p in _LOOP_PARAMS}
        following.update(state=sched_out["state"], block_id=sched_out["block_id"],
                         explore=sched_out["explore"], select=sched_out["select"],
                         train_seed=sched_out["train_seed"])
        next_loop = Step(
            "next", self, key=str(StepKey.of(sched_out["block_id"], "loop")),
            parameters=following,
            artifacts={"init_data": ia["init_data"], "confs": ia["confs"],
                       "iter_data": block.outputs.artifacts["iter_data"],
                       "init_models": block.outputs.artifacts["models"],
                       "test_data": block.outputs.artifacts["test_data"]},
            when=f"{sched_out['done']} == 0")
        self.add(block)
        self.add(scheduler)
        self.add(next_loop)
        # Argo: `expr` with sprig; debug mode rewrites `a ? b : c` and sprig.atoi to Python
        done = f"sprig.atoi({sched_out['done'].expr}) == 1"
        here = {"models": block.outputs.artifacts["models"],
                "iter_data": block.outputs.artifacts["iter_data"],
                "state_file": scheduler.outputs.artifacts["state_file"],
                "test_data": block.outputs.artifacts["test_data"]}
        for name in LOOP_OUTPUTS:
            self.outputs.artifacts[name].from_expression = if_expression(
                _if=done, _then=here[name], _else=next_loop.outputs.artifacts[name])
