"""Label frames with an engine, task by task, without dflow (scripts and notebooks).

The same contract as PrepRunFp: everything missing is reported before the first task, a
failed task is recorded with its reason and log tail (never raised), and a program killed
from outside (SIGKILL/SIGTERM) is re-run up to `program_retries` times.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpdata

from opshelf.core.engine import Engine, EngineSpec, Task, TaskFailed, load_engine, write_task
from opshelf.core.errors import CommandError
from opshelf.core.ops.labelling import task_name
from opshelf.fp.common import ordered_unique, present_elements
from opshelf.fp.run import killed_from_outside

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


def _run_once(
    engine: Engine, frame: dpdata.System, task: Task, task_dir: Path
) -> dpdata.LabeledSystem:
    if task_dir.exists():  # a fresh dir for every attempt: no state of a killed run
        shutil.rmtree(task_dir)
    write_task(task_dir, frame, task, engine)
    return engine.run(task_dir, task, frame).system


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
    first re-run up to `program_retries` times.
    """
    if program_retries < 0:
        raise ValueError(f"program_retries must be >= 0, got {program_retries}")
    engine = engine if isinstance(engine, Engine) else load_engine(engine)
    task = task or Task()
    singles = _single_frames(frames)
    elements = ordered_unique([el for frame in singles for el in present_elements(frame)])
    engine.check(elements, task)
    workdir = Path(workdir)
    labelled = dpdata.MultiSystems()
    failures: list[LabelFailure] = []
    for index, frame in enumerate(singles):
        task_dir = workdir / task_name(index)
        for attempt in range(1, program_retries + 2):
            try:
                labelled.append(_run_once(engine, frame, task, task_dir))
                break
            except (TaskFailed, CommandError) as exc:
                killed = isinstance(exc, CommandError) and killed_from_outside(
                    exc.returncode, exc.timed_out
                )
                if killed and attempt <= program_retries:
                    log.warning("task %s: program killed, running it again", task_dir)
                    continue
                reason = exc.reason if isinstance(exc, TaskFailed) else exc.args[0]
                if attempt > 1:
                    reason = f"{reason} (after {attempt} attempts)"
                log.warning("task %s failed: %s", task_dir, reason)
                failures.append(LabelFailure(index, task_dir, reason, exc.log_tail, attempt))
                break
    return labelled, failures
