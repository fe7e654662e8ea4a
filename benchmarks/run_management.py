"""What `opshelf status` and `opshelf resume` cost of their own.

- status_s: median wall time of `opshelf status RUN` (a new process, as a user types it)
  over --repeats calls, on a finished run of core's `label` workflow (9 steps) and, with
  --status-run, on another run too (an alloy or cl run: their tables read step outputs).
- resume_overhead_s: `opshelf resume` of a run SIGKILLed with 2 steps left, minus the time
  in which at least one step was running (the union of the steps' [start, end] intervals,
  from the launcher.json each step writes: wall_s less server_wait_s, the time it waited for
  the fork server's imports, and its time of writing). What is left is
  the resume's own cost: the driver's start and imports, the workflow's check and build,
  the fork server, dflow's walk over the finished steps, collect and exit.

The run: examples/label-cu-emt (24 Cu frames, EMT, 6 run-task slices), killed once 6 of
its 8 steps succeeded. Runs go to --workdir (default a temporary directory).

Measurements on the 2-core development machine, shared with other people's jobs (the
1-minute load average as printed; the machine was never idle). "old"/"new" interleaved in
one session: the fork server waited for before the workflow starts (old) or started
alongside dflow's start (new); the wait of a step for the server is not counted as step time.

    2026-12-05 21:20  load 7.3   label: status_s=0.214  resume_overhead_s=6.30 (resume still
                                 checked the config)
    2026-12-05 21:40  load 0.6-0.9, label, 3 rounds:
                      old resume_overhead_s 3.59, 2.93, 3.30  (wall 3.66, 3.09, 3.51 s)
                      new resume_overhead_s 2.80, 3.03, 2.80  (wall 2.99, 3.21, 2.98 s)
                      status_s 0.10-0.16
    2026-12-05 21:41  load 1.0-1.2, alloy cu-eam (24 steps, killed with 2 left; 5-6 steps ran
                      again): old resume_overhead_s=11.55, new 10.17; status_s 0.08

    2026-12-06 02:46  load 0.2 (the one idle moment), label, HEAD before the changes below:
                      resume_overhead_s=3.54 (wall 3.75 s), status_s 0.114
    2026-12-06 03:36-03:49  load 17-27 all along (other sessions' cl and lameval runs), label,
                      6 interleaved rounds, "old" (HEAD at 02:46) vs "new": the fork server
                      of a resume starts before the build with the last attempt's modules,
                      it and the driver exit without interpreter teardown, the CLI imports
                      no pydantic before launching:
                      old resume_overhead_s 13.72, 25.31, 11.06, 11.41, 10.26 (median 11.41)
                      new resume_overhead_s 11.16, 8.95, 21.59, 10.48, 9.66, 8.61 (median 10.07)
                      server_wait_s (the longest wait of a resumed step for the fork server):
                      old 1.72-2.50, new 0.00. The overheads' spread (2.5x within one side)
                      is the load's; no idle-machine figure for "new" yet.
                      alloy cu-eam (now 7 steps, killed with 2 left), new only (old core no
                      longer imports with today's workflows): resume_overhead_s 15.57, 38.91,
                      64.92 at load 20-22; server_wait_s 2.1-4.6 (its server imports pymatgen,
                      phonopy and matplotlib, longer than alloy's build).
                      alloy, the driver alone resuming one killed run (copied back each time),
                      the early server off/on by the presence of forkserver.modules.json,
                      interleaved, load 20-27: wall off 64.8, 23.9, 66.8 s, on 59.9, 27.3,
                      32.1 s; build off 8.9, 3.8, 4.2 s, on 21.8, 9.2, 17.4 s (the early
                      server's imports compete with the build for 2 loaded cores); steps'
                      server wait off 11.9, 5.9, 4.5 s, on 9.9, 3.6, 1.3 s. Not resolved at
                      this load: measure again on an idle machine.
    2026-12-06 06:14  IDLE machine (load 0.0-0.5, nothing else running), HEAD fff75a2, 3 runs
                      of label (--repeats 5): resume_overhead_s 1.69, 1.76, 1.54 (issue 20's
                      target: under 3 s), server_wait_s 0.00-0.06, status_s 0.078-0.084;
                      alloy cu-eam (7 steps, killed with 2 left, --repeats 3):
                      resume_overhead_s 2.45, server_wait_s 0.48, status_s 0.058.
  dflow's walk over finished blocks (~5 s of an alloy resume on 2026-12-05) went with
  opshelf-props' packing (one step per property: 7 steps, not 24-46). What a walk still costs,
  per item of a finished sliced fan-out: dflow deep-copies the step, pickles the call and
  sends it to a pool worker that finds the item done: a resume of a finished 20-step chain
  + 40-way fan-out took 4.9 s at load 20 (deepcopy 2.0 s, pickling 0.9 s, pipe writes 0.5 s).

  Before this benchmark existed `opshelf status` took 1.35-2.99 s (alloy, lameval, cl runs,
  load 0.4-5). Where a resume's own time goes (driver.log, cProfile of the alloy driver at
  load ~1): the driver's imports and build 2.4-3.3 s (alloy: 1.3 s of it opshelf-props
  counting tasks, which runs phonopy's symmetry search), dflow's submit over the finished
  steps ~5 s for alloy (deep copies of every template in dflow's Step and Steps.run), the
  results (label's plot 0.7 s, alloy's report 1.7 s), the launcher ~0.2 s. Under load
  12-14 the alloy check alone took 16 s: a resume no longer checks.

Usage: python benchmarks/run_management.py [--repeats 5] [--status-run RUN_DIR] [--workdir DIR]
       [--workflow alloy --config examples/cu-eam/config.yaml --steps 7]  (a real workflow)
Last line: status_s=<x> resume_overhead_s=<y> server_wait_s=<z> load=<1-min load average at the end>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opshelf.core.rundir import RunDir
from opshelf.core.testing.runs import sigkill_after_steps

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "label-cu-emt" / "config.yaml"
OPSHELF = [sys.executable, "-m", "opshelf.core.cli"]
#: steps of the label run: prep-tasks, 6 run-task slices, collect-labels
N_STEPS = 8


def time_status(run: Path, repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([*OPSHELF, "status", str(run)], check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def resumed_launches(run: RunDir, since: float) -> list[tuple[float, dict]]:
    """(end time, launcher.json record) of every step launched after `since`."""
    out = []
    for info in run.step_phases().values():
        record = info.path / "launcher.json"
        if record.is_file() and record.stat().st_mtime >= since:
            out.append((record.stat().st_mtime, json.loads(record.read_text())))
    return out


def steps_busy_s(run: RunDir, since: float) -> float:
    """Seconds between `since` and now in which at least one step was running."""
    intervals = []
    for end, launched in resumed_launches(run, since):
        # a step that waited for the fork server to finish its imports did not run yet
        intervals.append((end - launched["wall_s"] + launched.get("server_wait_s", 0.0), end))
    busy, reach = 0.0, since
    for start, end in sorted(intervals):
        start = max(start, reach)
        if end > start:
            busy += end - start
            reach = end
    return busy


def resume_overhead(workdir: Path, workflow: str = "label", config: Path = CONFIG,
                    n_steps: int = N_STEPS) -> tuple[float, float, int, float]:
    """(overhead s, resume wall s, steps the resume ran, longest wait of one of them for
    the fork server s) of a run of `workflow` on `config` (`n_steps` steps in all) killed
    once all but 2 of its steps succeeded."""
    runs = workdir / "runs"
    env = {**os.environ, "OPSHELF_RUNS_DIR": str(runs)}
    run = sigkill_after_steps([*OPSHELF, "run", workflow, str(config), "--name", "bench",
                               "--no-progress"], runs / "bench", n_steps - 2, env=env,
                              timeout_s=1800)
    time.sleep(1.0)  # launcher.json mtimes of the killed attempt fall before `since`
    since = time.time()
    start = time.perf_counter()
    res = subprocess.run([*OPSHELF, "resume", str(run.path), "--no-progress"],
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"resume failed ({res.returncode}):\n{res.stderr[-3000:]}")
    launches = resumed_launches(run, since)
    server_wait = max((r.get("server_wait_s", 0.0) for _, r in launches), default=0.0)
    return wall - steps_busy_s(run, since), wall, len(launches), server_wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--status-run", type=Path, help="also time `opshelf status` on this run")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--workflow", default="label", help="workflow of the resumed run")
    parser.add_argument("--config", type=Path, default=CONFIG, help="its config")
    parser.add_argument("--steps", type=int, default=N_STEPS,
                        help="the number of steps of that run (alloy cu-eam: 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opshelf-bench-runs-") as tmp:
        workdir = args.workdir or Path(tmp)
        overhead, wall, ran, wait = resume_overhead(workdir, args.workflow, args.config,
                                                    args.steps)
        print(f"resume: {wall:.2f} s wall, {ran} step(s) run, {overhead:.2f} s of its own; "
              f"a resumed step waited up to {wait:.2f} s for the fork server")
        status_s = time_status(workdir / "runs" / "bench", args.repeats)
        print(f"status of the resumed run: {status_s:.3f} s (median of {args.repeats})")
        if args.status_run is not None:
            other = time_status(args.status_run, args.repeats)
            print(f"status of {args.status_run.name}: {other:.3f} s (median of {args.repeats})")
            status_s = max(status_s, other)
    load = os.getloadavg()[0]
    print(f"status_s={status_s:.3f} resume_overhead_s={overhead:.2f} "
          f"server_wait_s={wait:.2f} load={load:.2f}")


if __name__ == "__main__":
    main()
