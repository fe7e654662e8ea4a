"""Run one dflow step script in this interpreter, with the cluster clients blocked.

The launcher's fallback when no fork server is running:
``python -m opshelf.core.local.stepmain <stepdir>/script``. Same behaviour as
``python3 script`` (the script runs as ``__main__``, its exit status is ours), minus the
~0.7 s that importing the argo, kubernetes and minio clients would cost.
"""

from __future__ import annotations

import os
import runpy
import sys

from opshelf.core.local import blocker

#: os.pathsep-separated sys.path entries of the driver that the step must see too
#: (so that an OP importable where the workflow was built is importable in the step).
SYSPATH_ENV = "OPSHELF_LOCAL_SYSPATH"


def prepare_sys_path(script: str) -> None:
    """sys.path as ``python3 script`` would have it, plus the driver's extra entries."""
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    for entry in os.environ.get(SYSPATH_ENV, "").split(os.pathsep):
        if entry and entry not in sys.path:
            sys.path.append(entry)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m opshelf.core.local.stepmain SCRIPT")
    script = argv[0]
    blocker.install()
    prepare_sys_path(script)
    sys.argv = [script]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
