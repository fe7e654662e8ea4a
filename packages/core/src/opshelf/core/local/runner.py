"""Run lifecycle: create a run, launch its driver, watch it, resume it, rerun it.

The driver (`python -m opshelf.core.local.driver RUN_DIR`) runs in a session of its own,
so the run is one process group: Ctrl-C is forwarded to that group, and `resume` can kill
whatever a crashed run left behind before it relaunches. Everything a command needs to
know about a run is in its directory (see `opshelf.core.rundir`).

No dflow import here: building and running the workflow happen in the driver process. No
pydantic either, until a command needs a config (`create_run`): `opshelf resume` and
`opshelf stop` start without it (0.1-0.3 s a call).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import psutil

from opshelf.core.errors import MissingInputError, UserError
from opshelf.core.local.progress import RunProgress, fmt_elapsed
from opshelf.core.local.runs import format_counts, live_phases, status_table_ref
from opshelf.core.rundir import FINISHED, RunDir, RunRecord, phase_counts

if TYPE_CHECKING:
    from opshelf.core.execution import Mode
    from opshelf.core.workflow import BuildContext, WorkflowPlugin

#: seconds between two looks at the driver and the steps while watching a run
POLL_S = 0.5
#: seconds the driver gets to stop after SIGINT/SIGTERM before its group is killed
STOP_GRACE_S = 10.0


def resolve_workflow(ref: str) -> WorkflowPlugin:
    """`opshelf.core.workflow.resolve_workflow`, imported when first needed."""
    from opshelf.core.workflow import resolve_workflow as resolve

    return resolve(ref)


def build_context(run: RunDir, record: RunRecord, *, mode: Mode = "local") -> BuildContext:
    from opshelf.core.workflow import BuildContext

    return BuildContext(run_dir=run.path, config_dir=Path(record.source_config).parent,
                        mode=mode, workflow_id=record.run_id)


def create_run(
    workflow: str,
    config_path: str | Path,
    *,
    runs_root: str | Path,
    name: str | None = None,
    reuse_from: Path | None = None,
) -> RunDir:
    """Validate the config and the plugin's checks, then make the run directory.

    Nothing is written before the checks pass: a bad config leaves no run behind."""
    from opshelf.core.secrets import check_env_references, refuse_config_credentials
    from opshelf.core.workflow import BuildContext

    plugin = resolve_workflow(workflow)
    config_file = Path(config_path)
    if not config_file.is_file():
        raise MissingInputError(f"config file not found: {config_file}")
    config = plugin.load_config(config_file)
    refuse_config_credentials(config.model_dump(mode="json"), config_file)
    check_env_references(config.model_dump(mode="json"), config_file)
    path = RunDir.new_path(Path(runs_root), plugin.name, name)
    ctx = BuildContext(run_dir=path.resolve(), config_dir=config_file.resolve().parent,
                       mode="local", workflow_id=path.name)
    plugin.check(config, ctx)
    return RunDir.create(path, workflow=plugin.name, workflow_ref=workflow,
                         config_file=config_file, reuse_from=reuse_from,
                         status_table=status_table_ref(plugin.name))


# -- launching and watching --------------------------------------------------------------------

def launch(run: RunDir, *, resume: bool = False, detach: bool = False,
           progress: bool = True, stream: TextIO | None = None) -> int:
    """Start the run's driver in a new session; unless detached, watch it and return its
    exit code (0 succeeded, 1 workflow failed, 2 bad input, 3 every step succeeded but the
    goal was not reached (EXIT_NOT_CONVERGED), 130/143 interrupted)."""
    out = stream or sys.stderr
    argv = [sys.executable, "-m", "opshelf.core.local.driver", str(run.path)]
    if resume:
        argv.append("--resume")
    with open(run.log_path, "ab") as log:
        proc = subprocess.Popen(argv, cwd=run.path, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        created = None
    run.update(driver_pid=proc.pid, driver_pgid=proc.pid, driver_create_time=created)
    if detach:
        print(f"opshelf: run {run.name} started in the background (driver pid {proc.pid})\n"
              f"  follow it:  opshelf status {run.path}\n  log:        {run.log_path}", file=out)
        return 0
    return _watch(run, proc, progress=progress, out=out)


def _watch(run: RunDir, proc: subprocess.Popen[bytes], *, progress: bool, out: TextIO) -> int:
    start = time.monotonic()
    stopping: list[float] = []  # times of Ctrl-C / SIGTERM received

    def forward(signum: int, _frame: object) -> None:
        # The driver records 'stopped' and stops its steps; a second signal kills the group.
        stopping.append(time.monotonic())
        sig = signum if len(stopping) == 1 else signal.SIGKILL
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with RunProgress(run, out) if progress else nullcontext() as bar:
            code = _wait(proc, bar, stopping, forward)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if code < 0:  # killed by a signal: report it the way a shell does
        code = 128 - code
    if code != 0 and run.read().status == "running":
        # killed without the chance to record it (SIGKILL, OOM killer)
        run.end_attempt(exit_code=code, status="killed",
                        error=f"driver died (exit status {code})")
    print(_final_summary(run, code, time.monotonic() - start), file=out, flush=True)
    return code


def _wait(proc: subprocess.Popen[bytes], bar: RunProgress | None, stopping: list[float],
          forward: Callable[[int, object], None]) -> int:
    """Wait for the driver, updating the progress every poll; SIGKILL its group when a
    requested stop takes longer than STOP_GRACE_S."""
    while True:
        try:
            code = proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        else:
            if bar is not None:
                bar.update()  # the steps that ended after the last poll: their lines too
            return code
        if stopping and time.monotonic() - stopping[0] > STOP_GRACE_S:
            forward(signal.SIGKILL, None)
        if bar is not None:
            bar.update()


def _final_summary(run: RunDir, code: int, elapsed_s: float) -> str:
    record = run.read()
    counts = phase_counts(live_phases(run, driver_alive=False))
    status = "finished, not converged" if record.status == "unconverged" else record.status
    head = (f"opshelf: run {run.name} {status} after {fmt_elapsed(elapsed_s)} "
            f"({counts['Succeeded']} steps done, {counts['Failed']} steps failed)")
    lines = [head]
    if record.status in FINISHED:
        lines.append(f"  results: {run.results_dir}")
        summary = run.results_dir / "summary.txt"
        if summary.is_file():
            lines += ["  " + line for line in summary.read_text().splitlines()]
        if record.outcome:
            # the verdict last: what a script or a person reads first
            lines.append(f"opshelf: {record.outcome}")
    else:
        if record.error:
            lines.append("  " + record.error.strip().replace("\n", "\n  "))
        lines.append(f"  details: opshelf status {run.path}")
        lines.append(f"  log:     {run.log_path}")
        lines.append(f"  steps:   {format_counts(dict(counts))}")
        if record.status in ("failed", "stopped", "killed"):
            lines.append(f"  resume:  opshelf resume {run.path}")
    return "\n".join(lines)


# -- resume, rerun -----------------------------------------------------------------------------

def kill_leftovers(run: RunDir, *, timeout_s: float = 5.0) -> list[int]:
    """SIGKILL every process a dead driver left behind; returns their pids."""
    procs = run.leftover_processes()
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=timeout_s)
    return [p.pid for p in procs]


def _check_env_references(run: RunDir) -> None:
    """What `create_run` checks of a config's `{env: NAME}` references, again for a resume:
    the variables are read from this shell, which may not be the one that made the run. On
    the run's YAML as written (no pydantic, no plugin: a resume stays quick to start)."""
    import yaml

    from opshelf.core.secrets import check_env_references

    check_env_references(yaml.safe_load(run.config_path.read_text()), run.config_path)


def resume(run: RunDir, *, detach: bool = False, progress: bool = True,
           stream: TextIO | None = None) -> int:
    """Relaunch a stopped run: steps that had Succeeded are not run again."""
    out = stream or sys.stderr
    driver = run.driver_process()
    if driver is not None:
        raise UserError(f"run {run.name} is still running (driver pid {driver.pid}); "
                        f"stop it first (Ctrl-C, or kill -INT -{run.read().driver_pgid})")
    record = run.read()
    if record.status in FINISHED:
        print(f"opshelf: run {run.name} has already finished ({record.outcome or record.status});"
              " nothing to resume", file=out)
        return 0
    _check_env_references(run)
    killed = kill_leftovers(run)
    if killed:
        print(f"opshelf: killed {len(killed)} leftover process(es) of run {run.name}", file=out)
    return launch(run, resume=True, detach=detach, progress=progress, stream=stream)


def rerun(old_run: RunDir, new_config: str | Path, *, runs_root: Path | None = None,
          name: str | None = None, detach: bool = False, progress: bool = True,
          stream: TextIO | None = None) -> tuple[RunDir, int]:
    """A new run of the same workflow with `new_config`, reusing every finished step of
    `old_run` whose inputs (parameters and artifact contents) are unchanged."""
    if old_run.driver_process() is not None:
        raise UserError(f"run {old_run.name} is still running: its steps may still change; "
                        "wait for it or stop it before rerunning")
    record = old_run.read()
    new = create_run(record.workflow_ref, new_config, runs_root=runs_root or old_run.path.parent,
                     name=name, reuse_from=old_run.workflow_dir())
    return new, launch(new, detach=detach, progress=progress, stream=stream)
