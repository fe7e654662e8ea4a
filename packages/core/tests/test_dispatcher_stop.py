"""`opshelf stop` cancels the scheduler jobs its dispatcher steps submitted (Slurm's scancel
through dpdispatcher's Machine.kill), and `opshelf resume` submits them again.

The Slurm is a fake one on PATH (sbatch, squeue, scancel as small shell scripts) that records
every call: sbatch starts the job script in a session of its own, as a cluster job is no
process of the run, and holds it while a hold file exists (a job waiting in the queue or
running long); squeue reports a job R while its process lives; scancel kills its session.
dpdispatcher drives it exactly as a real Slurm (`sbatch --parsable`, `squeue -o ... -j ID`,
`scancel -Q ID`). Real Slurm runs of the dispatcher: tests/test_slurm_dispatch.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "wfdata"))
from runhelp import opshelf

from opshelf.core.rundir import RunDir

FAKE_SLURM = {
    "sbatch": r"""#!/bin/bash
# sbatch --parsable SCRIPT (run in the script's directory): the job id is its session's pid;
# a cluster job does not carry the run's environment marker either
script="${@: -1}"
env -u OPSHELF_RUN_DIR setsid bash -c 'while [ -e "$0/hold" ]; do sleep 0.1; done; exec bash "$1"' \
    "$FAKE_SLURM_DIR" "$script" > /dev/null 2>&1 < /dev/null &
echo "sbatch $script $!" >> "$FAKE_SLURM_DIR/calls"
echo $!
""",
    "squeue": r"""#!/bin/bash
# squeue -o "%.18i %.2t" -j ID
id="${@: -1}"
echo "             JOBID ST"
if kill -0 "$id" 2> /dev/null; then printf '%18s  R\n' "$id"; fi
""",
    "scancel": r"""#!/bin/bash
# scancel -Q ID
id="${@: -1}"
echo "scancel $*" >> "$FAKE_SLURM_DIR/calls"
kill -TERM -- "-$id" 2> /dev/null
true
""",
}


@pytest.fixture
def slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake's bin dir first on PATH, its records in the folder yielded; every job it
    started and that still runs is killed afterwards (a failed test leaves none behind)."""
    root = tmp_path / "slurm"
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in FAKE_SLURM.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(root))
    yield root
    for job in submitted(root):
        try:
            os.killpg(job, signal.SIGKILL)
        except ProcessLookupError:
            pass  # ended (cancelled, or finished)


def calls(root: Path) -> list[list[str]]:
    path = root / "calls"
    return [line.split() for line in path.read_text().splitlines()] if path.is_file() else []


def submitted(root: Path) -> list[int]:
    """Job ids sbatch handed out, in order."""
    return [int(c[2]) for c in calls(root) if c[0] == "sbatch"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(what: str, cond: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.1)


def test_stop_cancels_the_slurm_jobs_of_its_steps_and_resume_resubmits(tmp_path: Path,
                                                                       slurm: Path) -> None:
    (slurm / "hold").touch()  # every job waits: the run is stopped with it queued/running
    executor = {"kind": "dispatcher", "poll_interval_s": 0.2, "retry_count": 2,
                "machine": {"batch_type": "Slurm", "context_type": "LocalContext",
                            "remote_root": str(tmp_path / "remote")},
                "resources": {"cpu_per_node": 1, "queue_name": "debug", "group_size": 1}}
    # two frames, one run-task step each (a dispatcher step packs none): two jobs at once
    config = {"generate": {"element": "Cu", "n_frames": 2, "supercell": [1, 1, 1],
                           "rattle_A": 0.05, "seed": 3},
              "engine": {"name": "ase", "settings": {"calculator": "emt"}},
              "task": {"kind": "single_point"},
              "steps": {"run-task": {"executor": executor}}}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    runs = tmp_path / "runs"
    res = opshelf("run", "label", str(cfg), "--name", "s1", "--detach", runs_dir=runs)
    assert res.returncode == 0, res.stderr
    run = RunDir(runs / "s1")
    try:
        # generous: under load 20 the run took over 120 s to reach its dispatcher steps
        wait_for("both steps' sbatch", lambda: len(submitted(slurm)) == 2, timeout_s=400)
        jobs = submitted(slurm)
        time.sleep(1.0)  # dpdispatcher records the jobs and polls them
        assert all(alive(job) for job in jobs)
        stop = opshelf("stop", "s1", runs_dir=runs)
    finally:
        if run.driver_process() is not None:  # the test failed: leave nothing behind
            os.killpg(run.read().driver_pgid or 0, signal.SIGKILL)
    assert stop.returncode == 0 and "stopped run s1" in stop.stderr, stop.stderr
    # stock: the steps died on SIGTERM and the jobs ran on, never cancelled
    cancelled = [int(c[-1]) for c in calls(slurm) if c[0] == "scancel"]
    assert sorted(cancelled) == sorted(jobs), calls(slurm)
    wait_for("the cancelled jobs to end", lambda: not any(alive(job) for job in jobs),
             timeout_s=10)
    assert run.read().status == "stopped"
    # what the steps did about the stop is in their logs (`opshelf logs`): stock, the
    # process copying a step's output into log.txt stopped before the step had written it
    logs = {key: (info.path / "log.txt").read_text() for key, info in run.step_phases().items()
            if (info.path / "log.txt").is_file()}
    for job in jobs:
        holding = [key for key, text in logs.items() if f": cancelled job {job} (" in text]
        assert len(holding) == 1, (job, logs)
    shown = opshelf("logs", "s1", holding[0], runs_dir=runs)
    assert shown.returncode == 0 and f"cancelled job {jobs[-1]} (" in shown.stdout, shown
    # stopped, not failed: the steps the stop ended show so, and resume runs them again
    assert "Failed" not in {info.phase for info in run.step_phases().values()}

    (slurm / "hold").unlink()
    res = opshelf("resume", "s1", runs_dir=runs)
    assert res.returncode == 0, res.stderr
    assert run.read().status == "succeeded"
    assert len(submitted(slurm)) == 4, calls(slurm)  # the cancelled jobs, submitted again
