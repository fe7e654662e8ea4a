"""Compute properties from a script, in-process, without dflow: the serial entry point.

It runs the same declaration as the dflow super-OPs (`opshelf.props.plan`: relax, then
every property block) with the same three functions per block: `make_property` ->
`run_batch` for each batch of tasks -> `post_property`. A failed task is recorded, not
raised, and `post` decides whether the property can still be computed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opshelf.core.engine import Engine, EngineSpec, load_engine
from opshelf.props.base import read_structure
from opshelf.props.ondisk import make_property, post_property
from opshelf.props.plan import plan_blocks
from opshelf.props.registry import get_property, parse_params
from opshelf.props.relax import RELAXED_FILE, RelaxParams
from opshelf.props.run import run_batch

if TYPE_CHECKING:
    from ase import Atoms

log = logging.getLogger(__name__)


def _engine(engine: Engine | EngineSpec | dict[str, Any]) -> Engine:
    return engine if isinstance(engine, Engine) else load_engine(engine)


def _atoms(structure: Atoms | str | Path) -> Atoms:
    return read_structure(structure) if isinstance(structure, (str, Path)) else structure


def compute_property(params: Any, structure: Atoms | str | Path,
                     engine: Engine | EngineSpec | dict[str, Any], workdir: str | Path, *,
                     results_dir: str | Path | None = None) -> dict[str, Any]:
    """One property of `structure` (taken as the equilibrium structure) with `engine`.

    `params`: a params model or a dict with its `type` ("eos", "elastic", ...). Files:
    `workdir/tasks/*` (inputs), `workdir/run/*` (runs), `workdir/labeled/*` (outputs),
    `workdir/context/`, `workdir/results/<type>.json` and its plot (or in `results_dir`).
    """
    params = parse_params(params)
    prop = get_property(params.type)
    workdir = Path(workdir)
    start = time.monotonic()
    written = make_property(prop, params, _atoms(structure), _engine(engine),
                            workdir / "tasks", workdir / "context")
    for batch in written.batch_paths:
        for report in run_batch(batch, workdir / "run", workdir / "labeled"):
            if not report.ok:
                log.warning("%s: task %s failed: %s", prop.type, report.task, report.reason)
    result = post_property(workdir / "context",
                           [workdir / "labeled" / name for name in written.names],
                           Path(results_dir or workdir / "results"))
    log.info("%s: %d tasks in %d batch(es), %.1f s", prop.type, len(written.names),
             len(written.batch_paths), time.monotonic() - start)
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
    for block in plan_blocks(properties, relax):
        results[block.label] = compute_property(block.params, atoms, engine,
                                                workdir / block.label)
        if block.is_relax:
            atoms = read_structure(workdir / block.label / "results" / RELAXED_FILE)
    return results
