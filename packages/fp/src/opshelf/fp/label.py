"""Label frames with an engine, task by task, without dflow."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpdata

from opshelf.core.engine import Engine, EngineSpec, Task, TaskFailed, load_engine, write_task
from opshelf.core.errors import CommandError
from opshelf.fp.common import ordered_unique, present_elements

log = logging.getLogger(__name__)


@dataclass
class LabelFailure:
    """One frame that could not be labelled, with the reason and the log tail."""

    index: int
    task_dir: Path
    reason: str
    log_tail: str = ""


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
) -> tuple[dpdata.MultiSystems, list[LabelFailure]]:
    """Label every frame with `engine` in `workdir/task.NNNNNN`.

    Everything missing (executable, pseudopotential, basis) is reported by `engine.check`
    before the first task runs. A task that fails (TaskFailed, CommandError) is recorded
    as a LabelFailure and the others go on.
    """
    engine = engine if isinstance(engine, Engine) else load_engine(engine)
    task = task or Task()
    singles = _single_frames(frames)
    elements = ordered_unique([el for frame in singles for el in present_elements(frame)])
    engine.check(elements, task)
    workdir = Path(workdir)
    labelled = dpdata.MultiSystems()
    failures: list[LabelFailure] = []
    for index, frame in enumerate(singles):
        task_dir = workdir / f"task.{index:06d}"
        write_task(task_dir, frame, task, engine)
        try:
            result = engine.run(task_dir, task, frame)
        except (TaskFailed, CommandError) as exc:
            reason = exc.reason if isinstance(exc, TaskFailed) else str(exc).splitlines()[0]
            log.warning("task %s failed: %s", task_dir, reason)
            failures.append(LabelFailure(index, task_dir, reason, exc.log_tail))
            continue
        labelled.append(result.system)
    return labelled, failures
