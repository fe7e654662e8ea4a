"""dflow OPs of the FP contract, on core's generic engine-task OPs.

- `PrepFp`: frames (files in any dpdata format) -> one FP task dir per frame. Every
  element's pseudopotential / basis / POTCAR is checked before the first dir is written.
- `RunFp`: one task dir -> `labeled_data` (deepmd/npy), the raw output files asked for
  (`keep_files`) and a report; a failed calculation is recorded, not raised. A program
  killed from outside is re-run up to `program_retries` times first (core's
  `run_task_report`, the one run driver, which `label_frames` uses too).
- `PrepRunFp`: the super-OP prep-fp -> run-fp (sliced fan-out) -> collect-fp, with step keys
  `<block_id>--prep-fp`, `<block_id>--run-fp-NNNNNN`, `<block_id>--collect-fp`.

Retries. The run step's `retries` (StepExecution) means two bounded things: `program_retries`
of RunFp (a program killed by SIGKILL/SIGTERM is re-run inside the step, task by task, so a
group's good tasks do not run again), and dflow's retry of the step itself when the OP
crashes. A task that still fails is recorded in `failures` with its reason and log tail, and
collect-fp decides with `min_success_ratio` (DPGEN2's rule: a failed FP task is recorded,
not retried forever).
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

from pathlib import Path
from typing import List

import dpdata
from dflow.python import OP, OPIO, FatalError, OPIOSign, Parameter

from opshelf.core.dflow_build import Mode
from opshelf.core.engine import TASK_FILE, Engine, Task, read_task
from opshelf.core.errors import MissingInputError
from opshelf.core.execution import StepExecution
from opshelf.core.fanout import (
    REQUIRED,
    Fan,
    FanOut,
    FanOutSteps,
    Stage,
    from_collect,
    from_input,
    from_prep,
    from_run,
)
from opshelf.core.ops import CollectLabels, PrepEngineTasks, RunEngineTask
from opshelf.core.ops.labelling import run_task_report, union_type_map
from opshelf.fp.base import FpEngine

STEP_PREP = "prep-fp"
STEP_RUN = "run-fp"
STEP_COLLECT = "collect-fp"


class PrepFp(PrepEngineTasks):
    """Frames -> FP task dirs (inputs of the engine, the frame, the task). Every element's
    files (pseudopotential, basis, POTCAR) are checked before the first dir is written."""

    def check_frames(self, engine: Engine, task: Task, frames: List[dpdata.System]) -> None:
        if isinstance(engine, FpEngine):  # files only: the program runs elsewhere
            engine.check_inputs(union_type_map(frames), task)


class RunFp(RunEngineTask):
    """One FP task dir -> `labeled_data` (deepmd/npy), `raw_output` (the run dir, holding
    the files `keep_files` matches; by default the engine's inputs and logs) and `report`
    (status, reason and log tail on failure, attempts).

    A missing executable fails the step (FatalError) before anything runs: every task would
    fail the same way, which is a setup problem, not a result."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        sign = super().get_input_sign()
        sign["keep_files"] = Parameter(List[str], default=[])
        sign["program_retries"] = Parameter(int, default=0)
        return sign

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        name, task_path = ip["task_name"], Path(ip["task_path"])
        if not (task_path / TASK_FILE).is_file():
            raise FatalError(f"{task_path}: not a prepared task dir (no {TASK_FILE})")
        loaded = read_task(task_path)  # the engine, loaded once for the whole task
        if isinstance(loaded[0], FpEngine):
            try:
                loaded[0].check_program()
            except MissingInputError as exc:
                raise FatalError(f"task {name}: {exc}") from exc
        work_dir, labelled_dir = Path("run") / name, Path("labeled") / name
        report = run_task_report(task_path, work_dir, labelled_dir, name, loaded=loaded,
                                 program_retries=ip["program_retries"],
                                 keep_files=ip["keep_files"])
        return OPIO({"labeled_data": labelled_dir, "raw_output": work_dir,
                     "report": report.as_dict()})


class PrepRunFp(FanOutSteps):
    """prep-fp -> run-fp (one sliced step per task) -> collect-fp.

    Inputs: artifact `frames`; parameters `engine` (EngineSpec as a dict), `task`,
    `fmt`, `type_map`, `min_success_ratio`, `keep_files` (raw-file globs kept per task;
    [] = the engine's inputs and logs, ["**"] = everything), `block_id` (prefix of the
    step keys), `energy_reference` (core's EnergyReference as a dict, {} for none: labels
    that stray from it are failed tasks). Outputs: artifacts `data` (deepmd/npy
    multi-system), `failures`, `summary`, `raw_outputs` (one run dir per task); parameter
    `n_frames`.

    `run.retries` also bounds the re-runs of a killed program (see the module doc). The OP
    classes can be replaced by subclasses (a workflow's own prep, mocked OPs in tests);
    `key_suffix` tells a second labelling in one block from the first.
    """

    def __init__(self, name: str, prep: StepExecution, run: StepExecution,
                 collect: StepExecution, *, mode: Mode = "local",
                 n_tasks_hint: int | None = None, prep_op: type[OP] = PrepFp,
                 run_op: type[OP] = RunFp, collect_op: type[OP] = CollectLabels,
                 key_suffix: str = "") -> None:
        declaration = FanOut(
            block_id="fp",
            parameters={"engine": REQUIRED, "task": {}, "fmt": "auto", "type_map": [],
                        "min_success_ratio": 1.0, "keep_files": [], "energy_reference": {}},
            artifacts=("frames",),
            prep=Stage(STEP_PREP, prep_op, prep,
                       parameters={n: from_input(n) for n in ("fmt", "engine", "task",
                                                               "type_map")},
                       artifacts={"frames": from_input("frames")}),
            run=Stage(STEP_RUN, run_op, run,
                      parameters={"task_name": from_prep("task_names"),
                                  "keep_files": from_input("keep_files"),
                                  "program_retries": run.retries},
                      artifacts={"task_path": from_prep("task_paths")}),
            fan=Fan(over="task_names", sliced_parameters=("task_name",),
                    sliced_artifacts=("task_path",),
                    output_artifacts=("labeled_data", "raw_output")),
            collect=Stage(STEP_COLLECT, collect_op, collect,
                          parameters={"type_map": from_prep("type_map"),
                                      "min_success_ratio": from_input("min_success_ratio"),
                                      "energy_reference": from_input("energy_reference")},
                          artifacts={"labeled_data": from_run("labeled_data")}),
            output_parameters={"n_frames": from_collect("n_frames")},
            output_artifacts={**{n: from_collect(n) for n in ("data", "failures", "summary")},
                              "raw_outputs": from_run("raw_output")},
        )
        super().__init__(name, declaration, mode=mode, n_items=n_tasks_hint,
                         key_suffix=key_suffix)
