"""Entry-point discovery: workflows, engines and models plug in by name.

Groups: `opshelf.workflows`, `opshelf.ops`, `opshelf.engines`, `opshelf.models`. A package
registers its plugins in its pyproject; nothing in core lists them.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from opshelf.core.errors import ConfigError

GROUPS = ("opshelf.workflows", "opshelf.ops", "opshelf.engines", "opshelf.models")


@cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    return sorted(_entry_points(group))


def entry_point_value(group: str, name: str) -> str | None:
    """The `module:attr` that `name` in `group` points to (not imported), or None."""
    ep = _entry_points(group).get(name)
    return ep.value if ep is not None else None


def describe(group: str) -> dict[str, str]:
    """name -> 'module:attr (distribution version)' for `opshelf list`."""
    out = {}
    for name, ep in sorted(_entry_points(group).items()):
        dist = f" ({ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
        out[name] = f"{ep.value}{dist}"
    return out


def load_entry_point(group: str, name: str, *, what: str) -> Any:
    eps = _entry_points(group)
    if name not in eps:
        known = sorted(eps)
        hint = difflib.get_close_matches(name, known, n=1)
        msg = f"unknown {what} {name!r}"
        msg += f"; did you mean {hint[0]!r}?" if hint else ""
        msg += f" Installed: {', '.join(known) if known else 'none'}."
        raise ConfigError(msg)
    return eps[name].load()


def load_group(group: str) -> dict[str, Any]:
    return {name: ep.load() for name, ep in sorted(_entry_points(group).items())}
