"""Run the tests of a package's source copy (e.g. one `opshelf new-op` just changed) in a
fresh pytest process, with the copy ahead of any installed version of it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def run_package_tests(package: Path, args: Sequence[str] = ("tests",), *,
                      timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -q ARGS` in `package` with its `src/` first on PYTHONPATH (the copy
    shadows the installed package) and this interpreter's bin/ first on PATH (dflow's local
    steps start `python3` from PATH). Returns the finished process; the caller asserts."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(package / "src"), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=package, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
