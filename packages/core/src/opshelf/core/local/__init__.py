"""opshelf's local runner: dflow debug mode with the right interpreter, safe fan-outs,
resume, and a fork server that makes a trivial step cost ~0.05 s instead of ~0.5 s.

Attributes are imported lazily: a local step imports ``opshelf.core.local.stepmain``
and must not pay for dflow here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opshelf.core.local.run import (
        run_locally,
        step_phases,
        use_local_mode,
        workflow_phase,
    )

__all__ = ["run_locally", "step_phases", "use_local_mode", "workflow_phase"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from opshelf.core.local import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
