"""make and post of a property on disk: the two ends of a property's step graph.

`make_property` writes the task dirs and the context dir; `post_property` reads them back
and computes the result. They sit apart from `base` (the contract every property
implements) because they look properties up in the registry, which imports `base`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opshelf.core.engine import Engine, write_task
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.props.base import (
    CONTEXT_FILE,
    STRUCTURE_FILE,
    Property,
    atoms_to_frame,
    elements_of,
    outcome_from_dir,
    to_jsonable,
)
from opshelf.props.registry import CONTEXT_RECORD, get_property
from opshelf.props.run import labelled_tasks

#: the folder of a packed batch's task dirs (under the tasks dir)
PACKED_BATCH = "packed"

if TYPE_CHECKING:
    from ase import Atoms


@dataclass
class WrittenTasks:
    """The task dirs `make_property` wrote, and the batches `run_batch` runs them in: one
    batch of every task for an engine that packs tasks (`tasks_dir/packed/<task>`), else a
    batch per task (`tasks_dir/<task>`)."""

    names: list[str]
    paths: list[Path]
    batch_names: list[str]
    batch_paths: list[Path]


def n_batches(engine: Engine, n_tasks: int) -> int:
    """How many batches (run steps) `make_property` makes of `n_tasks` tasks."""
    return 1 if engine.packs_tasks else n_tasks


def make_property(prop: Property, params: Any, atoms: Atoms, engine: Engine, tasks_dir: Path,
                  context_dir: Path) -> WrittenTasks:
    """Check the engine, then write every task dir of `prop` and its context dir.

    Everything the engine lacks (executable, potential, pseudopotential for an element) is
    reported by `engine.check` before any task dir is written.
    """
    params = prop.for_engine(params, engine)
    made = prop.make(atoms, params)
    if not made.tasks:
        raise ConfigError(f"{prop.type}: the parameters give no calculation to run")
    for item in made.tasks:
        reason = engine.unsupported_reason(item.task)
        if reason is not None:
            raise ConfigError(f"{prop.type}: {reason}")
    engine.check(elements_of(atoms), made.tasks[0].task)
    if context_dir.exists():
        shutil.rmtree(context_dir)
    context_dir.mkdir(parents=True)
    import ase.io  # lazily, as every ase import of the package

    ase.io.write(context_dir / STRUCTURE_FILE, atoms, format="extxyz")
    (context_dir / CONTEXT_FILE).write_text(made.context.model_dump_json(indent=1))
    for name, text in made.files.items():
        (context_dir / name).write_text(text)
    packed = n_batches(engine, len(made.tasks)) == 1 and len(made.tasks) > 1
    root = tasks_dir / PACKED_BATCH if packed else tasks_dir
    if packed and root.exists():
        shutil.rmtree(root)
    names, paths = [], []
    for item in made.tasks:
        path = root / item.name
        if path.exists():
            shutil.rmtree(path)
        write_task(path, atoms_to_frame(item.atoms), item.task, engine)
        names.append(item.name)
        paths.append(path)
    if packed:
        return WrittenTasks(names, paths, [PACKED_BATCH], [root])
    return WrittenTasks(names, paths, list(names), list(paths))


def post_property(context_dir: Path, labelled_dirs: Sequence[Path], out_dir: Path
                  ) -> dict[str, Any]:
    """Read the context and every task's outcome (`labelled_dirs`: task outputs, or
    folders of a packed batch's), compute the result, write
    `out_dir/<type>.json` (and the plot). Returns the result."""
    context_file = Path(context_dir) / CONTEXT_FILE
    if not context_file.is_file():
        raise MissingInputError(f"{context_dir}: no {CONTEXT_FILE}; not made by make_property")
    context = CONTEXT_RECORD.validate_json(context_file.read_text())
    prop = get_property(context.type)
    outcomes = {}
    for path in labelled_tasks(labelled_dirs):
        outcome = outcome_from_dir(Path(path))
        outcomes[outcome.name] = outcome
    out_dir.mkdir(parents=True, exist_ok=True)
    result = prop.post(context, outcomes, context.params, Path(context_dir), out_dir)
    result = {"property": prop.type, **result,
              "failed_tasks": {o.name: o.reason for o in outcomes.values() if not o.ok}}
    (out_dir / f"{prop.type}.json").write_text(json.dumps(to_jsonable(result), indent=1))
    return to_jsonable(result)
