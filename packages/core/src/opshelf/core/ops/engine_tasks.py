"""Generic engine-task OPs: frames -> task dirs -> labelled data -> one data set.

Thin dflow OPs over `opshelf.core.ops.labelling`; opshelf-fp builds its FP contract on them.
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

from pathlib import Path
from typing import List

import dpdata
from dflow.python import OP, OPIO, Artifact, BigParameter, FatalError, OPIOSign, Parameter

from opshelf.core.config import validate_into
from opshelf.core.energy_reference import EnergyReference
from opshelf.core.engine import Engine, EngineSpec, Task, load_engine
from opshelf.core.ops.labelling import (
    SuccessRatioTooLow,
    collect_labels,
    read_frames,
    run_engine_task,
    write_engine_tasks,
)


class PrepEngineTasks(OP):
    """Frames (files in any dpdata format) -> one engine task dir per frame. Each frame
    file is read once and the engine loaded once; a subclass checks the frames against
    the engine before any dir is written (``check_frames``)."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "frames": Artifact(List[Path]),
            "fmt": Parameter(str, default="auto"),
            "engine": BigParameter(dict),
            "task": BigParameter(dict),
            "type_map": Parameter(List[str], default=[]),
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
        engine = load_engine(validate_into(EngineSpec, ip["engine"], where="input 'engine'"))
        task = validate_into(Task, ip["task"], where="input 'task'")
        frames = [frame for path in ip["frames"] for frame in read_frames(Path(path), ip["fmt"])]
        self.check_frames(engine, task, frames)
        names, paths, type_map = write_engine_tasks(frames, engine, task, Path("tasks"),
                                                    type_map=ip["type_map"])
        return OPIO({"task_names": names, "task_paths": paths, "type_map": type_map})

    def check_frames(self, engine: Engine, task: Task, frames: List[dpdata.System]) -> None:
        """Raise before any task dir is written when `engine` cannot label `frames` (here:
        nothing; the engine's unsupported task kinds are refused by write_engine_tasks)."""


class RunEngineTask(OP):
    """One task dir -> its labelled frames (deepmd/npy) and a report.

    A failed calculation (CommandError, TaskFailed) is recorded in the report and in
    `labeled_data/opshelf-report.json`; the step still succeeds so the fan-out goes on.
    """

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "task_name": Parameter(str),
            "task_path": Artifact(Path),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "labeled_data": Artifact(Path),
            "raw_output": Artifact(Path),
            "report": Parameter(dict),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        name = ip["task_name"]
        work_dir, labelled_dir = Path("run") / name, Path("labeled") / name
        report = run_engine_task(Path(ip["task_path"]), work_dir, labelled_dir, name)
        return OPIO({"labeled_data": labelled_dir, "raw_output": work_dir, "report": report})


class CollectLabels(OP):
    """All tasks' outputs -> one deepmd/npy multi-system set, failures.json, summary.json.

    Raises FatalError when fewer than `min_success_ratio` of the tasks succeeded (after
    writing everything it has into its working directory).
    """

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "labeled_data": Artifact(List[Path]),
            "type_map": Parameter(List[str], default=[]),
            "min_success_ratio": Parameter(float, default=1.0),
            # an EnergyReference as a dict ({}: none): labels that stray from it are failed
            "energy_reference": Parameter(dict, default={}),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "data": Artifact(Path),
            "failures": Artifact(Path),
            "summary": Artifact(Path),
            "n_frames": Parameter(int),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        ratio = float(ip["min_success_ratio"])
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"min_success_ratio must lie in [0, 1], got {ratio}")
        reference = (validate_into(EnergyReference, ip["energy_reference"],
                                   where="energy_reference") if ip["energy_reference"] else None)
        out = Path("collected")
        try:
            summary = collect_labels([Path(p) for p in ip["labeled_data"]], out,
                                     type_map=ip["type_map"], min_success_ratio=ratio,
                                     energy_reference=reference)
        except SuccessRatioTooLow as exc:
            raise FatalError(f"{exc} (in {out.resolve()})") from exc
        return OPIO({"data": out / "data", "failures": out / "failures.json",
                     "summary": out / "summary.json", "n_frames": summary["n_frames"]})
