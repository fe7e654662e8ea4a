"""Train one DeePMD model in a task dir: `dp train` then `dp freeze`, and its metrics.

    task dir (input.json from `ensemble_scripts`) + data
      --train_model--> work dir: input.json, checkpoints, lcurve.out, train.log,
                       frozen_model.pb, metrics.json, opshelf-train.json

A work dir that already holds a checkpoint (a killed, retried or resumed run) continues
from it with `dp train --restart`; it does not start over.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.train.data import check_type_map, count_frames, find_systems
from opshelf.train.deepmd import DpBackend, DpProfile, check_dp
from opshelf.train.launch import run_dp_calls
from opshelf.train.script import (
    SCRIPT_NAME,
    FinetuneOptions,
    InitModelOptions,
    StepScaling,
    decide_init_model,
    with_data,
    with_init_model_options,
)

METRICS_FILE = "metrics.json"
LOG_FILE = "train.log"
#: What this run decided (start mode, models used): kept next to the outputs.
RECORD_FILE = "opshelf-train.json"

#: lcurve column stem -> metrics key, with units (DeePMD prints energy and virial per atom).
_LCURVE_KEYS = {"rmse_e": "rmse_e_eV_per_atom", "rmse_f": "rmse_f_eV_per_A",
                "rmse_v": "rmse_v_eV_per_atom"}


def read_lcurve(path: Path) -> tuple[list[str], np.ndarray]:
    """Column names and rows (2-D) of a DeePMD lcurve.out."""
    if not path.is_file():
        raise MissingInputError(f"no learning curve at {path}")
    names: list[str] = []
    rows: list[list[float]] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            fields = line[1:].split()
            if not names and fields[:1] == ["step"]:
                names = fields
            continue
        if line.strip():
            rows.append([float(x) for x in line.split()])
    if not names or not rows:
        raise MissingInputError(f"{path}: no header or no data rows; did training start?")
    return names, np.array(rows, ndmin=2)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def lcurve_metrics(path: Path) -> dict[str, Any]:
    """First and final training/validation RMSEs of a learning curve, with units in keys.

    `validation` is None when the run had no validation data (DeePMD prints no *_val
    column then, or NaN).
    """
    names, rows = read_lcurve(path)

    def pick(row: np.ndarray, suffix: str) -> dict[str, float | None] | None:
        out = {key: _finite_or_none(row[names.index(f"{stem}_{suffix}")])
               for stem, key in _LCURVE_KEYS.items() if f"{stem}_{suffix}" in names}
        return out if any(v is not None for v in out.values()) else None

    first, last = rows[0], rows[-1]
    return {
        "final_step": int(last[0]),
        "training": pick(last, "trn"),
        "validation": pick(last, "val"),
        "first_step": int(first[0]),
        "first_training": pick(first, "trn"),
        "learning_rate": float(last[names.index("lr")]) if "lr" in names else None,
    }


@dataclass
class _TrainingInputs:
    """What `train_model` checked before dp runs: the script template and the systems."""

    script: dict[str, Any]
    train_systems: list[Path]
    valid_systems: list[Path]
    #: frames of every iteration before the newest (the init-model policy's threshold)
    old_frames: int
    use_init: bool


def _checked_inputs(task_dir: Path, init_data: Sequence[Path], iter_data: Sequence[Path],
                    valid_data: Sequence[Path], init_model: Path | None,
                    finetune_model: Path | None, init_options: InitModelOptions
                    ) -> _TrainingInputs:
    """Data, type_map and models checked; whether the init model applies."""
    template_path = task_dir / SCRIPT_NAME
    if not template_path.is_file():
        raise MissingInputError(f"{task_dir}: no {SCRIPT_NAME}; not a training task dir")
    script = json.loads(template_path.read_text())
    if not init_data and not iter_data:
        raise ConfigError("no training data: give init_data and/or iter_data")
    init_systems = find_systems(init_data)
    iter_systems = [find_systems([p]) for p in iter_data]
    train_systems = init_systems + [s for group in iter_systems for s in group]
    valid_systems = find_systems(valid_data)
    check_type_map(script["model"]["type_map"], train_systems + valid_systems)
    for what, model in (("init_model", init_model), ("finetune_model", finetune_model)):
        if model is not None and not Path(model).is_file():
            raise MissingInputError(f"{what}: no model file at {model}")
    old_frames = count_frames(init_systems) + count_frames(
        s for group in iter_systems[:-1] for s in group)
    use_init = decide_init_model(init_options.policy, init_model is not None, old_frames,
                                 bool(iter_data))
    if use_init and finetune_model is not None:
        raise ConfigError("init_model and finetune_model both apply; give one of them")
    return _TrainingInputs(script, train_systems, valid_systems, old_frames, use_init)


def train_model(
    work_dir: Path,
    task_dir: Path,
    *,
    init_data: Sequence[Path] = (),
    iter_data: Sequence[Path] = (),
    valid_data: Sequence[Path] = (),
    init_model: Path | None = None,
    finetune_model: Path | None = None,
    profile: DpProfile | None = None,
    init_options: InitModelOptions | None = None,
    scaling: StepScaling | None = None,
    finetune_options: FinetuneOptions | None = None,
) -> dict[str, Any]:
    """Train and freeze one model in `work_dir`; return its metrics (also in METRICS_FILE).

    `init_data`: systems or folders of them; `iter_data`: one entry per past iteration
    (the newest last), which the 'old_data_larger_than:N' policy needs. Everything is
    checked (data, type_map, models, dp and its backend) before dp trains. `scaling`:
    a run from scratch trains more steps on more frames (see StepScaling).
    `finetune_model` (a pretrained model: `.pb` for TensorFlow, a checkpoint `.pt` for PyTorch)
    makes it a fine-tuning run, with `finetune_options` (branch, steps, learning rate).
    """
    profile = profile or DpProfile()
    init_options = init_options or InitModelOptions()
    finetune_options = finetune_options or FinetuneOptions()
    inputs = _checked_inputs(task_dir, init_data, iter_data, valid_data, init_model,
                             finetune_model, init_options)
    if init_options.given_model_first and init_model is not None and not iter_data:
        return _use_given_model(work_dir, Path(init_model), profile, inputs)
    # the backend refuses a model it cannot start from before dp runs
    mode, start_args = _start(work_dir, profile.backend,
                              init_model if inputs.use_init else None, finetune_model,
                              finetune_options, init_options.use_pretrain_script)
    work_dir.mkdir(parents=True, exist_ok=True)
    check_dp(profile, work_dir)
    script = with_data(inputs.script, inputs.train_systems, inputs.valid_systems)
    first_mode = mode if mode != "restart" else _first_mode(work_dir)
    # a restart keeps the steps and rates of the run it continues
    if first_mode == "init_model":
        script = with_init_model_options(script, init_options)
    elif first_mode == "finetune":
        script = with_init_model_options(script, finetune_options)
    n_train_frames = count_frames(inputs.train_systems)
    if scaling is not None and first_mode == "scratch":
        training = script["training"]
        training["numb_steps"] = scaling.numb_steps(int(training["numb_steps"]), n_train_frames)
    (work_dir / SCRIPT_NAME).write_text(json.dumps(script, indent=1))
    record = {"mode": first_mode,
              "restarted": mode == "restart",
              "init_model": str(init_model) if inputs.use_init else None,
              "finetune_model": str(finetune_model) if finetune_model else None,
              "model_branch": finetune_options.model_branch if finetune_model else None,
              "old_data_frames": inputs.old_frames, "init_model_policy": init_options.policy,
              "n_train_systems": len(inputs.train_systems),
              "n_valid_systems": len(inputs.valid_systems),
              "n_train_frames": n_train_frames,
              "numb_steps": int(script["training"]["numb_steps"])}
    (work_dir / RECORD_FILE).write_text(json.dumps(record, indent=1))
    return _train_and_freeze(work_dir, profile, start_args, script, record)


def _use_given_model(work_dir: Path, model: Path, profile: DpProfile,
                     inputs: _TrainingInputs) -> dict[str, Any]:
    """DPGEN2's skipped training (its init_models_paths): the given frozen model becomes
    this run's model, as it is; the script, an empty learning curve, a log line, the record
    and the metrics say so (start 'given')."""
    frozen = profile.backend.frozen_model
    if model.suffix != Path(frozen).suffix:
        raise ConfigError(f"init_model {model.name!r}: a model used as it is must be a frozen "
                          f"{Path(frozen).suffix} model for the {profile.backend.name} backend")
    work_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, work_dir / frozen)
    script = with_data(inputs.script, inputs.train_systems, inputs.valid_systems)
    (work_dir / SCRIPT_NAME).write_text(json.dumps(script, indent=1))
    (work_dir / str(script["training"].get("disp_file", "lcurve.out"))).write_text(
        "# not trained: the given model is used as it is\n")
    (work_dir / LOG_FILE).write_text(f"given model {model} and no iteration data: used as "
                                     "it is, not trained (DPGEN2's init_models_paths)\n")
    record = {"mode": "given", "restarted": False, "init_model": str(model),
              "n_train_systems": len(inputs.train_systems)}
    (work_dir / RECORD_FILE).write_text(json.dumps(record, indent=1))
    metrics = {"start": "given", "restarted": False, "backend": profile.backend.name,
               "init_model": str(model)}
    (work_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    return metrics


def _train_and_freeze(work_dir: Path, profile: DpProfile, start_args: list[str],
                      script: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """dp train, dp freeze, then the metrics of the learning curve (METRICS_FILE)."""
    frozen = profile.backend.frozen_model
    # one process for both where dp is a Python script: the framework is imported once
    launch = run_dp_calls(profile, [["train", SCRIPT_NAME, "-l", LOG_FILE, *start_args],
                                    ["freeze", "-o", frozen]], work_dir, log_name="dp-train")
    if not (work_dir / frozen).is_file():
        raise MissingInputError(f"dp freeze wrote no {frozen} in {work_dir}")
    lcurve = work_dir / str(script["training"].get("disp_file", "lcurve.out"))
    metrics = {**lcurve_metrics(lcurve), "start": record["mode"],
               "restarted": record["restarted"], "backend": profile.backend.name,
               "dp_launch": launch}
    (work_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    return metrics


def _start(work_dir: Path, backend: DpBackend, init_model: Path | None,
           finetune_model: Path | None, finetune: FinetuneOptions,
           use_pretrain_script: bool = False) -> tuple[str, list[str]]:
    """How dp starts: (mode, extra `dp train` arguments). A checkpoint in `work_dir` (a
    killed, retried or resumed run) is continued; else the init model, the model to
    fine-tune, or nothing (scratch). The backend refuses a model it cannot start from."""
    if backend.has_checkpoint(work_dir):
        return "restart", ["--restart", backend.checkpoint]
    if init_model is not None:
        return "init_model", backend.init_model_args(Path(init_model), use_pretrain_script)
    if finetune_model is not None:
        return "finetune", backend.finetune_args(Path(finetune_model), finetune)
    return "scratch", []


def _first_mode(work_dir: Path) -> str:
    """The start mode of the run a restart continues (from its record)."""
    path = work_dir / RECORD_FILE
    if path.is_file():
        return str(json.loads(path.read_text()).get("mode", "scratch"))
    return "scratch"


def copy_task_inputs(task_dir: Path, work_dir: Path) -> None:
    """Copy the task dir's files into the work dir, keeping what a previous attempt left
    there (its checkpoints are what a restart continues from)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for item in task_dir.iterdir():
        target = work_dir / item.name
        if target.exists():
            continue
        if item.is_dir():
            shutil.copytree(item, target, symlinks=False)
        else:
            shutil.copy2(item, target)
