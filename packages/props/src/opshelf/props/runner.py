"""Compute properties from a script, task after task, without dflow.

The same make -> run -> post functions as the dflow OPs (`opshelf.props.ops`), with
core's `run_task_report` running each task: a failed task is recorded, not raised, and
`post` decides whether the property can still be computed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opshelf.core.engine import Engine, EngineSpec, load_engine
from opshelf.core.ops.labelling import run_task_report
from opshelf.props.base import read_structure
from opshelf.props.ondisk import make_property, post_property
from opshelf.props.registry import get_property, parse_params
from opshelf.props.relax import RELAXED_FILE, RelaxParams

if TYPE_CHECKING:
    from ase import Atoms

log = logging.getLogger(__name__)


def _engine(engine: Engine | EngineSpec | dict[str, Any]) -> Engine:
    return engine if isinstance(engine, Engine) else load_engine(engine)


def _atoms(structure: Atoms | str | Path) -> Atoms:
    return read_structure(structure) if isinstance(structure, (str, Path)) else structure


def compute_property(params: Any, structure: Atoms | str | Path,
                     engine: Engine | EngineSpec | dict[str, Any], workdir: str | Path
                     ) -> dict[str, Any]:
    """One property of `structure` (taken as the equilibrium structure) with `engine`.

    `params`: a params model or a dict with its `type` ("eos", "elastic", ...). Files:
    `workdir/tasks/*` (inputs), `workdir/run/*` (runs), `workdir/labeled/*` (outputs),
    `workdir/context/`, `workdir/results/<type>.json` and its plot.
    """
    params = parse_params(params)
    prop = get_property(params.type)
    engine = _engine(engine)
    workdir = Path(workdir)
    start = time.monotonic()
    names, paths = make_property(prop, params, _atoms(structure), engine, workdir / "tasks",
                                 workdir / "context")
    labelled = []
    for name, path in zip(names, paths):
        report = run_task_report(path, workdir / "run" / name, workdir / "labeled" / name, name)
        if not report.ok:
            log.warning("%s: task %s failed: %s", prop.type, name, report.reason)
        labelled.append(workdir / "labeled" / name)
    result = post_property(workdir / "context", labelled, workdir / "results")
    log.info("%s: %d tasks in %.1f s", prop.type, len(names), time.monotonic() - start)
    return result


def compute_properties(structure: Atoms | str | Path,
                       engine: Engine | EngineSpec | dict[str, Any],
                       properties: Sequence[Any], workdir: str | Path, *,
                       relax: RelaxParams | dict[str, Any] | None = None
                       ) -> dict[str, dict[str, Any]]:
    """Relax `structure` (unless `relax` is None), then compute every property on the
    relaxed structure. Returns {name: result}; names are the types, numbered when a
    type repeats (``eos``, ``eos-2``)."""
    engine = _engine(engine)
    workdir = Path(workdir)
    atoms = _atoms(structure)
    results: dict[str, dict[str, Any]] = {}
    if relax is not None:
        results["relax"] = compute_property(parse_params({"type": "relax", **relax})
                                            if isinstance(relax, dict) else relax,
                                            atoms, engine, workdir / "relax")
        atoms = read_structure(workdir / "relax" / "results" / RELAXED_FILE)
    for raw in properties:
        params = parse_params(raw)
        name = params.type
        count = 2
        while name in results:
            name = f"{params.type}-{count}"
            count += 1
        results[name] = compute_property(params, atoms, engine, workdir / name)
    return results
