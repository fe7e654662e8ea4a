"""The process that runs one opshelf run: `python -m opshelf.core.local.driver RUN_DIR [--resume]`.

Started by `opshelf.core.local.runner.launch` in a session of its own (its pid is the run's
process group). It loads run.json and the copied config, builds the workflow through its
plugin, runs it with the local runner, collects results on success and records every
attempt in run.json. Exit codes: 0 succeeded, 1 workflow failed (or crashed), 2 bad input,
3 every step succeeded but the workflow's goal was not reached (EXIT_NOT_CONVERGED),
130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from opshelf.core.errors import UserError
from opshelf.core.rundir import RUN_MARKER_ENV, RunDir
from opshelf.core.workflow import EXIT_NOT_CONVERGED

if TYPE_CHECKING:
    from opshelf.core.local.run import ForkServerProcess


class _Stopped(BaseException):
    """Raised in the driver by SIGINT/SIGTERM: not an Exception, so dflow cannot swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


#: seconds a process left behind by a finished workflow gets to exit after SIGTERM
LEFTOVER_GRACE_S = 5.0


def reap_leftovers(grace_s: float = LEFTOVER_GRACE_S) -> list[str]:
    """Stop every descendant of this process still alive once the workflow has finished.

    Nothing they do can matter any more, but one stuck process (seen once: a step process
    forked while another thread held a lock, blocked for good) would keep the driver from
    exiting, because multiprocessing joins its children at interpreter exit. Returns a line
    per process stopped; the caller logs them (never silently).
    """
    from opshelf.core.process import stop_processes

    leftovers = psutil.Process().children(recursive=True)
    stopped = []
    for proc in leftovers:
        try:
            stopped.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
        except psutil.NoSuchProcess:
            continue
    stop_processes(leftovers, grace_s)
    return stopped


def _report_leftovers() -> None:
    for line in reap_leftovers():
        print(f"opshelf driver: stopped a process left behind by the finished workflow: {line}",
              flush=True)


def _since_start() -> float:
    """Seconds since this process started (its interpreter's start and imports included)."""
    return time.time() - psutil.Process().create_time()


def drive(run: RunDir, *, resume: bool) -> int:
    from opshelf.core.local.run import prestart_forkserver

    # a resume starts the fork server at once, with its last modules: its imports overlap
    # the build below (run_locally replaces it if the workflow now wants other modules)
    server = prestart_forkserver(run.dflow_dir) if resume else None
    if server is not None:
        print(f"opshelf driver: fork server {server.proc.pid} started before the build, "
              f"preloading the last attempt's {len(server.modules)} modules", flush=True)
    try:
        return _drive(run, resume, server)
    finally:
        if server is not None:
            server.stop()  # a no-op once run_locally has stopped it


def _drive(run: RunDir, resume: bool, server: ForkServerProcess | None) -> int:
    from opshelf.core.local import run_locally
    from opshelf.core.local.runner import build_context, resolve_workflow

    record = run.read()
    plugin = resolve_workflow(record.workflow_ref)
    config = plugin.load_config(run.config_path)
    ctx = build_context(run, record)
    if not resume:
        # a resumed run's config is the copy checked when the run was made; the checks
        # (alloy's: a phonopy symmetry search per structure) cost a resume seconds
        plugin.check(config, ctx)
    from opshelf.core.local import use_local_mode

    use_local_mode(run.dflow_dir)
    workflow = plugin.build(config, ctx)
    # the run's name is the dflow workflow id: resume and status find the step dirs by it
    workflow.id = record.run_id
    from opshelf.core.local import reuse

    reuse.install()  # every step records its template fingerprint: a later rerun compares it
    if record.reuse_from:
        reuse.enable(Path(record.reuse_from))
    print(f"opshelf driver: running {record.workflow} as {record.run_id}"
          f"{' (resume)' if resume else ''}; built {_since_start():.1f} s after the driver "
          "started", flush=True)
    phase = run_locally(workflow, str(run.dflow_dir), resume=resume, forkserver=server)
    print(f"opshelf driver: workflow finished: {phase}", flush=True)
    _report_leftovers()
    if phase != "Succeeded":
        run.end_attempt(exit_code=1, status="failed", error=f"workflow phase {phase}")
        return 1
    collect_start = time.monotonic()
    lines = plugin.collect(config, ctx, workflow)
    run.results_dir.mkdir(exist_ok=True)
    (run.results_dir / "summary.txt").write_text("".join(f"{line}\n" for line in lines))
    print(f"opshelf driver: results collected in {time.monotonic() - collect_start:.1f} s",
          flush=True)
    verdict = plugin.outcome(config, ctx)
    if verdict is not None and not verdict.reached:
        print(f"opshelf driver: {verdict.summary}", flush=True)
        run.end_attempt(exit_code=EXIT_NOT_CONVERGED, status="unconverged",
                        outcome=verdict.summary)
        return EXIT_NOT_CONVERGED
    run.end_attempt(exit_code=0, status="succeeded",
                    outcome=verdict.summary if verdict is not None else None)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opshelf.core.local.driver")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    # opshelf's own decisions (reused steps, patches) go to driver.log
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.getLogger("opshelf").addHandler(handler)
    logging.getLogger("opshelf").setLevel(logging.INFO)
    logging.getLogger("opshelf").propagate = False  # dflow configures the root logger too
    run = RunDir(args.run_dir.resolve())
    # every process of this run inherits the marker: a resume can find leftovers by it
    os.environ[RUN_MARKER_ENV] = str(run.path)
    me = psutil.Process()
    run.update(driver_pid=me.pid, driver_pgid=os.getpgid(0), driver_create_time=me.create_time())
    run.start_attempt(pid=me.pid, resume=args.resume)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    try:
        return drive(run, resume=args.resume)
    except _Stopped as stop:
        print(f"opshelf driver: stopped by {stop}", flush=True)
        run.end_attempt(exit_code=128 + stop.signum, status="stopped", error=f"stopped by {stop}")
        return 128 + stop.signum
    except UserError as exc:
        print(f"opshelf driver: error: {exc}", flush=True)
        run.end_attempt(exit_code=2, status="failed", error=str(exc))
        return 2
    except Exception as exc:
        traceback.print_exc()
        run.end_attempt(exit_code=1, status="failed",
                        error=f"driver crashed: {type(exc).__name__}: {exc} (see driver.log)")
        return 1


def exit_now(code: int) -> None:
    """Exit with `code`; without the interpreter's teardown (0.3-0.5 s for the ~2000
    modules a driver imports) when no child process is left for it to join."""
    if psutil.Process().children():
        sys.exit(code)  # multiprocessing's exit handler joins or stops them
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
