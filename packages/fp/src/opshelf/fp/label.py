"""Label frames with an engine, task by task, without dflow (scripts and notebooks).

The same labelling path as PrepRunFp, run in-process: task dirs are written by core's
`write_engine_tasks` (PrepFp's), each is run by core's `run_task_report` (RunFp's driver:
a failed task is recorded with its reason and log tail, never raised; a program killed from
outside (SIGKILL/SIGTERM) is re-run up to `program_retries` times). Everything missing is
reported before the first task. Each task runs in `workdir/task-NNNNNN`, where all its
files stay.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpdata

from opshelf.core.engine import Engine, EngineSpec, Task, load_engine
from opshelf.core.ops.labelling import KEEP_ALL, run_task_report, write_engine_tasks
from opshelf.fp.common import ordered_unique, present_elements

log = logging.getLogger(__name__)


@dataclass
class LabelFailure:
    """One frame that could not be labelled, with the reason and the log tail."""

    index: int
    task_dir: Path
    reason: str
    log_tail: str = ""
    attempts: int = 1


def _single_frames(
    frames: dpdata.System | dpdata.MultiSystems | Iterable[dpdata.System],
) -> list[dpdata.System]:
    if isinstance(frames, dpdata.System):
        systems: Iterable[dpdata.System] = [frames]
    elif isinstance(frames, dpdata.MultiSystems):
        systems = list(frames.systems.values())
    else:
        systems = frames
    out: list[dpdata.System] = []
    for system in systems:
        out.extend(system[i] for i in range(system.get_nframes()))
    return out


def label_frames(
    frames: dpdata.System | dpdata.MultiSystems | Iterable[dpdata.System],
    engine: Engine | EngineSpec | dict[str, Any],
    workdir: str | Path,
    task: Task | None = None,
    *,
    program_retries: int = 0,
) -> tuple[dpdata.MultiSystems, list[LabelFailure]]:
    """Label every frame with `engine` in `workdir/task-NNNNNN` (PrepFp's names).

    Everything missing (executable, pseudopotential, basis) is reported by `engine.check`
    before the first task runs. A task that fails (TaskFailed, CommandError) is recorded
    as a LabelFailure and the others go on; one whose program was killed from outside is
    first re-run up to `program_retries` times. Every frame keeps the atom-name order of
    the input (names of no atom included).
    """
    if program_retries < 0:
        raise ValueError(f"program_retries must be >= 0, got {program_retries}")
    engine = engine if isinstance(engine, Engine) else load_engine(engine)
    task = task or Task()
    singles = _single_frames(frames)
    engine.check(ordered_unique([el for f in singles for el in present_elements(f)]), task)
    type_map = ordered_unique([str(name) for f in singles for name in f["atom_names"]])
    workdir = Path(workdir)
    labelled = dpdata.MultiSystems()
    failures: list[LabelFailure] = []
    with tempfile.TemporaryDirectory(prefix="opshelf-label-") as scratch:
        names, paths, _ = write_engine_tasks(singles, engine, task, Path(scratch) / "tasks",
                                             type_map=type_map)
        for index, (name, path, frame) in enumerate(zip(names, paths, singles)):
            labelled_dir = Path(scratch) / "labeled" / name
            report = run_task_report(path, workdir / name, labelled_dir, name,
                                     program_retries=program_retries, keep_files=[KEEP_ALL],
                                     loaded=(engine, task, frame))
            if report.ok:
                labelled.append(dpdata.LabeledSystem(str(labelled_dir), fmt="deepmd/npy"))
                continue
            log.warning("task %s failed: %s", workdir / name, report.reason)
            failures.append(LabelFailure(index, workdir / name, report.reason, report.log_tail,
                                         report.attempts or 1))
    return labelled, failures
