"""run: a property's task dirs -> labelled outputs and reports, in as few program starts as
the engine allows.

An engine with `packs_tasks` (LAMMPS) runs every task of a batch in one process
(`Engine.run_many`: the binary, the potential and any plugin load once); any other engine
runs each task on its own through core's `run_task_report`. Either way every task ends as
core's run would leave it: `run_root/<task>` (its run dir), `labelled_root/<task>`
(deepmd/npy frames and the report, REPORT_FILE), a failure recorded rather than raised.

A batch is a folder `make_property` wrote: one task dir (it holds TASK_FILE), or the
folder of a packed batch holding the task dirs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from opshelf.core.engine import TASK_FILE, read_task
from opshelf.core.errors import MissingInputError
from opshelf.core.ops.labelling import REPORT_FILE, TaskReport, outcome_report, run_task_report

#: a packed batch's copies of its task dirs while they run (removed afterwards)
SCRATCH_DIR = ".packed"


def batch_tasks(batch: Path) -> list[Path]:
    """The task dirs of a batch folder: itself when it is one, else its task subfolders."""
    batch = Path(batch)
    if (batch / TASK_FILE).is_file():
        return [batch]
    found = sorted(p for p in batch.iterdir() if (p / TASK_FILE).is_file()) \
        if batch.is_dir() else []
    if not found:
        raise MissingInputError(f"{batch}: neither a task dir nor a batch of them "
                                f"(no {TASK_FILE}); not written by make_property")
    return found


def labelled_tasks(paths: Sequence[Path]) -> list[Path]:
    """Every task's labelled dir among `paths`: a labelled dir (it holds REPORT_FILE) or
    the folder of a packed batch's labelled dirs."""
    out: list[Path] = []
    for path in map(Path, paths):
        if (path / REPORT_FILE).is_file() or not path.is_dir():
            out.append(path)
        else:
            out.extend(sorted(p for p in path.iterdir() if (p / REPORT_FILE).is_file()))
    return out


def run_batch(batch: Path, run_root: Path, labelled_root: Path) -> list[TaskReport]:
    """Run every task of `batch` (see `batch_tasks`): packed into one program start when
    its engine packs tasks, else one by one. Returns the reports in task order."""
    tasks = batch_tasks(batch)
    loaded = [read_task(path) for path in tasks]
    engine = loaded[0][0]
    if not engine.packs_tasks or len(tasks) < 2:
        return [run_task_report(path, run_root / path.name, labelled_root / path.name,
                                path.name) for path in tasks]
    scratch = run_root / SCRATCH_DIR
    if scratch.exists():
        shutil.rmtree(scratch)
    for path in tasks:  # copies: an input artifact may be a link into another step's output
        shutil.copytree(path, scratch / path.name, symlinks=False)
    start = time.monotonic()
    outcomes = engine.run_many([(scratch / path.name, task, frame)
                                for path, (_, task, frame) in zip(tasks, loaded)])
    wall = round((time.monotonic() - start) / len(tasks), 3)
    reports = []
    for path, outcome in zip(tasks, outcomes):
        work_dir = run_root / path.name
        if work_dir.exists():
            shutil.rmtree(work_dir)
        shutil.move(scratch / path.name, work_dir)
        report = outcome_report(path.name, outcome, labelled_root / path.name)
        report.wall_s = wall
        report.write(labelled_root / path.name)
        reports.append(report)
    shutil.rmtree(scratch)
    return reports

