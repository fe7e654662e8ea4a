"""Generic OPs: engine tasks (PrepEngineTasks, RunEngineTask, CollectLabels) and the
results step of exported workflows (WriteResults).

The OP classes import dflow, so they load on first access; the pure functions in
`opshelf.core.ops.labelling` need no dflow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CollectLabels", "PrepEngineTasks", "RunEngineTask", "WriteResults"]


def __getattr__(name: str) -> Any:
    if name == "WriteResults":
        from opshelf.core.ops import results

        return results.WriteResults
    if name in __all__:
        from opshelf.core.ops import engine_tasks

        return getattr(engine_tasks, name)
    raise AttributeError(f"module 'opshelf.core.ops' has no attribute {name!r}")
