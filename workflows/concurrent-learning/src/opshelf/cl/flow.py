"""The loop as recursive dflow Steps (as DPGEN2 builds it).

    cl-loop(state)                                   key iter-NNNNNN--loop
      block: train -> explore -> select -> label, label-test -> collect-data -> score-models
             (train, explore, label, label-test: small Steps around the prep/run fan-outs)
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
    argo_len,
    argo_sequence,
    if_expression,
)
from dflow.python import OP

from opshelf.core.dflow_build import make_step
from opshelf.core.execution import StepsConfig

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
                 "min_success_ratio", "keep_files")
_BLOCK_ARTS = ("init_data", "iter_data", "init_models", "confs", "test_data")
_LOOP_PARAMS = (*_BLOCK_PARAMS, "state", "convergence", "stages_explore", "seed",
                "max_iterations")
_OPTIONAL_ARTS = ("iter_data", "init_models", "test_data")


def _slices(inputs_p: list[str], inputs_a: list[str], out_p: list[str], out_a: list[str]
            ) -> dict[str, Any]:
    return {"slices": "int('{{item}}')", "input_parameter": inputs_p,
            "input_artifact": inputs_a, "output_parameter": out_p, "output_artifact": out_a}


def _fanout(of: Any) -> Any:
    return argo_sequence(argo_len(of), format="%06d")


def _sub_steps(name: str, params: tuple[str, ...], arts: tuple[str, ...],
               outs: tuple[str, ...]) -> Steps:
    """An empty Steps template with these inputs and output artifacts."""
    return Steps(name=name,
                 inputs=Inputs(parameters={p: InputParameter() for p in params},
                               artifacts={a: InputArtifact(optional=a in _OPTIONAL_ARTS)
                                          for a in arts}),
                 outputs=Outputs(artifacts={a: OutputArtifact() for a in outs}))


@dataclass
class _Wiring:
    """What the sub-Steps builders share: the injected OPs, step settings and mode."""

    ops: ClOps
    steps: StepsConfig
    mode: Any
    numb_models: int | None

    def step(self, name: str, op: type[OP], *, settings: str | None = None,
             **kw: Any) -> Step:
        return make_step(name, op, self.steps.for_step(settings or name), mode=self.mode, **kw)

    def train(self) -> Steps:
        """prep-train -> run-train (one slice per model) -> artifact `model`."""
        train = _sub_steps("cl-train", ("block_id", "template", "numb_models", "type_map",
                                        "train_seed", "train_config"),
                           ("init_data", "iter_data", "init_models"), ("model",))
        tp, ta = train.inputs.parameters, train.inputs.artifacts
        prep = self.step(
            STEP_PREP_TRAIN, self.ops.prep_train, key=f"{tp['block_id']}--{STEP_PREP_TRAIN}",
            parameters={"template": tp["template"], "numb_models": tp["numb_models"],
                        "type_map": tp["type_map"], "seed": tp["train_seed"]},
            artifacts={"data": ta["init_data"]})
        run = self.step(
            STEP_RUN_TRAIN, self.ops.run_train,
            key=f"{tp['block_id']}--{STEP_RUN_TRAIN}-{{{{item}}}}",
            parameters={"config": tp["train_config"],
                        "task_name": prep.outputs.parameters["task_names"]},
            artifacts={"task_path": prep.outputs.artifacts["task_paths"],
                       "init_data": ta["init_data"], "iter_data": ta["iter_data"],
                       "init_model": ta["init_models"]},
            slices=_slices(["task_name"], ["task_path", "init_model"], ["report"],
                           ["model", "lcurve", "log", "script", "metrics"]),
            with_sequence=_fanout(prep.outputs.parameters["task_names"]),
            n_items=self.numb_models)
        train.add(prep)
        train.add(run)
        train.outputs.artifacts["model"]._from = run.outputs.artifacts["model"]
        return train

    def explore(self) -> Steps:
        """prep-explore -> run-explore (one slice per batch of MD runs) -> `trajs`."""
        explore = _sub_steps("cl-explore", ("block_id", "explore", "type_map",
                                            "tasks_per_batch"), ("confs", "models"), ("trajs",))
        xp, xa = explore.inputs.parameters, explore.inputs.artifacts
        prep = self.step(
            STEP_PREP_EXPLORE, self.ops.prep_explore,
            key=f"{xp['block_id']}--{STEP_PREP_EXPLORE}",
            parameters={"explore": xp["explore"], "type_map": xp["type_map"],
                        "tasks_per_batch": xp["tasks_per_batch"]},
            artifacts={"confs": xa["confs"], "models": xa["models"]})
        run = self.step(
            STEP_RUN_EXPLORE, self.ops.run_explore,
            key=f"{xp['block_id']}--{STEP_RUN_EXPLORE}-{{{{item}}}}",
            parameters={"batch_name": prep.outputs.parameters["batch_names"]},
            artifacts={"batch_path": prep.outputs.artifacts["batch_paths"]},
            slices=_slices(["batch_name"], ["batch_path"], ["report"], ["trajs"]),
            with_sequence=_fanout(prep.outputs.parameters["batch_names"]))
        explore.add(prep)
        explore.add(run)
        explore.outputs.artifacts["trajs"]._from = run.outputs.artifacts["trajs"]
        return explore

    def label(self, suffix: str = "") -> Steps:
        """prep-fp -> run-fp (one slice per frame) -> collect-fp -> `data`, `summary`.
        `suffix` tells the keys of a second labelling (the held-out set) from the first."""
        label = _sub_steps(f"cl-label{suffix}", ("block_id", "fp_engine", "fp_task",
                                                 "type_map", "keep_files",
                                                 "min_success_ratio"),
                           ("frames",), ("data", "summary"))
        lp, la = label.inputs.parameters, label.inputs.artifacts
        prep = self.step(
            STEP_PREP_FP, self.ops.prep_fp, key=f"{lp['block_id']}--{STEP_PREP_FP}{suffix}",
            parameters={"engine": lp["fp_engine"], "task": lp["fp_task"],
                        "fmt": "deepmd/npy", "type_map": lp["type_map"]},
            artifacts={"frames": la["frames"]})
        run = self.step(
            STEP_RUN_FP, self.ops.run_fp,
            key=f"{lp['block_id']}--{STEP_RUN_FP}{suffix}-{{{{item}}}}",
            parameters={"task_name": prep.outputs.parameters["task_names"],
                        "keep_files": lp["keep_files"],
                        "program_retries": self.steps.for_step(STEP_RUN_FP).retries},
            artifacts={"task_path": prep.outputs.artifacts["task_paths"]},
            slices=_slices(["task_name"], ["task_path"], ["report"],
                           ["labeled_data", "raw_output"]),
            with_sequence=_fanout(prep.outputs.parameters["task_names"]))
        collect = self.step(
            STEP_COLLECT_FP, self.ops.collect_fp,
            key=f"{lp['block_id']}--{STEP_COLLECT_FP}{suffix}",
            parameters={"type_map": lp["type_map"],
                        "min_success_ratio": lp["min_success_ratio"]},
            artifacts={"labeled_data": run.outputs.artifacts["labeled_data"]})
        for s in (prep, run, collect):
            label.add(s)
        label.outputs.artifacts["data"]._from = collect.outputs.artifacts["data"]
        label.outputs.artifacts["summary"]._from = collect.outputs.artifacts["summary"]
        return label


class ClBlock(Steps):
    """One iteration: train -> explore -> select -> label (+ label the held-out sample) ->
    collect-data -> score the models on the held-out set.

    Each fan-out (run-train, run-explore, run-fp) sits in a small Steps of its own (train,
    explore, label; DPGEN2's prep-run super-OPs): dflow's local mode deep-copies and pickles
    the fan-out's whole enclosing Steps, finished steps included, for every slice; in one flat
    block that cost ~10 s before each run-fp fan-out (measured, benchmarks/cl_demo_time.py).

    The held-out set: select draws it (the first iteration only, when the config samples
    one), `label-test` labels it (no task otherwise), and `score-models` scores this
    iteration's models on whichever set exists and hands it on as `test_data`."""

    def __init__(self, name: str, ops: ClOps, steps: StepsConfig, *, mode: Any = "local",
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
        ip, ia = self.inputs.parameters, self.inputs.artifacts
        block = ip["block_id"]
        wiring = _Wiring(ops, steps, mode, numb_models)
        arts: dict[str, Any] = {}

        def sub(name: str, template: Steps, **given: Any) -> Step:
            return Step(name, template, key=f"{block}--{name}",
                        parameters={p: ip[p] for p in template.inputs.parameters},
                        artifacts={a: given[a] if a in given else ia[a] if a in ia else arts[a]
                                   for a in template.inputs.artifacts})

        train_step = sub("train", wiring.train())
        arts["models"] = train_step.outputs.artifacts["model"]
        explore_step = sub("explore", wiring.explore())
        select = wiring.step(
            STEP_SELECT, ops.select_confs, key=f"{block}--{STEP_SELECT}",
            parameters={"select": ip["select"], "type_map": ip["type_map"]},
            artifacts={"trajs": explore_step.outputs.artifacts["trajs"]})
        label_step = sub("label", wiring.label(), frames=select.outputs.artifacts["confs"])
        label_test = sub(f"label{TEST_SUFFIX}", wiring.label(TEST_SUFFIX),
                         frames=select.outputs.artifacts["test_confs"])
        collect_data = wiring.step(
            STEP_COLLECT_DATA, ops.collect_data, key=f"{block}--{STEP_COLLECT_DATA}",
            parameters={"block_id": block},
            artifacts={"iter_data": ia["iter_data"],
                       "labeled_data": label_step.outputs.artifacts["data"]})
        score = wiring.step(
            STEP_SCORE, ops.score_op, key=f"{block}--{STEP_SCORE}",
            artifacts={"models": train_step.outputs.artifacts["model"],
                       "init_data": ia["init_data"], "iter_data": ia["iter_data"],
                       "test_data": ia["test_data"],
                       "new_test_data": label_test.outputs.artifacts["data"]})
        for s in (train_step, explore_step, select, label_step, label_test, collect_data,
                  score):
            self.add(s)
        out = self.outputs
        out.artifacts["models"]._from = train_step.outputs.artifacts["model"]
        out.artifacts["iter_data"]._from = collect_data.outputs.artifacts["iter_data"]
        out.artifacts["select_report"]._from = select.outputs.artifacts["report"]
        out.artifacts["fp_summary"]._from = label_step.outputs.artifacts["summary"]
        out.artifacts["trajs"]._from = explore_step.outputs.artifacts["trajs"]
        out.artifacts["test_data"]._from = score.outputs.artifacts["test_data"]
        out.artifacts["test_score"]._from = score.outputs.artifacts["score"]
        out.parameters["n_selected"].value_from_parameter = select.outputs.parameters["n_selected"]


#: outputs of the whole loop (the final iteration's): what an Argo run's results step reads
LOOP_OUTPUTS = ("models", "iter_data", "state_file", "test_data")


class ClLoop(Steps):
    """block -> scheduler -> (when not done) the next ClLoop: recursion, as in DPGEN2.

    Outputs (``LOOP_OUTPUTS``), as DPGEN2's loop hands them out: the last iteration's
    models and its data set (every iteration's labels), and the final loop state (the
    history); taken from this level when its scheduler ends the loop, else from `next`."""

    def __init__(self, name: str, ops: ClOps, steps: StepsConfig, *, mode: Any = "local",
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
        block = Step("block", block_tpl, key=f"{ip['block_id']}--block",
                     parameters={p: ip[p] for p in _BLOCK_PARAMS},
                     artifacts={a: ia[a] for a in _BLOCK_ARTS})
        scheduler = make_step(
            STEP_SCHEDULER, ops.scheduler, steps.for_step(STEP_SCHEDULER), mode=mode,
            key=f"{ip['block_id']}--{STEP_SCHEDULER}",
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
            "next", self, key=f"{sched_out['block_id']}--loop",
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
