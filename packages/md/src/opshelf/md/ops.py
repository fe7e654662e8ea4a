"""dflow OPs of exploration and selection (thin layers over `opshelf.md.explore`).

- `PrepExplore`: initial confs x task groups -> batches of exploration task dirs
  (`tasks_per_batch` tasks per batch: a batch of LAMMPS tasks runs in one process).
- `RunExplore`: one batch -> its run dirs (trajectories, model_devi.out) and a report;
  a failed run is recorded in the report, the step succeeds.
- `PrepRunExplore`: the super-OP prep-explore -> run-explore (sliced, group_size from the
  step execution), keyed `<block_id>--prep-explore`, `<block_id>--run-explore-NNNNNN`.
- `SelectConfs`: run dirs -> selected frames (deepmd/npy), report.json, n_selected.
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

from dflow.python import OP, OPIO, Artifact, BigParameter, OPIOSign, Parameter

from opshelf.core.config import validate_into
from opshelf.core.dflow_build import Mode
from opshelf.core.errors import ConfigError
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
from opshelf.md.explore import (
    EXPLORE_FILE,
    ExploreConfig,
    SelectConfig,
    prepare_explore_tasks,
    run_explore_tasks,
    select_confs,
)

STEP_PREP = "prep-explore"
STEP_RUN = "run-explore"


class PrepExplore(OP):
    """Initial confs (any dpdata format) x `explore` groups -> batches of task dirs."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "confs": Artifact(List[Path]),
            "fmt": Parameter(str, default="auto"),
            "explore": BigParameter(dict),
            "type_map": Parameter(List[str], default=[]),
            "tasks_per_batch": Parameter(int, default=1),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "batch_names": Parameter(List[str]),
            "batch_paths": Artifact(List[Path]),
            "type_map": Parameter(List[str]),
            "n_tasks": Parameter(int),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        per_batch = int(ip["tasks_per_batch"])
        if per_batch < 1:
            raise ConfigError(f"tasks_per_batch must be >= 1, got {per_batch}")
        config = self.explore_config(ip)
        names, paths, type_map = prepare_explore_tasks(
            [Path(p) for p in ip["confs"]], ip["fmt"], config, Path("tasks"),
            type_map=ip["type_map"])
        batch_names, batch_paths = [], []
        for start in range(0, len(paths), per_batch):
            batch = Path("batches") / f"batch-{start // per_batch:06d}"
            batch.mkdir(parents=True, exist_ok=True)
            for path in paths[start:start + per_batch]:
                shutil.move(str(path), batch / path.name)
            batch_names.append(batch.name)
            batch_paths.append(batch)
        return OPIO({"batch_names": batch_names, "batch_paths": batch_paths,
                     "type_map": type_map, "n_tasks": len(names)})

    def explore_config(self, ip: OPIO) -> ExploreConfig:
        """The exploration of this step: input `explore`, validated (a subclass may
        transform it, typed: cl fills in the ensemble it just trained)."""
        return validate_into(ExploreConfig, ip["explore"], where="input 'explore'")


class RunExplore(OP):
    """One batch of exploration tasks -> `trajs` (its run dirs) and `report`."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({"batch_name": Parameter(str), "batch_path": Artifact(Path)})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"trajs": Artifact(Path), "report": Parameter(dict)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        batch = Path(ip["batch_path"])
        tasks = sorted(p.parent for p in batch.glob(f"*/{EXPLORE_FILE}"))
        if not tasks:
            raise ConfigError(f"{batch}: no exploration task dirs ({EXPLORE_FILE})")
        out = Path("runs") / ip["batch_name"]
        reports = run_explore_tasks(tasks, out)
        failed = [r for r in reports if r["status"] != "succeeded"]
        return OPIO({"trajs": out, "report": {"batch": ip["batch_name"], "tasks": reports,
                                              "n_failed": len(failed)}})


class SelectConfs(OP):
    """Explored run dirs -> `confs` (selected frames, deepmd/npy), `report` (report.json:
    counts and ratios per trajectory and overall), `n_selected`, and `test_confs` (random
    held-out frames when the config's `n_test` asks for them; else an empty folder)."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "trajs": Artifact(List[Path]),
            "select": BigParameter(dict),
            "type_map": Parameter(List[str], default=[]),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"confs": Artifact(Path), "report": Artifact(Path),
                         "n_selected": Parameter(int), "test_confs": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        config = validate_into(SelectConfig, ip["select"], where="input 'select'")
        out = Path("selected")
        report = select_confs([Path(p) for p in ip["trajs"]], config, out,
                              type_map=ip["type_map"] or None)
        (out / "test_confs").mkdir(exist_ok=True)
        return OPIO({"confs": out / "confs", "report": out / "report.json",
                     "n_selected": report["overall"]["n_selected"],
                     "test_confs": out / "test_confs"})


class PrepRunExplore(FanOutSteps):
    """prep-explore -> run-explore (one sliced step per batch).

    Inputs: artifact `confs`; parameters `explore` (ExploreConfig as a dict), `fmt`,
    `type_map`, `tasks_per_batch`, `block_id`. Outputs: artifact `trajs` (every batch's run
    dirs), parameters `reports`, `type_map`. The OP classes can be replaced by subclasses
    (a workflow's own prep, mocked OPs); `prep_artifacts` names the artifacts the prep OP
    takes (any beyond `confs`, e.g. the models to explore with, are optional inputs).
    """

    def __init__(self, name: str, prep: StepExecution, run: StepExecution, *,
                 mode: Mode = "local", n_batches_hint: int | None = None,
                 prep_op: type[OP] = PrepExplore, run_op: type[OP] = RunExplore,
                 prep_artifacts: tuple[str, ...] = ("confs",)) -> None:
        declaration = FanOut(
            block_id="explore",
            parameters={"explore": REQUIRED, "fmt": "auto", "type_map": [],
                        "tasks_per_batch": 1},
            artifacts=("confs",),
            optional_artifacts=tuple(a for a in prep_artifacts if a != "confs"),
            prep=Stage(STEP_PREP, prep_op, prep,
                       parameters={n: from_input(n) for n in ("fmt", "explore", "type_map",
                                                               "tasks_per_batch")},
                       artifacts={a: from_input(a) for a in prep_artifacts}),
            run=Stage(STEP_RUN, run_op, run,
                      parameters={"batch_name": from_prep("batch_names")},
                      artifacts={"batch_path": from_prep("batch_paths")}),
            fan=Fan(over="batch_names", sliced_parameters=("batch_name",),
                    sliced_artifacts=("batch_path",), output_artifacts=("trajs",)),
            output_parameters={"reports": from_run("report"), "type_map": from_prep("type_map")},
            output_artifacts={"trajs": from_run("trajs")},
        )
        super().__init__(name, declaration, mode=mode, n_items=n_batches_hint)
