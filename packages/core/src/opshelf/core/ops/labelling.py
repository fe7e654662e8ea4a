"""Pure functions behind the labelling OPs (no dflow import: scripts call them).

    frames (any dpdata format) --prepare_engine_tasks--> task dirs (one per frame)
      (in-memory frames: write_engine_tasks)
    task dir --run_task_report--> labelled data (deepmd/npy) + a report; a failure is a report
    labelled dirs --collect_labels--> one deepmd/npy multi-system set + failures.json + summary.json

This is the one labelling path: core's OPs (PrepEngineTasks, RunEngineTask, CollectLabels),
opshelf-fp's (PrepFp, RunFp) and its serial `label_frames` all call these functions. The run
driver `run_task_report` holds the two rules of a task run:

- A program that was killed from outside (SIGKILL/SIGTERM: the OOM killer, a pre-empted
  node, an administrator) is re-run up to `program_retries` times. Any other failure
  (exit status != 0, unconverged SCF, no forces, a timeout) is deterministic and is
  recorded at once. After the last attempt the failure is recorded like any other, so a
  batch never retries a task forever and never loses it.
- Only the raw files asked for are kept in the run dir (`keep_files`, globs; ``[]``: the
  engine's inputs and logs), not wavefunctions, restart files or copied pseudopotentials.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import dpdata
import numpy as np
from pydantic import BaseModel, ConfigDict

from opshelf.core.energy_reference import EnergyReference, absurd_energy_reason
from opshelf.core.engine import (
    TASK_FILE,
    Engine,
    EngineResult,
    Task,
    TaskFailed,
    read_task,
    write_task,
)
from opshelf.core.errors import CommandError, ConfigError, MissingInputError

#: Written into every labelled-data dir, success or failure: the record of the task.
REPORT_FILE = "opshelf-report.json"
FAILURES_FILE = "failures.json"
SUMMARY_FILE = "summary.json"
DATA_DIR = "data"
#: Signals that mean "stopped from outside", worth running again.
KILL_SIGNALS = (signal.SIGKILL, signal.SIGTERM)
#: Kept besides the engine's own raw files: every log that run_command writes.
DEFAULT_EXTRA_KEEP = ("*.out", "*.err", TASK_FILE)
#: `keep_files` entry that keeps the whole run dir.
KEEP_ALL = "**"


class TaskReport(BaseModel):
    """The record of one engine task, written into its labelled-data dir (REPORT_FILE) and
    handed on as the run step's `report` parameter (``as_dict``): what crosses the step
    boundary, read back with ``TaskReport.read``. Only the fields a run set are written."""

    model_config = ConfigDict(extra="forbid")

    task: str
    status: Literal["succeeded", "failed"] = "succeeded"
    reason: str = ""
    log_tail: str = ""
    n_frames: int = 0
    #: a failed program's exit status and whether its own timeout ended it
    returncode: int | None = None
    timed_out: bool | None = None
    #: what the engine reports besides the labels (SCF iterations, ...)
    info: dict[str, Any] | None = None
    energy_eV_per_atom: list[float] | None = None
    max_force_eV_per_A: list[float] | None = None
    wall_s: float | None = None
    #: opshelf-fp's run: attempts (a killed program is re-run), the earlier ones' reasons,
    #: the raw files kept
    attempts: int | None = None
    earlier_attempts: list[str] | None = None
    raw_files: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)

    def write(self, labelled_dir: Path) -> None:
        (labelled_dir / REPORT_FILE).write_text(json.dumps(self.as_dict(), indent=1))

    @classmethod
    def read(cls, labelled_dir: Path) -> TaskReport:
        path = Path(labelled_dir) / REPORT_FILE
        if not path.is_file():
            raise MissingInputError(f"{labelled_dir}: no {REPORT_FILE}; not the output of a "
                                    "task run")
        return cls.model_validate_json(path.read_text())  # the file's fields count as set


_SYSTEM_KEYS = ("atom_names", "atom_numbs", "atom_types", "orig", "cells", "coords", "nopbc")


class SuccessRatioTooLow(RuntimeError):
    """Fewer tasks than the configured minimum succeeded (raised after writing results)."""


def task_name(index: int) -> str:
    """Deterministic task name: the index of the frame, zero-padded."""
    return f"task-{index:06d}"


# -- reading frames -------------------------------------------------------------------------
def _overrides(fmt_obj: Any, method: str) -> bool:
    from dpdata.format import Format

    return getattr(type(fmt_obj), method) is not getattr(Format, method)


def read_frames(path: str | Path, fmt: str = "auto") -> list[dpdata.System]:
    """Every frame stored at `path`, as single-frame unlabelled Systems.

    `fmt` is a dpdata format name ("vasp/poscar", "deepmd/npy", "extxyz", "lammps/dump",
    "ase/structure" for any file ASE reads, ...) or "auto": a deepmd/npy folder (or folder
    of them) when `path` is a folder, otherwise any file ASE can read.
    """
    from dpdata.system import load_format

    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"frames file not found: {path}")
    if fmt == "auto":
        fmt = "deepmd/npy" if path.is_dir() else "ase/structure"
    try:
        fmt_obj = load_format(fmt)
    except NotImplementedError:
        raise ConfigError(
            f"unknown dpdata format {fmt!r} for {path}; see dpdata's list of formats, or "
            "use 'auto'") from None
    systems: list[dpdata.System] = []
    try:
        single_deepmd_dir = path.is_dir() and (path / "type.raw").is_file()
        if _overrides(fmt_obj, "from_multi_systems") or (
                fmt_obj.MultiMode == fmt_obj.MultiModes.Directory and not single_deepmd_dir):
            # Multi-frame, multi-formula files (extxyz, ...): their single-system reader
            # would keep only the first frame.
            try:
                multi = dpdata.MultiSystems.from_file(str(path), fmt=fmt, labeled=False)
            except NotImplementedError:  # formats that only read labelled frames
                multi = dpdata.MultiSystems.from_file(str(path), fmt=fmt, labeled=True)
            systems = list(multi.systems.values())
        if not systems:  # a single-system format (or a multi reader that found nothing)
            try:
                systems = [dpdata.System(str(path), fmt=fmt)]
            except NotImplementedError:
                systems = [dpdata.LabeledSystem(str(path), fmt=fmt)]
    except (OSError, ValueError, KeyError, IndexError, StopIteration) as exc:
        raise ConfigError(f"cannot read frames from {path} as {fmt!r}: "
                          f"{type(exc).__name__}: {exc}") from None
    frames: list[dpdata.System] = []
    for system in systems:
        plain = dpdata.System(data={key: system.data[key] for key in _SYSTEM_KEYS
                                    if key in system.data})
        frames.extend(plain.sub_system([i]) for i in range(plain.get_nframes()))
    if not frames:
        raise ConfigError(f"no frames in {path} (format {fmt!r})")
    return frames


def union_type_map(frames: Sequence[dpdata.System], type_map: Sequence[str] | None = None) -> list[str]:
    """`type_map` extended by any element of `frames` it lacks, in first-seen order."""
    names = list(type_map or [])
    for frame in frames:
        for name, count in zip(frame["atom_names"], frame["atom_numbs"]):
            if count > 0 and str(name) not in names:
                names.append(str(name))
    return names


# -- prepare -------------------------------------------------------------------------------
def prepare_engine_tasks(
    frame_files: Sequence[str | Path],
    fmt: str,
    engine: Engine,
    task: Task,
    out_dir: Path,
    *,
    type_map: Sequence[str] | None = None,
) -> tuple[list[str], list[Path], list[str]]:
    """One task dir per frame of `frame_files` under `out_dir` (``write_engine_tasks``)."""
    frames = [frame for path in frame_files for frame in read_frames(path, fmt)]
    return write_engine_tasks(frames, engine, task, out_dir, type_map=type_map)


def write_engine_tasks(
    frames: Sequence[dpdata.System],
    engine: Engine,
    task: Task,
    out_dir: Path,
    *,
    type_map: Sequence[str] | None = None,
) -> tuple[list[str], list[Path], list[str]]:
    """One task dir per (single-frame) System under `out_dir`. Returns (names, paths,
    type_map).

    Every frame gets the same atom-name order (`type_map`, extended by elements it lacks),
    so the labelled data of all tasks can be merged.
    """
    reason = engine.unsupported_reason(task)
    if reason is not None:
        raise ConfigError(reason)
    names_map = union_type_map(frames, type_map)
    names: list[str] = []
    paths: list[Path] = []
    for index, frame in enumerate(frames):
        frame.sort_atom_names(type_map=names_map)
        name = task_name(index)
        write_task(out_dir / name, frame, task, engine)
        names.append(name)
        paths.append(out_dir / name)
    return names, paths, names_map


# -- run -----------------------------------------------------------------------------------
def killed_from_outside(returncode: int | None, timed_out: bool = False) -> bool:
    """True for a program that died of SIGKILL/SIGTERM (negative return code, or
    128+signal as a shell or MPI launcher reports it), unless its own timeout sent it."""
    if returncode is None or timed_out:
        return False
    return returncode in {-s for s in KILL_SIGNALS} | {128 + s for s in KILL_SIGNALS}


def was_killed(report: TaskReport) -> bool:
    """`killed_from_outside` for a failed task's report."""
    return not report.ok and killed_from_outside(report.returncode, bool(report.timed_out))


def default_keep_files(engine: Engine) -> list[str]:
    """The engine's raw-file globs (inputs, logs) plus every program log."""
    return [*engine.raw_file_globs, *DEFAULT_EXTRA_KEEP]


def keep_raw_files(run_dir: Path, patterns: Sequence[str]) -> list[str]:
    """Delete every file of `run_dir` that no glob in `patterns` matches (a matching
    folder keeps all it holds; "**" keeps everything). Returns the kept files, relative."""
    keep: set[Path] = set()
    for pattern in patterns:
        for path in run_dir.glob(pattern):
            if path.is_dir():
                keep.update(p for p in path.rglob("*") if not p.is_dir())
            else:
                keep.add(path)
    for path in sorted(run_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif path not in keep:
            path.unlink()
    return sorted(p.relative_to(run_dir).as_posix() for p in keep)


def _run_attempt(loaded: tuple[Engine, Task, dpdata.System], task_dir: Path, work_dir: Path,
                 labelled_dir: Path, name: str) -> TaskReport:
    """One attempt in a fresh copy of `task_dir`; a CommandError or TaskFailed is a report."""
    engine, task, frame = loaded
    if work_dir.exists():
        shutil.rmtree(work_dir)
    # A copy, not the task dir itself: in dflow's local mode an input artifact may be a
    # link into the previous step's outputs, which a run must not modify.
    shutil.copytree(task_dir, work_dir, symlinks=False)
    outcome: EngineResult | TaskFailed | CommandError
    try:
        outcome = engine.run(work_dir, task, frame)
    except (TaskFailed, CommandError) as exc:
        outcome = exc
    return outcome_report(name, outcome, labelled_dir)


def outcome_report(name: str, outcome: EngineResult | TaskFailed | CommandError,
                   labelled_dir: Path) -> TaskReport:
    """The report of one engine run from what it gave (`Engine.run`'s result or the error
    it raised; `Engine.run_many` returns either in each task's place): a TaskFailed or
    CommandError is a failed report with its reason and log tail, labels with an absurd
    force (`absurd_label_reason`) too. Good labels are written as deepmd/npy into
    `labelled_dir`, emptied first. The report itself is not written (the caller adds
    `wall_s`, attempts, ... and writes it)."""
    if labelled_dir.exists():  # nothing of an earlier attempt's labels
        shutil.rmtree(labelled_dir)
    labelled_dir.mkdir(parents=True)
    report = TaskReport(task=name, status="succeeded", reason="", log_tail="", n_frames=0)
    if isinstance(outcome, TaskFailed):
        return report.model_copy(update={"status": "failed", "reason": outcome.reason,
                                         "log_tail": outcome.log_tail})
    if isinstance(outcome, CommandError):
        return report.model_copy(update={
            "status": "failed", "reason": outcome.message, "log_tail": outcome.log_tail,
            "returncode": outcome.returncode, "timed_out": outcome.timed_out})
    system = outcome.system
    labels = {"n_frames": system.get_nframes(), "info": outcome.info,
              "energy_eV_per_atom": [float(e) / system.get_natoms() for e in system["energies"]],
              "max_force_eV_per_A": [float(np.linalg.norm(f, axis=1).max())
                                     for f in system["forces"]]}
    absurd = absurd_label_reason(labels["max_force_eV_per_A"])
    if absurd is not None:  # recorded as a failure: never merged, never trained on
        return report.model_copy(update={"status": "failed", "reason": absurd, **labels})
    system.to("deepmd/npy", str(labelled_dir))
    return report.model_copy(update=labels)


#: the largest force a label may hold: eV/Å. Condensed matter near equilibrium or in MD up to
#: melting stays under ~20 eV/Å; EMT Cu with two atoms 1.0 Å apart gives 230 eV/Å, and the
#: 1e9 K MD of issue 19 wrote 1919 eV/Å. Such frames teach a model nothing it should know.
MAX_LABEL_FORCE_EV_PER_A = 100.0


def absurd_label_reason(max_forces: Sequence[float]) -> str | None:
    """Why a task's labels are absurd (a frame's largest force above
    MAX_LABEL_FORCE_EV_PER_A), or None when they are not."""
    worst = max(max_forces, default=0.0)
    if worst <= MAX_LABEL_FORCE_EV_PER_A:
        return None
    frame = list(max_forces).index(worst)
    return (f"absurd label: frame {frame} has a force of {worst:.4g} eV/Å (accepted: <= "
            f"{MAX_LABEL_FORCE_EV_PER_A:g} eV/Å): overlapping atoms or a diverged run; "
            "not used as a label")


def run_task_report(task_dir: Path, work_dir: Path, labelled_dir: Path,
                    name: str | None = None, *, program_retries: int | None = None,
                    keep_files: Sequence[str] | None = None,
                    loaded: tuple[Engine, Task, dpdata.System] | None = None) -> TaskReport:
    """Run the task dir `task_dir` in `work_dir` (a fresh copy each attempt), write its
    labelled frames as deepmd/npy into `labelled_dir` and return the task's report (also
    written as REPORT_FILE there). The engine is loaded once (`loaded`: the
    ``read_task(task_dir)`` a caller already holds).

    A CommandError or TaskFailed becomes a report with status "failed", its reason and the
    log tail: recorded, not raised; anything else is a bug and propagates.
    `program_retries` (an int): a program killed from outside is run again up to that many
    times, and the report records `attempts` and `earlier_attempts`; None runs once and
    records neither. `keep_files` (globs, ``[]`` = the engine's inputs and logs): the raw
    files kept in `work_dir`, listed as `raw_files`; None keeps all and lists none.
    """
    retries = program_retries or 0
    if retries < 0:
        raise ValueError(f"program_retries must be >= 0, got {program_retries}")
    name = name or task_dir.name
    loaded = loaded or read_task(task_dir)
    start = time.monotonic()
    earlier: list[str] = []
    report = _run_attempt(loaded, task_dir, work_dir, labelled_dir, name)
    while was_killed(report) and len(earlier) < retries:
        earlier.append(report.reason)
        report = _run_attempt(loaded, task_dir, work_dir, labelled_dir, name)
    report.wall_s = round(time.monotonic() - start, 3)
    if program_retries is not None:
        if not report.ok and earlier:
            report.reason = f"{report.reason} (after {len(earlier) + 1} attempts)"
        report.attempts, report.earlier_attempts = len(earlier) + 1, earlier
    if keep_files is not None:
        report.raw_files = keep_raw_files(work_dir,
                                          list(keep_files) or default_keep_files(loaded[0]))
    report.write(labelled_dir)
    return report


def run_engine_task(task_dir: Path, work_dir: Path, labelled_dir: Path, name: str | None = None
                    ) -> dict[str, Any]:
    """``run_task_report`` with its report as a plain dict (an OP's `report` parameter)."""
    return run_task_report(task_dir, work_dir, labelled_dir, name).as_dict()


# -- collect -------------------------------------------------------------------------------
def collect_labels(
    labelled_dirs: Sequence[Path],
    out_dir: Path,
    *,
    type_map: Sequence[str] | None = None,
    min_success_ratio: float = 1.0,
    energy_reference: EnergyReference | None = None,
) -> dict[str, Any]:
    """Merge every task's labelled data into `out_dir/data` (deepmd/npy, one folder per
    formula), list failed tasks in `out_dir/failures.json`, write `out_dir/summary.json`.
    With an `energy_reference`, a task whose labels stray from it (`absurd_energy_reason`)
    is a failed task: listed with the reason, not merged.

    Raises SuccessRatioTooLow after writing all of that when fewer than
    `min_success_ratio` of the tasks succeeded.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    multi = dpdata.MultiSystems(type_map=list(type_map) if type_map else None)
    reports: list[TaskReport] = []
    for path in labelled_dirs:
        report = TaskReport.read(Path(path))
        system = dpdata.LabeledSystem(str(path), fmt="deepmd/npy") if report.ok else None
        absurd = (absurd_energy_reason(system, energy_reference)
                  if system is not None and energy_reference is not None else None)
        if absurd is not None:  # recorded as a failure: never merged, never trained on
            report, system = report.model_copy(update={"status": "failed", "reason": absurd}), None
        reports.append(report)
        if system is not None:
            multi.append(system)
    reports.sort(key=lambda r: r.task)
    data_dir = out_dir / DATA_DIR
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir()
    if multi.get_nframes():
        multi.to("deepmd/npy", str(data_dir))
    failures = [{key: getattr(r, key) for key in ("task", "reason", "log_tail")}
                for r in reports if not r.ok]
    (out_dir / FAILURES_FILE).write_text(json.dumps(failures, indent=1))
    n_tasks = len(reports)
    n_ok = n_tasks - len(failures)
    ratio = n_ok / n_tasks if n_tasks else 0.0
    summary = _label_summary(reports, multi, ratio, min_success_ratio)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    if ratio < min_success_ratio:
        raise SuccessRatioTooLow(
            f"{n_ok} of {n_tasks} tasks succeeded ({ratio:.1%}), below the minimum "
            f"{min_success_ratio:.1%}; failed tasks and reasons: {out_dir / FAILURES_FILE}")
    return summary


def _label_summary(reports: Sequence[TaskReport], multi: dpdata.MultiSystems, ratio: float,
                   min_success_ratio: float) -> dict[str, Any]:
    """summary.json of `collect_labels`: counts, the merged data's systems, every task."""
    n_ok = sum(r.ok for r in reports)
    return {
        "n_tasks": len(reports),
        "n_succeeded": n_ok,
        "n_failed": len(reports) - n_ok,
        "success_ratio": ratio,
        "min_success_ratio": min_success_ratio,
        "n_frames": multi.get_nframes(),
        "type_map": list(multi.atom_names),
        "systems": {formula: system.get_nframes() for formula, system in multi.systems.items()},
        "tasks": [{key: getattr(r, key) for key in ("task", "status", "n_frames", "wall_s",
                                                    "energy_eV_per_atom", "max_force_eV_per_A")}
                  for r in reports],
    }
