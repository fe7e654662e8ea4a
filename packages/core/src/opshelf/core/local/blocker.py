"""Keep dflow's cluster client libraries out of local steps.

dflow imports the argo-workflows, kubernetes and minio clients at import time, each
inside ``try/except`` so that dflow still works without them. A local (debug-mode) step
never talks to a cluster or an object store, yet importing those three libraries is
about 70 % of a step's start-up (FIELD-NOTES: ``import dflow, dflow.python`` 0.95 s,
0.25 s with them refused). This finder makes their import fail fast, exactly as if
they were not installed, which is a state dflow already supports.

Stdlib only: it is imported by the step launcher before anything else.
"""

from __future__ import annotations

import importlib.abc
import sys

#: Top-level packages a local step never needs.
BLOCKED_TOP_LEVEL: frozenset[str] = frozenset({"argo", "kubernetes", "minio"})


class ClusterClientBlocker(importlib.abc.MetaPathFinder):
    """Refuse to import the cluster client libraries (and their submodules)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in BLOCKED_TOP_LEVEL:
            raise ModuleNotFoundError(
                f"{fullname!r} is not importable in an opshelf local step: the cluster client "
                "libraries are blocked to keep steps fast (opshelf.core.local.blocker)",
                name=fullname,
            )
        return None


def install() -> None:
    """Put the blocker first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, ClusterClientBlocker) for f in sys.meta_path):
        sys.meta_path.insert(0, ClusterClientBlocker())
