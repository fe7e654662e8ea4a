"""Gather a finished run's results: final models, the whole data set, history, report."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opshelf.cl.status import (
    fanout_artifacts,
    format_table,
    iteration_steps,
    phase,
    step_artifacts,
)


def final_models(wfdir: Path) -> list[Path]:
    """The models of the newest iteration whose training finished."""
    for _, steps in sorted(iteration_steps(wfdir).items(), reverse=True):
        dirs = steps.get("run-train", [])
        if dirs and all(phase(d) == "Succeeded" for d in dirs):
            return fanout_artifacts(dirs, "model")
    return []


def iteration_data(wfdir: Path) -> list[Path]:
    """Every iteration's labelled data (the newest collect-data step's output)."""
    for _, steps in sorted(iteration_steps(wfdir).items(), reverse=True):
        for d in steps.get("collect-data", []):
            if phase(d) == "Succeeded":
                return step_artifacts(d, "iter_data")
    return []


def held_out_data(wfdir: Path) -> Path | None:
    """The held-out set the iterations were scored on (the newest score step's)."""
    for _, steps in sorted(iteration_steps(wfdir).items(), reverse=True):
        for d in steps.get("score-models", []):
            if phase(d) == "Succeeded":
                found = step_artifacts(d, "test_data")
                return found[0] if found else None
    return None


@dataclass(frozen=True)
class LabellingCost:
    """Engine wall time of a run's labelling tasks (summed over tasks, so on n cores the
    wall clock paid is about 1/n of it): the training labels and the held-out set apart."""

    train_s: float = 0.0
    test_s: float = 0.0
    n_train: int = 0
    n_test: int = 0

    def line(self) -> str | None:
        """'held-out set: 4 frames labelled once, 4.5 min of 12.0 min of labelling (38 %)'."""
        total = self.train_s + self.test_s
        if not self.n_test or total <= 0:
            return None
        return (f"held-out set: {self.n_test} frames labelled once, {self.test_s / 60:.1f} "
                f"min of {total / 60:.1f} min of labelling ({100 * self.test_s / total:.0f} %, "
                "engine time summed over tasks)")


def labelling_cost(wfdir: Path) -> LabellingCost:
    """Sum the per-task wall times that the collect-fp and collect-fp-test steps report."""
    sums = {"collect-fp": [0.0, 0], "collect-fp-test": [0.0, 0]}
    for steps in iteration_steps(wfdir).values():
        for name, acc in sums.items():
            for step_dir in steps.get(name, []):
                if phase(step_dir) != "Succeeded":
                    continue
                for item in step_artifacts(step_dir, "summary"):
                    for path in [item] if item.is_file() else item.rglob("summary.json"):
                        tasks = json.loads(path.read_text()).get("tasks", [])
                        ok = [t for t in tasks if t.get("status") == "succeeded"]
                        acc[0] += sum(float(t.get("wall_s") or 0.0) for t in tasks)
                        acc[1] += sum(int(t.get("n_frames") or 0) for t in ok)
    (train_s, n_train), (test_s, n_test) = sums["collect-fp"], sums["collect-fp-test"]
    return LabellingCost(train_s, test_s, n_train, n_test)


def held_out_line(history: Sequence[dict[str, Any]]) -> str | None:
    """'held-out force RMSE by iteration: ...' (None when no iteration was scored)."""
    scored = [r for r in history if r.get("test_force_rmse_eV_per_A") is not None]
    if not scored:
        return None
    forces = ", ".join(f"{r['test_force_rmse_eV_per_A']:.3f}" for r in scored)
    energies = ", ".join(f"{1000 * r['test_energy_rmse_eV_per_atom']:.1f}" for r in scored)
    labels = ", ".join(str(r.get("n_train_frames", "?")) for r in scored)
    line = (f"held-out error by iteration ({scored[0].get('test_n_frames')} frames): force "
            f"RMSE {forces} eV/A; energy RMSE {energies} meV/atom; trained on {labels} frames")
    ratio = overconfidence(scored[-1])
    return line if ratio is None else (
        f"{line}; the last models' deviation is {ratio:.1f}x below their error there "
        "(median max error / median max deviation)")


def overconfidence(record: dict[str, Any]) -> float | None:
    """Median max force error of the ensemble mean over median max deviation on the held-out
    frames: how far the spread the loop trusts understates the error (None: not measured)."""
    devi = record.get("test_devi_f_median_eV_per_A")
    error = record.get("test_max_force_error_median_eV_per_A")
    return None if not devi or error is None else error / devi


def write_results_folder(out: Path, models: Sequence[Path], init_data: Path,
                         iter_data: Sequence[Path], state: dict[str, Any],
                         rows: list[dict[str, Any]], write_report: Callable[[Path], Any],
                         test_data: Path | None = None,
                         cost: LabellingCost | None = None) -> list[str]:
    """`out`: models/model-NNN.*, data/init + data/<iteration data> (+ data/test, the
    held-out set), history.json (the final loop state), status.txt and report.html
    (written by `write_report(path)`)."""
    out.mkdir(parents=True, exist_ok=True)
    models_dir, data_dir = out / "models", out / "data"
    for d in (models_dir, data_dir):
        if d.exists():
            shutil.rmtree(d)
    models_dir.mkdir()
    for i, model in enumerate(models):
        shutil.copyfile(model, models_dir / f"model-{i:03d}{model.suffix}")
    shutil.copytree(init_data, data_dir / "init")
    for path in iter_data:
        shutil.copytree(path, data_dir / path.name)
    if test_data is not None and any(test_data.rglob("type.raw")):
        shutil.copytree(test_data, data_dir / "test")
    (out / "history.json").write_text(json.dumps(state, indent=1))
    (out / "status.txt").write_text(format_table(rows, state) + "\n")
    report = out / "report.html"
    write_report(report)
    n_labelled = sum(r.get("n_labelled", 0) for r in state.get("history", []))
    held_out = [held_out_line(state.get("history", [])), cost.line() if cost else None]
    return [f"{len(state.get('history', []))} iterations",
            *[line for line in held_out if line],
            f"models ({len(models)}): {models_dir}",
            f"data: {data_dir} (init + {len(iter_data)} iterations, {n_labelled} labelled "
            "frames)",
            f"report: {report}"]
