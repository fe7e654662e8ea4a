"""Kill a real run mid-way and check what `opshelf resume` does (tests of any workflow)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from opshelf.core.rundir import RunDir


def sigkill_after_steps(argv: Sequence[str], run_path: Path, n_succeeded: int, *,
                        env: Mapping[str, str] | None = None, timeout_s: float = 600) -> RunDir:
    """Start `argv` (an `opshelf run ...` command making the run at `run_path`), wait until
    `n_succeeded` of its steps have succeeded, then SIGKILL the run's whole process group
    (driver, fork server, steps, engines) as a crash or an OOM kill would. Fails the test
    when the run ends or the time is up first."""
    proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = RunDir(run_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            phases = run.step_phases() if (run_path / "run.json").exists() else {}
            if sum(i.phase == "Succeeded" for i in phases.values()) >= n_succeeded:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended or timed out before {n_succeeded} steps "
                                     f"succeeded (exit {proc.returncode}): {err.decode()[-2000:]}")
            time.sleep(0.2)
        os.killpg(run.read().driver_pgid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return run


def succeeded_step_stamps(run: RunDir, keys: Sequence[str] | None = None
                          ) -> dict[str, list[tuple[str, int]]]:
    """{step key: sorted (file name, mtime ns)} of the run's succeeded steps (or of `keys`):
    a finished step that ran again would rewrite its files."""
    steps = run.step_phases()
    chosen = keys if keys is not None else [k for k, i in steps.items()
                                            if i.phase == "Succeeded"]
    return {k: sorted((p.name, p.stat().st_mtime_ns) for p in Path(steps[k].path).rglob("*")
                      if p.is_file()) for k in chosen}
