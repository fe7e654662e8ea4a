"""dflow OPs of the FP contract, on core's generic engine-task OPs.

- `PrepFp`: frames (files in any dpdata format) -> one FP task dir per frame. Every
  element's pseudopotential / basis / POTCAR is checked before the first dir is written.
- `RunFp`: one task dir -> `labeled_data` (deepmd/npy), the raw output files and a report;
  a failed calculation is recorded, not raised.
- `PrepRunFp`: the super-OP prep-fp -> run-fp (sliced fan-out) -> collect-fp, with step keys
  `<block_id>--prep-fp`, `<block_id>--run-fp-NNNNNN`, `<block_id>--collect-fp`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dflow import (
    InputArtifact,
    InputParameter,
    Inputs,
    OutputArtifact,
    OutputParameter,
    Outputs,
    Steps,
    argo_len,
    argo_sequence,
)
from dflow.python import OP, OPIO

from opshelf.core.config import validate_into
from opshelf.core.dflow_build import make_step
from opshelf.core.engine import EngineSpec, Task, load_engine
from opshelf.core.execution import StepExecution
from opshelf.core.ops import CollectLabels, PrepEngineTasks, RunEngineTask
from opshelf.core.ops.labelling import read_frames, union_type_map
from opshelf.fp.base import FpEngine

STEP_PREP = "prep-fp"
STEP_RUN = "run-fp"
STEP_COLLECT = "collect-fp"


class PrepFp(PrepEngineTasks):
    """Frames -> FP task dirs (inputs of the engine, the frame, the task)."""

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        engine = load_engine(validate_into(EngineSpec, ip["engine"], where="input 'engine'"))
        task = validate_into(Task, ip["task"], where="input 'task'")
        frames = [frame for path in ip["frames"] for frame in read_frames(Path(path), ip["fmt"])]
        if isinstance(engine, FpEngine):  # files only: the program runs elsewhere
            engine.check_inputs(union_type_map(frames), task)
        return super().execute(ip)


class RunFp(RunEngineTask):
    """One FP task dir -> `labeled_data` (deepmd/npy), `raw_output` (the run dir with the
    program's inputs and outputs) and `report` (status, reason and log tail on failure)."""


class PrepRunFp(Steps):
    """prep-fp -> run-fp (one sliced step per task) -> collect-fp.

    Inputs: artifact `frames`; parameters `engine` (EngineSpec as a dict), `task`,
    `fmt`, `type_map`, `min_success_ratio`, `block_id` (prefix of the step keys).
    Outputs: artifacts `data` (deepmd/npy multi-system), `failures`, `summary`;
    parameter `n_frames`.
    """

    def __init__(
        self,
        name: str,
        prep: StepExecution,
        run: StepExecution,
        collect: StepExecution,
        *,
        mode: Any = "local",
        n_tasks_hint: int | None = None,
    ) -> None:
        super().__init__(
            name=name,
            inputs=Inputs(
                parameters={
                    "block_id": InputParameter(value="fp"),
                    "engine": InputParameter(),
                    "task": InputParameter(value={}),
                    "fmt": InputParameter(value="auto"),
                    "type_map": InputParameter(value=[]),
                    "min_success_ratio": InputParameter(value=1.0),
                },
                artifacts={"frames": InputArtifact()},
            ),
            outputs=Outputs(
                parameters={"n_frames": OutputParameter()},
                artifacts={
                    "data": OutputArtifact(),
                    "failures": OutputArtifact(),
                    "summary": OutputArtifact(),
                },
            ),
        )
        block = self.inputs.parameters["block_id"]
        prep_step = make_step(
            STEP_PREP,
            PrepFp,
            prep,
            key=f"{block}--{STEP_PREP}",
            mode=mode,
            artifacts={"frames": self.inputs.artifacts["frames"]},
            parameters={
                name: self.inputs.parameters[name] for name in ("fmt", "engine", "task", "type_map")
            },
        )
        run_step = make_step(
            STEP_RUN,
            RunFp,
            run,
            key=f"{block}--{STEP_RUN}-{{{{item}}}}",
            mode=mode,
            parameters={"task_name": prep_step.outputs.parameters["task_names"]},
            artifacts={"task_path": prep_step.outputs.artifacts["task_paths"]},
            slices={
                "slices": "int('{{item}}')",
                "input_parameter": ["task_name"],
                "input_artifact": ["task_path"],
                "output_parameter": ["report"],
                "output_artifact": ["labeled_data", "raw_output"],
            },
            with_sequence=argo_sequence(
                argo_len(prep_step.outputs.parameters["task_names"]), format="%06d"
            ),
            n_items=n_tasks_hint,
        )
        collect_step = make_step(
            STEP_COLLECT,
            CollectLabels,
            collect,
            key=f"{block}--{STEP_COLLECT}",
            mode=mode,
            artifacts={"labeled_data": run_step.outputs.artifacts["labeled_data"]},
            parameters={
                "type_map": prep_step.outputs.parameters["type_map"],
                "min_success_ratio": self.inputs.parameters["min_success_ratio"],
            },
        )
        for step in (prep_step, run_step, collect_step):
            self.add(step)
        for name in ("data", "failures", "summary"):
            self.outputs.artifacts[name]._from = collect_step.outputs.artifacts[name]
        self.outputs.parameters["n_frames"].value_from_parameter = collect_step.outputs.parameters[
            "n_frames"
        ]
