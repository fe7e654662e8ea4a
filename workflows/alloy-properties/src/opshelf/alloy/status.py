"""`opshelf status` of an alloy run: the state of every structure x interaction x property.

Read from the run's step dirs (keys `<structure>--<interaction>--<property>--<step>`); no
dflow, pydantic or science import, so `opshelf status` stays fast (the `opshelf.status`
entry point of this package).
"""

from __future__ import annotations

from pathlib import Path

from opshelf.core.local.runs import group_phases, group_state, run_steps, text_table

#: key depth of one property block: structure, interaction, property
BLOCK_DEPTH = 3


def status_table(run_dir: Path) -> str | None:
    """A row per structure, interaction and property (relax first): its state and steps."""
    groups = group_phases(run_steps(run_dir), BLOCK_DEPTH)
    if not groups:
        return None
    order = sorted(groups, key=lambda g: (g[0], g[1], g[2] != "relax", g[2]))
    rows = [(s, i, p, group_state(groups[(s, i, p)])) for s, i, p in order]
    done = sum(group_state(c) == "done" for c in groups.values())
    return (text_table(("structure", "interaction", "property", "state"), rows)
            + f"\n{done} of {len(groups)} property blocks done")
