"""Read the outputs of a finished step of a local-mode (dflow debug) run.

`run_locally` restores dflow's global config when it returns, so `Workflow.query_step`
would look in the wrong place afterwards; this sets debug mode and the workdir around it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dflow import Workflow


@dataclass
class StepOutputs:
    """Output parameters (values) and artifacts (local paths) of one step, by name.

    An artifact's path is dflow's artifact root: it holds the OP's returned path(s) below
    it, as relative paths; `artifact_items` lists them.
    """

    parameters: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)

    def artifact_items(self, name: str) -> list[Path]:
        return artifact_items(self.artifacts[name])


def artifact_items(root: Path) -> list[Path]:
    """The paths an OP returned for one output artifact, inside dflow's artifact `root`.

    dflow records them, in order, in the catalog files of `root/.dflow/`.
    """
    import json

    catalog = root / ".dflow"
    if not catalog.is_dir():
        return [root]
    entries: list[tuple[int, str]] = []
    for path in sorted(catalog.iterdir()):
        for item in json.loads(path.read_text())["path_list"]:
            entries.append((int(item.get("order", 0)), item["dflow_list_item"]))
    return [root / rel for _, rel in sorted(entries)]


def local_step_outputs(workdir: str | os.PathLike[str], workflow: Workflow, key: str
                       ) -> StepOutputs:
    """Outputs of the step with `key` of `workflow`, run locally in `workdir`.

    Raises FileNotFoundError when the run or the step is not there.
    """
    from dflow import config as dflow_config

    wf_dir = Path(workdir) / str(workflow.id)
    if not (wf_dir / key).is_dir():
        raise FileNotFoundError(f"step {key!r} not found in {wf_dir}")
    saved = {name: dflow_config[name] for name in ("mode", "debug_workdir")}
    dflow_config.update(mode="debug", debug_workdir=str(workdir))
    try:
        steps = workflow.query_step(key=key)
    finally:
        dflow_config.update(saved)
    if not steps:
        raise FileNotFoundError(f"step {key!r} not found in {wf_dir}")
    outputs = steps[0].outputs
    result = StepOutputs()
    for name, par in (getattr(outputs, "parameters", None) or {}).items():
        if not name.startswith("dflow_") and hasattr(par, "value"):
            result.parameters[name] = par.value
    for name, art in (getattr(outputs, "artifacts", None) or {}).items():
        path = getattr(art, "local_path", None)
        if path is not None and not name.startswith("dflow_"):
            result.artifacts[name] = Path(path)
    return result
