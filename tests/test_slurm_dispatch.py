"""Steps of local workflows run through a real Slurm (tests/slurm/, the `slurm_cluster` fixture)
by dpdispatcher, chosen by nothing but the `steps` block of the config.

- CP2K labelling: core's `label` workflow with opshelf-fp's cp2k engine, `run-task` on Slurm,
  reproduces the numbers of fp's direct CP2K runs.
- LAMMPS exploration: opshelf-md's PrepRunExplore (EAM Cu), `run-explore` on Slurm.
- Failure injection: a running job is `scancel`led and dpdispatcher resubmits it, nothing lost;
  a job that fails is reported with the scheduler's own output; an sbatch refused because the
  controller is down is retried.

Every test is a few CP2K/LAMMPS seconds; Slurm adds about a second per job (poll 0.5 s).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dpdata
import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.io import write

from opshelf.core.testing import require_engine

OPSHELF = [sys.executable, "-m", "opshelf.core.cli"]
REPO = Path(__file__).resolve().parents[1]
# Real CP2K runs of the same displaced Si2 frame with the same inputs (fp's regression data).
CP2K_REGRESSION = REPO / "packages" / "fp" / "tests" / "si2_regression" / "cp2k-displaced.csv"
# The inputs of fp's CP2K tests (SZV, 150 Ry, 2x2x2 k): ~5 s a single point here.
CP2K = {"name": "cp2k",
        "settings": {"basis": "SZV", "cutoff_Ry": 150.0, "rel_cutoff_Ry": 30.0,
                     "kpoints": [2, 2, 2]},
        "profile": {"threads": 1}}
DISPLACEMENT = (0.05, -0.03, 0.02)  # Angstrom, second atom: fp's regression frame
EMT = {"name": "ase", "settings": {"calculator": "emt"}}
THREADS_1 = {name: "1" for name in (
    "OMP_NUM_THREADS", "TF_INTRA_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS")}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in THREADS_1.items():
        monkeypatch.setenv(name, value)


def slurm_executor(remote_root: Path, **overrides: Any) -> dict[str, Any]:
    """A `steps` executor: dpdispatcher, Slurm, files staged by LocalContext."""
    return {"kind": "dispatcher",
            "machine": {"batch_type": "Slurm", "context_type": "LocalContext",
                        "remote_root": str(remote_root)},
            "resources": {"cpu_per_node": 1, "queue_name": "debug"},
            "poll_interval_s": 0.5, **overrides}


def si2_frames(path: Path) -> Path:
    """Perfect and displaced 2-atom diamond Si, a = 5.43 A (as fp's tests)."""
    perfect = bulk("Si", "diamond", a=5.43)
    displaced = perfect.copy()
    displaced.positions[1] += DISPLACEMENT
    write(path, [perfect, displaced], format="extxyz")
    return path


def run_label(tmp_path: Path, engine: dict[str, Any], executor: dict[str, Any], *,
              frames: Path | None = None, name: str = "slurm-run",
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`opshelf run label config.yaml` with `run-task` on `executor`."""
    config: dict[str, Any] = {"engine": engine, "task": {"kind": "single_point"},
                              "steps": {"run-task": {"executor": executor}}}
    if frames is None:
        config["generate"] = {"element": "Cu", "n_frames": 2, "supercell": [1, 1, 1],
                              "rattle_A": 0.05, "seed": 3}
    else:
        config["frames"] = [frames.name]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [*OPSHELF, "run", "label", "config.yaml", "--runs-dir", "runs", "--name", name,
         "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout, check=False)


def slurm_jobs(cluster: Any) -> dict[str, str]:
    """Every job slurmctld still knows (MinJobAge=600 s): id -> state."""
    out = cluster.run("squeue", "-h", "-t", "all", "-o", "%i %T")
    return dict(line.split() for line in out.splitlines() if line.strip())


def step_logs(run_dir: Path) -> str:
    """Every step log of a run (log.txt, earlier attempts) and dpdispatcher's own logs."""
    logs = [*run_dir.rglob("log*.txt"), *run_dir.rglob("dpdispatcher.log")]
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs))


@pytest.mark.engine("cp2k")
def test_cp2k_labelling_step_runs_through_slurm(slurm_cluster: Any, tmp_path: Path) -> None:
    frames = si2_frames(tmp_path / "si2.extxyz")
    before = slurm_jobs(slurm_cluster)
    proc = run_label(tmp_path, CP2K, slurm_executor(tmp_path / "remote"), frames=frames)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    new_jobs = {k: v for k, v in slurm_jobs(slurm_cluster).items() if k not in before}
    assert sorted(new_jobs.values()) == ["COMPLETED", "COMPLETED"]  # one job per frame
    results = tmp_path / "runs" / "slurm-run" / "results"
    summary = json.loads((results / "summary.json").read_text())
    assert (summary["n_tasks"], summary["n_failed"]) == (2, 0)
    (system,) = dpdata.MultiSystems.from_file(str(results / "data"),
                                              fmt="deepmd/npy").systems.values()
    forces = system["forces"]
    displaced = int(np.argmax(np.abs(forces).max(axis=(1, 2))))
    with CP2K_REGRESSION.open() as handle:
        rows = list(csv.DictReader(handle))
    # fp's regression tolerances: 1e-5 eV energy, 1e-4 eV/A forces (other BLAS builds,
    # 8-decimal extxyz positions).
    assert system["energies"][displaced] == pytest.approx(float(rows[0]["energy_eV"]), abs=1e-5)
    np.testing.assert_allclose(forces[displaced].ravel(),
                               [float(r["force_eV_per_A"]) for r in rows], atol=1e-4)


def test_lammps_exploration_step_runs_through_slurm(slurm_cluster: Any, tmp_path: Path) -> None:
    require_engine("py:lammps")
    pytest.importorskip("opshelf.md")
    from dflow import Step, Workflow, upload_artifact

    from opshelf.core.execution import StepExecution
    from opshelf.core.local import run_locally, use_local_mode
    from opshelf.core.workflows.outputs import local_step_outputs
    from opshelf.md.ops import PrepRunExplore

    conf = tmp_path / "conf.extxyz"
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2)
    atoms.rattle(0.03, seed=2)
    write(conf, atoms, format="extxyz")
    explore = {"engine": {"name": "lammps", "settings": {"potential": {
                   "style": "eam", "files": {"Cu": "Cu_u3.eam"}}}},
               "groups": [{"kind": "md", "temperatures_K": [300, 600], "n_steps": 40,
                           "dump_every": 10}]}
    on_slurm = StepExecution.model_validate({"executor": slurm_executor(tmp_path / "remote")})
    before = slurm_jobs(slurm_cluster)
    use_local_mode(tmp_path / "wf")
    super_op = PrepRunExplore("prep-run-explore", StepExecution(), on_slurm)
    step = Step("explore", super_op, artifacts={"confs": upload_artifact([conf])},
                parameters={"explore": explore, "tasks_per_batch": 1, "block_id": "it0"},
                key="it0--explore")
    workflow = Workflow(name="explore-slurm", id="explore-slurm")
    workflow.add(step)
    assert run_locally(workflow, tmp_path / "wf") == "Succeeded", step_logs(tmp_path / "wf")

    new_jobs = {k: v for k, v in slurm_jobs(slurm_cluster).items() if k not in before}
    assert sorted(new_jobs.values()) == ["COMPLETED", "COMPLETED"]  # one job per temperature
    out = local_step_outputs(tmp_path / "wf", workflow, "it0--explore")
    # a sliced output parameter as dflow's local mode stores it: one JSON list per slice
    reports = [item["dflow_list_item"] for chunk in out.parameters["reports"]
               for item in json.loads(chunk)]
    assert len(reports) == 2 and all(r["n_failed"] == 0 for r in reports), reports
    dumps = [p for p in Path(out.artifacts["trajs"]).resolve().rglob("*")
             if p.is_file() and "traj" in p.name and ".dflow" not in p.parts]
    assert len(dumps) == 2, dumps  # each run's trajectory came back from the Slurm job


@pytest.fixture
def scancel_first_running_job(slurm_cluster: Any) -> Iterator[dict[str, str]]:
    """Watch the queue; `scancel` the first job seen RUNNING for 1 s. Yields what it did."""
    done: dict[str, str] = {}
    stop = threading.Event()
    known = set(slurm_jobs(slurm_cluster))

    def watch() -> None:
        seen_at: dict[str, float] = {}
        while not stop.is_set() and "cancelled" not in done:
            for job, state in slurm_jobs(slurm_cluster).items():
                if job in known or state != "RUNNING":
                    continue
                seen_at.setdefault(job, time.monotonic())
                if time.monotonic() - seen_at[job] >= 1.0:
                    slurm_cluster.run("scancel", job)
                    done["cancelled"] = job
                    break
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield done
    stop.set()
    thread.join(timeout=10)


@pytest.mark.engine("cp2k")
def test_a_cancelled_job_is_resubmitted_and_nothing_is_lost(
        slurm_cluster: Any, scancel_first_running_job: dict[str, str], tmp_path: Path) -> None:
    frames = si2_frames(tmp_path / "si2.extxyz")
    before = slurm_jobs(slurm_cluster)
    proc = run_label(tmp_path, CP2K, slurm_executor(tmp_path / "remote", retry_count=2),
                     frames=frames)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    cancelled = scancel_first_running_job.get("cancelled")
    assert cancelled, "no job was seen running: nothing was cancelled"
    states = {k: v for k, v in slurm_jobs(slurm_cluster).items() if k not in before}
    assert states[cancelled] == "CANCELLED"
    # two frames, one job each, plus the resubmission of the cancelled one
    assert sorted(states.values()) == ["CANCELLED", "COMPLETED", "COMPLETED"], states
    results = tmp_path / "runs" / "slurm-run" / "results"
    summary = json.loads((results / "summary.json").read_text())
    assert (summary["n_tasks"], summary["n_succeeded"], summary["n_failed"]) == (2, 2, 0)
    (system,) = dpdata.MultiSystems.from_file(str(results / "data"),
                                              fmt="deepmd/npy").systems.values()
    assert system.get_nframes() == 2 and np.all(np.isfinite(system["energies"]))


def test_a_failed_job_is_reported_with_the_scheduler_output(slurm_cluster: Any,
                                                           tmp_path: Path) -> None:
    # The job's interpreter does not exist: the job starts, fails, and is not retried.
    executor = slurm_executor(tmp_path / "remote", retry_count=0,
                              python="/nonexistent/bin/python3")
    proc = run_label(tmp_path, EMT, executor, timeout=180)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    logs = step_logs(tmp_path / "runs" / "slurm-run")
    assert "dispatcher job failed" in logs
    assert "scheduler report (Slurm" in logs
    assert "JobState=FAILED" in logs  # scontrol's view of the job
    assert "/nonexistent/bin/python3" in logs  # the job's own stderr / Slurm output file


def test_a_refused_sbatch_is_retried(slurm_cluster: Any, tmp_path: Path) -> None:
    """slurmctld is down when the step submits: sbatch fails with 'Unable to contact slurm
    controller'. Once dpdispatcher has logged that refusal the controller is started again,
    and the step completes."""
    refused = "Unable to contact slurm controller"
    os.kill(slurm_cluster.pid("slurmctld"), 15)
    restarted = threading.Event()
    give_up = time.monotonic() + 120

    def restart_after_refusal() -> None:
        while time.monotonic() < give_up:
            if any(refused in log.read_text(errors="replace")
                   for log in tmp_path.glob("runs/*/dflow/*/run-task-*/workdir/dpdispatcher.log")):
                break
            time.sleep(0.5)
        slurm_cluster.restart_controller()
        restarted.set()

    thread = threading.Thread(target=restart_after_refusal, daemon=True)
    try:
        time.sleep(1)  # the controller is gone
        thread.start()
        proc = run_label(tmp_path, EMT, slurm_executor(tmp_path / "remote",
                                                       scheduler_retry_wait_s=2), timeout=240)
    finally:
        give_up = 0.0
        thread.join(timeout=60)
        if not restarted.is_set():
            slurm_cluster.restart_controller()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # sbatch gives up after ~10 s (MessageTimeout); dpdispatcher alone then waits 60 s
    # before it submits again; opshelf caps that wait at scheduler_retry_wait_s (2 s).
    waits = []
    for log in (tmp_path / "runs").rglob("dpdispatcher.log"):
        refused_at = None
        for line in log.read_text(errors="replace").splitlines():
            if refused in line and " - ERROR : " in line:
                refused_at = datetime.fromisoformat(line.split(" - ")[0].replace(",", "."))
            elif refused_at and "was submitted; job_id is" in line:
                submitted_at = datetime.fromisoformat(line.split(" - ")[0].replace(",", "."))
                waits.append((submitted_at - refused_at).total_seconds())
                refused_at = None
    assert waits, "no refused sbatch followed by a submission in the dpdispatcher logs"
    # 2 s of waiting plus one sbatch; a loaded machine adds seconds, never 60
    assert max(waits) < 30, waits


REFUSAL = ("sbatch: error: Batch job submission failed: Unable to contact slurm controller "
           "(connect failure)")


@pytest.fixture
def flaky_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An `sbatch` first on PATH that refuses the first N submissions of each dpdispatcher
    submission folder as a down controller does, then runs the real one. Returns a setter
    for N and a reader of the calls per folder."""
    import shutil

    real = shutil.which("sbatch")
    assert real, "sbatch not found"
    fake_dir = tmp_path / "fake-bin"
    fake_dir.mkdir()
    calls = tmp_path / "sbatch-calls.log"
    fails = tmp_path / "sbatch-fails"
    fake = fake_dir / "sbatch"
    fake.write_text(f"""#!/bin/bash
# test double: refuse the first N calls from each submission folder ($PWD), then run sbatch
echo "$PWD" >> {calls}
n=$(grep -cxF "$PWD" {calls})
if [ "$n" -le "$(cat {fails})" ]; then echo "{REFUSAL}" >&2; exit 1; fi
exec {real} "$@"
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")

    class Flaky:
        def refuse(self, n: int) -> None:
            fails.write_text(str(n))

        def calls(self) -> dict[str, int]:
            lines = calls.read_text().splitlines() if calls.exists() else []
            return {folder: lines.count(folder) for folder in set(lines)}

    return Flaky()


# dpdispatcher retries a refused sbatch itself: 3 tries per run_submission (its
# utils.retry(max_retry=3) around Slurm.do_submit), then raises "Failed to run do_submit".
DPDISPATCHER_TRIES = 3


def test_a_scheduler_refusing_longer_than_dpdispatcher_retries_is_retried_by_opshelf(
        slurm_cluster: Any, flaky_sbatch: Any, tmp_path: Path) -> None:
    # 4 refusals: dpdispatcher's 3 tries fail, opshelf's outer retry submits again
    # (refused once more, then accepted by dpdispatcher's own retry).
    flaky_sbatch.refuse(DPDISPATCHER_TRIES + 1)
    before = slurm_jobs(slurm_cluster)
    proc = run_label(tmp_path, EMT, slurm_executor(tmp_path / "remote", retry_count=2,
                                                   scheduler_retry_wait_s=0.2), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = flaky_sbatch.calls()
    assert sorted(calls.values()) == [5, 5], calls  # 4 refused + 1 accepted, per frame
    logs = step_logs(tmp_path / "runs" / "slurm-run")
    # each retry is recorded in the step log, with the scheduler's message
    assert logs.count("opshelf: transient scheduler failure (attempt 1 of 2)") == 2, logs[-3000:]
    assert "attempt 2 of 2" not in logs
    assert "Unable to contact slurm controller" in logs
    new_jobs = {k: v for k, v in slurm_jobs(slurm_cluster).items() if k not in before}
    assert sorted(new_jobs.values()) == ["COMPLETED", "COMPLETED"]  # nothing submitted twice
    summary = json.loads((tmp_path / "runs" / "slurm-run" / "results" / "summary.json")
                         .read_text())
    assert (summary["n_tasks"], summary["n_succeeded"]) == (2, 2)


def test_a_scheduler_that_keeps_refusing_fails_the_step_with_a_clear_error(
        slurm_cluster: Any, flaky_sbatch: Any, tmp_path: Path) -> None:
    flaky_sbatch.refuse(1000)
    before = slurm_jobs(slurm_cluster)
    proc = run_label(tmp_path, EMT, slurm_executor(tmp_path / "remote", retry_count=1,
                                                   scheduler_retry_wait_s=0.2), timeout=240)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    calls = flaky_sbatch.calls()
    # dpdispatcher's 3 tries, once and again after opshelf's single retry; then it gives up
    assert calls and set(calls.values()) == {2 * DPDISPATCHER_TRIES}, calls
    logs = step_logs(tmp_path / "runs" / "slurm-run")
    assert "opshelf: transient scheduler failure (attempt 1 of 1)" in logs
    assert "the scheduler still failed after 1 retries of a transient failure" in logs
    assert "Unable to contact slurm controller" in logs
    assert {k for k in slurm_jobs(slurm_cluster) if k not in before} == set()  # none ran
