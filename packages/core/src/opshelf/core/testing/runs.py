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


def run_results_step_locally(workflow_name: str, config_file: Path, run_path: Path) -> Path:
    """Run the `results` step an exported (Argo) workflow ends with, here, on the artifacts of
    the finished local run at `run_path` (made from `config_file`): the run is resumed with the
    step added, so every finished step is reused and only it runs. Returns the folder it
    wrote, to compare with the `results/` the local driver's collect wrote."""
    from opshelf.core.dflow_build import RESULTS_STEP, results_step
    from opshelf.core.local import run_locally, use_local_mode
    from opshelf.core.local.runner import resolve_workflow
    from opshelf.core.workflow import BuildContext
    from opshelf.core.workflows.outputs import local_step_outputs

    plugin = resolve_workflow(workflow_name)
    config = plugin.load_config(config_file)
    ctx = BuildContext(run_dir=run_path, config_dir=config_file.parent,
                       workflow_id=run_path.name)
    workdir = run_path / "dflow"
    use_local_mode(workdir)
    workflow = plugin.build(config, ctx)
    step = results_step(plugin, workflow_name, config, workflow, mode="local")
    if step is None:
        raise AssertionError(f"workflow {workflow_name!r} names no results_inputs")
    workflow.add(step)
    # dflow returns at once from a workflow whose status says Succeeded: let it walk the
    # (finished, skipped) steps again to reach the added one
    (workdir / run_path.name / "status").write_text("Failed")
    phase = run_locally(workflow, workdir, resume=True)
    if phase != "Succeeded":
        raise AssertionError(f"the results step's run ended {phase}: see {workdir}")
    (written,) = local_step_outputs(workdir, workflow, RESULTS_STEP).artifact_items("results")
    return Path(written)
