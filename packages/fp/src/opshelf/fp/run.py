"""Running one FP task dir: the pure functions behind `RunFp` (no dflow import).

    task dir --run_fp_task--> labelled data (deepmd/npy) + report + the raw files asked for

On top of core's `run_engine_task` (a failure is a report, never an exception) this adds
two FP rules:

- A program that was killed from outside (SIGKILL/SIGTERM: the OOM killer, a pre-empted
  node, an administrator) is re-run up to `program_retries` times. Any other failure
  (exit status != 0, unconverged SCF, no forces, a timeout) is deterministic and is
  recorded at once. After the last attempt the failure is recorded like any other, so a
  batch never retries a task forever and never loses it.
- Only the raw files asked for are kept in the run dir (`keep_files`, globs; by default
  the engine's inputs and logs), not wavefunctions, restart files or copied
  pseudopotentials.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opshelf.core.engine import TASK_FILE, read_task
from opshelf.core.ops.labelling import TaskReport, run_task_report

#: Signals that mean "stopped from outside", worth running again.
KILL_SIGNALS = (signal.SIGKILL, signal.SIGTERM)
#: Kept besides the engine's own raw files: every log that run_command writes.
DEFAULT_EXTRA_KEEP = ("*.out", "*.err", TASK_FILE)
#: `keep_files` entry that keeps the whole run dir.
KEEP_ALL = "**"


def killed_from_outside(returncode: int | None, timed_out: bool = False) -> bool:
    """True for a program that died of SIGKILL/SIGTERM (negative return code, or
    128+signal as a shell or MPI launcher reports it), unless its own timeout sent it."""
    if returncode is None or timed_out:
        return False
    return returncode in {-s for s in KILL_SIGNALS} | {128 + s for s in KILL_SIGNALS}


def was_killed(report: TaskReport) -> bool:
    """`killed_from_outside` for a task report of core's `run_task_report`."""
    return not report.ok and killed_from_outside(report.returncode, bool(report.timed_out))


def default_keep_files(run_dir: Path) -> list[str]:
    """The engine's raw-file globs (inputs, logs) plus every program log."""
    engine, _, _ = read_task(run_dir)
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


def run_fp_task(
    task_dir: Path,
    work_dir: Path,
    labelled_dir: Path,
    name: str | None = None,
    *,
    program_retries: int = 0,
    keep_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the task dir `task_dir` in `work_dir` (a fresh copy each attempt), write its
    labelled frames into `labelled_dir`, keep the raw files asked for; return the report.

    The report (also `labelled_dir/opshelf-report.json`) is core's, plus `attempts`,
    `earlier_attempts` (the reasons of attempts that were killed) and `raw_files`.
    """
    if program_retries < 0:
        raise ValueError(f"program_retries must be >= 0, got {program_retries}")
    earlier: list[str] = []
    report = run_task_report(task_dir, work_dir, labelled_dir, name)
    while was_killed(report) and len(earlier) < program_retries:
        earlier.append(report.reason)
        report = run_task_report(task_dir, work_dir, labelled_dir, name)
    attempts = len(earlier) + 1
    if not report.ok and attempts > 1:
        report.reason = f"{report.reason} (after {attempts} attempts)"
    patterns = list(keep_files) or default_keep_files(work_dir)
    report.attempts, report.earlier_attempts = attempts, earlier
    report.raw_files = keep_raw_files(work_dir, patterns)
    report.write(labelled_dir)
    return report.as_dict()
