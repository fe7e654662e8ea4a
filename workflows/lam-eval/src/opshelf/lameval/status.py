"""`opshelf status` of a lameval run: each model's state and, once it is evaluated, each
task's (datasets, Delta, MD, speed) with its failures counted.

Read from the run's step dirs (one `evaluate-<model>` step per model, its result JSON once
it succeeded); no dflow, pydantic, numpy or model import, so `opshelf status` stays fast (the
`opshelf.status` entry point of this package).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opshelf.core.local.runs import run_steps, text_table
from opshelf.core.rundir import StepInfo

#: the step of each model (workflow.STEP_EVALUATE; workflow imports pydantic and the tasks)
EVALUATE_PREFIX = "evaluate-"
#: result sections of one model, in the order of the table
TASKS = ("accuracy", "delta", "properties", "md", "efficiency")


def status_table(run_dir: Path) -> str | None:
    """A row per model: the state of its evaluate step, then one column per task."""
    steps = run_steps(run_dir)
    models = {k: i for k, i in sorted(steps.items()) if k.startswith(EVALUATE_PREFIX)}
    if not models:
        return None
    rows = [_row(key, info) for key, info in models.items()]
    done = sum(i.phase == "Succeeded" for i in models.values())
    board = [i.phase for k, i in steps.items() if k == "leaderboard"]
    return (text_table(("model", "state", *TASKS), rows)
            + f"\n{done} of {len(models)} models evaluated; leaderboard: "
            + (board[0].lower() if board else "not started"))


def _row(key: str, info: StepInfo) -> tuple[str, ...]:
    result = _result(info) if info.phase == "Succeeded" else None
    if result is None:
        name = key.removeprefix(EVALUATE_PREFIX)
        return (name, info.phase.lower(), *("-" for _ in TASKS))
    return (str(result.get("model", {}).get("name", key)), "done",
            *(_task_cell(result.get(task)) for task in TASKS))


def _result(info: StepInfo) -> dict[str, Any] | None:
    found = sorted((info.path / "outputs" / "artifacts" / "result").rglob("*.json"))
    return json.loads(found[0].read_text()) if found else None


def _task_cell(section: dict[str, Any] | None) -> str:
    """`ok`, `N failed` (of its datasets/elements/runs) or `off` (task not configured)."""
    if not section:
        return "off"
    if "datasets" in section:
        failed = sum(d.get("status") != "succeeded" for d in section["datasets"].values())
        return f"{failed} of {len(section['datasets'])} failed" if failed else "ok"
    failed = section.get("n_failed", 0)
    return f"{failed} failed" if failed else "ok"
