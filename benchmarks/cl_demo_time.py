"""Wall time of a finished cl run split into train / explore / select / label / overhead,
and the wall against its floor on the machine's cores.

    python benchmarks/cl_demo_time.py RUN_DIR          (e.g. after `./dev demo`)
    python benchmarks/cl_demo_time.py --run CONFIG     (runs `opshelf run cl CONFIG` first)

A phase's time is the union of the intervals of its step processes (from the first file
written under the step dir's `inputs` to its final `phase` write, so dflow's per-step
start-up counts as phase time);
overhead is the wall time of the driver attempts during which no step process ran at all
(building, scheduling, collecting). The floor is the step processes' summed wall time (each
step's `launcher.json`) divided by the cores: the wall if every core were busy all along.
Prints, last, `train_s=.. explore_s=.. select_s=.. label_s=.. overhead_s=.. wall_s=..
overhead_fraction=.. step_process_s=.. floor_s=.. floor_ratio=..`.

Measured (cu-cp2k demo, `./dev demo`'s config, 2 cores): before issue 21's launch change
(run of 2026-12-05 14:15, load not recorded): wall 480.0 s, step processes 824.6 s, floor
412.3 s, floor_ratio 1.164 (label 222.8 s, train 129.6 s, overhead 9.9 s). After it (train and
freeze in one process; run of 2026-12-05 22:03, load average 7-11 from other jobs
throughout): wall 625.0 s, step processes 1064.1 s, floor 532.1 s, floor_ratio 1.175 (label
260.6 s, train 124.8 s, overhead 23.5 s): NOT the 1.05 target. The launch change cuts process
time, not idle cores: in each iteration the third of three CP2K labels runs alone (25-43 s
with one core idle), and the two models train beside nothing else.

On the IDLE machine (2026-12-06 06:23, load 0-2.7, nothing else running; today's demo config:
4 models, 4 labels per iteration, 4 held-out labels; converged at iteration 3): wall 175.0 s,
step processes 305.1 s, floor 152.6 s, **floor_ratio 1.147** (train 91.6 s, label 36.0 s,
explore 7.1 s, overhead 6.7 s, overhead_fraction 0.039). Both cores are busy through every
training and labelling round now (4 models and 4 labels on 2 cores: no lone third task); the
38 idle core-seconds are the steps that run one process on the critical path: score-models
(3.8-5.9 s each, 18.5 s in all: deepmd's import and four graphs for a few frames), exploration
(one LAMMPS process of 1.5-2.2 s per iteration, both temperatures packed in one task) and the
0.2-0.9 s hand-overs between steps. 1.05 needs these off the critical path (score beside
exploration, exploration split over both cores), not faster engines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from opshelf.cl.flow import PHASE_OF_STEP
from opshelf.cl.status import iteration_steps


def union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def split(run_dir: Path) -> dict[str, float]:
    record = json.loads((run_dir / "run.json").read_text())
    wfdir = run_dir / "dflow" / record["run_id"]
    by_phase: dict[str, list[tuple[float, float]]] = {}
    for _, steps in iteration_steps(wfdir).items():
        for name, dirs in steps.items():
            phase = PHASE_OF_STEP.get(name)
            for d in dirs:
                if phase is None or not (d / "inputs").exists() or not (d / "phase").exists():
                    continue
                written = [f.lstat().st_mtime for f in (d / "inputs").rglob("*")]
                start = min(written, default=(d / "phase").stat().st_mtime)
                interval = (start, (d / "phase").stat().st_mtime)
                by_phase.setdefault(phase, []).append(interval)
    attempts = [(dt.datetime.fromisoformat(a["start"]).timestamp(),
                 dt.datetime.fromisoformat(a["end"]).timestamp())
                for a in record["attempts"] if a.get("end")]
    wall = sum(hi - lo for lo, hi in attempts)
    busy = union_length([iv for ivs in by_phase.values() for iv in ivs])
    out = {f"{p}_s": union_length(by_phase.get(p, [])) for p in
           ("train", "explore", "select", "label")}
    out.update(overhead_s=max(0.0, wall - busy), wall_s=wall)
    out["overhead_fraction"] = out["overhead_s"] / wall if wall else float("nan")
    return out


def step_processes(run_dir: Path) -> list[tuple[float, float, float, str]]:
    """(start, end, process wall s, step key) of every step that ran a process, by start:
    `launcher.json`'s wall_s is the step process alone; start..end includes dflow's handling
    of the step (artifact copies, its script written) in the driver."""
    record = json.loads((run_dir / "run.json").read_text())
    wfdir = run_dir / "dflow" / record["run_id"]
    rows = []
    for d in wfdir.iterdir():
        launcher = d / "launcher.json"
        if not launcher.is_file() or not (d / "phase").exists():
            continue
        written = [f.lstat().st_mtime for f in (d / "inputs").rglob("*")] \
            if (d / "inputs").exists() else []
        end = (d / "phase").stat().st_mtime
        rows.append((min(written, default=end), end,
                     float(json.loads(launcher.read_text()).get("wall_s") or 0.0), d.name))
    return sorted(rows)


def gaps(rows: list[tuple[float, float, float, str]], top: int = 8) -> list[tuple[float, str]]:
    """The longest stretches with no step running, each named by the step that ends it."""
    out, end = [], float("-inf")
    for lo, hi, _, name in rows:
        if end > float("-inf") and lo > end:
            out.append((lo - end, name))
        end = max(end, hi)
    return sorted(out, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--run", type=Path, help="a cl config to run first")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)),
                        help="cores of the floor (default: this process's usable cores)")
    parser.add_argument("--gaps", action="store_true",
                        help="also print step-process time and the longest idle gaps")
    args = parser.parse_args()
    run_dir = args.run_dir
    if args.run is not None:
        name = "cl-demo-time-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        done = subprocess.run([sys.executable, "-m", "opshelf.core.cli", "run", "cl",
                               str(args.run), "--name", name, "--no-progress"], check=False)
        if done.returncode not in (0, 3):  # 3: ran to its end, not converged (still timed)
            sys.exit(f"opshelf run cl failed (exit {done.returncode})")
        from opshelf.core.rundir import default_runs_root

        run_dir = default_runs_root() / name
    if run_dir is None:
        parser.error("give RUN_DIR or --run CONFIG")
    figures = split(run_dir)
    rows = step_processes(run_dir)
    process_s = sum(r[2] for r in rows)
    if args.gaps:
        print(f"step_processes={len(rows)} step_process_s={process_s:.1f}")
        for length, name in gaps(rows):
            print(f"gap_s={length:.1f} before={name}")
    figures.update(floor(process_s, figures["wall_s"], args.cores))
    print(" ".join(f"{k}={v:.3f}" if k in ("overhead_fraction", "floor_ratio") else
                   f"{k}={v:.1f}" for k, v in figures.items()))


def floor(process_s: float, wall_s: float, cores: int) -> dict[str, float]:
    """The wall's floor on `cores` cores: the step processes' summed wall time with every
    core busy all along (a bound: a chain of single-process steps cannot reach it), and the
    wall's ratio to it."""
    floor_s = process_s / cores
    return {"step_process_s": process_s, "floor_s": floor_s,
            "floor_ratio": wall_s / floor_s if floor_s else float("nan")}


if __name__ == "__main__":
    main()
