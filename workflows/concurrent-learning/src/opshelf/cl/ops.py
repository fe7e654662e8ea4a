"""dflow OPs of the concurrent-learning loop (thin: the science lives in opshelf-md/-train/-fp
and in `opshelf.cl.scheduler`).

- `PrepExploreCl`: opshelf-md's PrepExplore, with the ensemble just trained filled into the
  exploration engine (LAMMPS `pair_style deepmd` or ASE DeePMD calculators: `with_models`,
  a typed ExploreConfig -> ExploreConfig).
- `PrepFpCl`: opshelf-fp's PrepFp that accepts an empty selection (no task).
- `CollectFpCl`: core's CollectLabels that accepts zero tasks (nothing selected).
- `CollectIterData`: the labelled data of every iteration so far, one folder per iteration.
- `ScoreCl`: this iteration's models on the held-out set (given, or labelled this
  iteration); hands the set on to the next iteration.
- `Scheduler`: the loop state after an iteration: convergence, next stage, stop or go on.
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List

from dflow.python import OP, OPIO, Artifact, BigParameter, FatalError, OPIOSign, Parameter

from opshelf.cl.inputs import with_models
from opshelf.cl.scheduler import LoopState, StageFailed, advance, iteration_inputs
from opshelf.core.config import validate_into
from opshelf.core.errors import UserError
from opshelf.core.ops import CollectLabels
from opshelf.fp.ops import PrepFp
from opshelf.md.explore import ExploreConfig
from opshelf.md.ops import PrepExplore

#: file of the loop state written by the scheduler (also its output parameter `state`)
STATE_FILE = "loop-state.json"


def has_systems(paths: list[Path]) -> bool:
    return any((p / "type.raw").is_file() or any(p.rglob("type.raw")) for p in paths
               if p.is_dir()) or any(p.is_file() for p in paths)


class PrepExploreCl(PrepExplore):
    """PrepExplore with `models` (the ensemble of this iteration) put into `explore`."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        sign = super().get_input_sign()
        sign["models"] = Artifact(List[Path])
        return sign

    def explore_config(self, ip: OPIO) -> ExploreConfig:
        # opshelf-md gives models of the same file name (all `frozen_model.pb`) distinct names
        models = [str(Path(m).resolve()) for m in ip["models"]]
        return with_models(super().explore_config(ip), models)


class PrepFpCl(PrepFp):
    """PrepFp; an empty selection gives no task instead of an error."""

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        if not has_systems([Path(p) for p in ip["frames"]]):
            Path("tasks").mkdir(exist_ok=True)
            return OPIO({"task_names": [], "task_paths": [], "type_map": list(ip["type_map"])})
        return PrepFp.execute.__wrapped__(self, ip)  # type: ignore[attr-defined]


class CollectFpCl(CollectLabels):
    """CollectLabels; zero tasks (nothing selected) gives an empty data set."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        sign = super().get_input_sign()
        sign["labeled_data"] = Artifact(List[Path], optional=True)
        return sign

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        if ip["labeled_data"]:
            return CollectLabels.execute.__wrapped__(self, ip)  # type: ignore[attr-defined]
        out = Path("collected")
        (out / "data").mkdir(parents=True, exist_ok=True)
        (out / "failures.json").write_text("[]\n")
        (out / "summary.json").write_text(json.dumps(
            {"n_tasks": 0, "n_succeeded": 0, "n_failed": 0, "n_frames": 0, "tasks": []}))
        return OPIO({"data": out / "data", "failures": out / "failures.json",
                     "summary": out / "summary.json", "n_frames": 0})


class CollectIterData(OP):
    """Previous iterations' data + this iteration's labels -> `iter_data`, one folder per
    iteration that labelled anything (the newest last: the init-model policy counts on it)."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "block_id": Parameter(str),
            "iter_data": Artifact(List[Path], optional=True),
            "labeled_data": Artifact(Path),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"iter_data": Artifact(List[Path]), "n_iterations": Parameter(int)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        out = Path("iter_data")
        out.mkdir(exist_ok=True)
        paths = []
        for old in sorted(Path(p) for p in (ip["iter_data"] or [])):
            target = out / old.name
            if not target.exists():
                shutil.copytree(old, target)
            paths.append(target)
        new = Path(ip["labeled_data"])
        if has_systems([new]):
            target = out / ip["block_id"]
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(new, target)
            paths.append(target)
        return OPIO({"iter_data": paths, "n_iterations": len(paths)})


class ScoreCl(OP):
    """The ensemble on the held-out set (the loop's `test_data` when it holds frames, else
    the set labelled in this iteration, `new_test_data`) and on its own training data
    (`init_data` + `iter_data`: the fit error and the deviation floor). Outputs `score`
    (JSON: {"test": EnsembleScore or null, "train": EnsembleScore}) and the held-out set
    as `test_data`, for the next iteration."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "models": Artifact(List[Path]),
            "init_data": Artifact(List[Path], optional=True),
            "iter_data": Artifact(List[Path], optional=True),
            "test_data": Artifact(List[Path], optional=True),
            "new_test_data": Artifact(Path, optional=True),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"score": Artifact(Path), "test_data": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        from opshelf.train.score import score_ensemble

        test = gather_test_data(ip["test_data"], ip["new_test_data"], Path("test-data"))
        models = [Path(m) for m in ip["models"]]
        train = [Path(p) for p in [*(ip["init_data"] or []), *(ip["iter_data"] or [])]]
        try:
            score = {"test": score_ensemble(models, [test]).model_dump(mode="json")
                     if test is not None else None,
                     "train": score_ensemble(models, train).model_dump(mode="json")
                     if has_systems(train) else None}
        except UserError as exc:
            raise FatalError(str(exc)) from exc
        Path("score.json").write_text(json.dumps(score, indent=1))
        return OPIO({"score": Path("score.json"), "test_data": Path("test-data")})


def gather_test_data(given: list[str] | None, new: str | None, out: Path) -> Path | None:
    """Copy the held-out set into `out`: the given one when it holds frames, else the new
    one; `out` (an empty folder when neither holds frames: then None is returned)."""
    given_paths = [Path(p) for p in given or []]
    chosen = given_paths if has_systems(given_paths) else [Path(new)] if new else []
    out.mkdir(exist_ok=True)
    for k, path in enumerate(p for p in chosen if has_systems([p])):
        shutil.copytree(path, out / f"set-{k:03d}", dirs_exist_ok=True)
    return out if has_systems([out]) else None


class Scheduler(OP):
    """The loop state after one iteration; the inputs of the next one.

    Outputs `done` (1: stop the loop), `state` (the new LoopState as a dict, also in the
    artifact `state_file`) and the next block's parameters."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "state": BigParameter(dict),
            "select_report": Artifact(Path),
            "fp_summary": Artifact(Path, optional=True),
            "test_score": Artifact(Path, optional=True),
            "convergence": BigParameter(list),
            "stages_explore": BigParameter(list),
            "select": BigParameter(dict),
            "seed": Parameter(int, default=0),
            "max_iterations": Parameter(int),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "state": BigParameter(dict),
            "state_file": Artifact(Path),
            "done": Parameter(int),
            "block_id": Parameter(str),
            "explore": BigParameter(dict),
            "select": BigParameter(dict),
            "train_seed": Parameter(int),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        from opshelf.cl.config import Convergence

        state = validate_into(LoopState, ip["state"], where="input 'state'")
        convergence = [validate_into(Convergence, c, where="input 'convergence'")
                       for c in ip["convergence"]]
        report = json.loads(Path(ip["select_report"]).read_text())
        fp = json.loads(Path(ip["fp_summary"]).read_text()) if ip["fp_summary"] else None
        score = json.loads(Path(ip["test_score"]).read_text()) if ip["test_score"] else None
        try:
            new = advance(state, report, fp, convergence, ip["max_iterations"], score)
        except StageFailed as exc:
            raise FatalError(str(exc)) from exc
        Path(STATE_FILE).write_text(new.model_dump_json(indent=1))
        nxt = iteration_inputs(new, ip["stages_explore"], ip["select"], ip["seed"])
        return OPIO({"state": new.model_dump(mode="json"), "state_file": Path(STATE_FILE),
                     "done": int(new.done), **nxt})
