"""Failure injection through PrepRunFp in local mode, with REAL pw.x for every task.

A batch of four 2-atom Si frames:
  task-000000  perfect diamond cell            -> labelled
  task-000001  displaced atom                  -> labelled (pinned numbers, si2_regression/)
  task-000002  two atoms on the same site      -> pw.x refuses it (check_atoms: overlap)
  task-000003  displaced atom, but its program is SIGKILLed mid-SCF (as the OOM killer
               or a pre-empted node would do), on every attempt

The program is a small wrapper generated here: it runs the real pw.x and, only in
task-000003's run dir, kills pw.x and itself once pw.x has printed its first SCF iteration.
Nothing is mocked: the good tasks and the overlap task are genuine pw.x runs.
"""

from __future__ import annotations

import csv
import json
import stat
from collections import Counter
from pathlib import Path

import dpdata
import numpy as np
import pytest
from ase.build import bulk
from fp_test_helpers import found, run_prep_run_fp, si2_frame, write_frames

from opshelf.core.execution import StepExecution

KILLED_TASK = "task-000003"
SETTINGS = {"pseudopotentials": {"Si": "Si.pz-vbc.UPF"}, "ecutwfc_Ry": 20.0, "kpoints": [2, 2, 2]}
DISPLACEMENT = (0.05, -0.03, 0.02)  # Angstrom: task-000001, the frame of si2_regression/
REGRESSION = Path(__file__).parent / "si2_regression" / "qe-displaced.csv"

WRAPPER = """#!/bin/sh
# The real pw.x; in the run dir of {killed} it SIGKILLs pw.x once the SCF has started,
# then itself, so that the program opshelf started dies of SIGKILL. pw.x runs at nice 19
# there: on a busy machine this polling shell was once starved until pw.x had finished its
# SCF (the log tail then showed JOB DONE, not the SCF it was meant to be killed in).
echo "$(basename "$PWD")" >> {calls}
case "$(basename "$PWD")" in
  {killed})
    nice -n 19 pw.x "$@" &
    pid=$!
    i=0
    until grep -q "iteration #" qe.out 2>/dev/null || [ $i -ge 1000 ]; do
      sleep 0.01; i=$((i + 1))
    done
    kill -KILL $pid
    kill -KILL $$ ;;
  *) exec pw.x "$@" ;;
esac
"""


def overlapping_frame() -> dpdata.System:
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] = atoms.positions[0]
    return dpdata.System(atoms, fmt="ase/structure")


def batch() -> list[dpdata.System]:
    return [si2_frame(), si2_frame(DISPLACEMENT), overlapping_frame(), si2_frame((0.03, 0, 0))]


def killing_pw(tmp_path: Path) -> tuple[dict, Path]:
    """The QE engine spec running the wrapper, and the file where it logs each start."""
    calls = tmp_path / "program-starts.txt"
    wrapper = tmp_path / "pw-killed-in-task-3.sh"
    wrapper.write_text(WRAPPER.format(killed=KILLED_TASK, calls=calls))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return {"name": "qe", "settings": SETTINGS, "profile": {"command": [str(wrapper)]}}, calls


def starts(calls: Path) -> Counter[str]:
    return Counter(calls.read_text().split())


def regression_energy_eV() -> float:
    with open(REGRESSION) as fh:
        return float(next(csv.DictReader(fh))["energy_eV"])


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # dflow's debug files stay in the test's tmp dir
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_batch_with_bad_input_and_killed_program_labels_the_good_frames(
    pw_ready: None, tmp_path: Path
) -> None:
    engine, calls = killing_pw(tmp_path)
    frames = batch()
    run = run_prep_run_fp(
        tmp_path / "dflow",
        write_frames(tmp_path / "frames.extxyz", frames),
        engine,
        # two tasks per step: a killed task must not disturb its neighbour
        run=StepExecution(retries=1, group_size=2),
        min_success_ratio=0.5,
        n_tasks=4,
    )
    assert run.phase == "Succeeded"
    summary = json.loads(found(run.output("summary"), "summary.json").read_text())
    failures = json.loads(found(run.output("failures"), "failures.json").read_text())
    data = dpdata.MultiSystems.from_file(
        str(found(run.output("data"), "data")), fmt="deepmd/npy", labeled=True
    )
    # Nothing lost: every frame is either labelled or listed as failed.
    assert (summary["n_tasks"], summary["n_succeeded"], summary["n_failed"]) == (4, 2, 2)
    assert data.get_nframes() + len(failures) == len(frames)
    (system,) = data.systems.values()
    labelled = sorted(
        next(i for i, f in enumerate(frames) if np.allclose(coords, f["coords"][0], atol=1e-6))
        for coords in system["coords"]
    )
    assert labelled == [0, 1]
    # The good tasks really ran pw.x: the displaced frame has the pinned energy (1e-5 eV,
    # the tolerance of the regression data).
    displaced = int(np.argmax(np.abs(system["forces"]).max(axis=(1, 2))))
    assert system["energies"][displaced] == pytest.approx(regression_energy_eV(), abs=1e-5)

    by_task = {f["task"]: f for f in failures}
    assert sorted(by_task) == ["task-000002", KILLED_TASK]
    overlap = by_task["task-000002"]
    assert "exit status 1" in overlap["reason"]
    assert "check_atoms" in overlap["reason"] and "overlap" in overlap["reason"]  # pw.x's words
    # the log tail carries pw.x's stderr; what Open MPI prints there as pw.x aborts varies
    # (MPI_ABORT, or an ORTE_ERROR_LOG line when its daemon races the abort: seen in CI)
    assert "[stderr qe.err]" in overlap["log_tail"]
    assert "MPI_ABORT" in overlap["log_tail"] or "ORTE_ERROR_LOG" in overlap["log_tail"]
    killed = by_task[KILLED_TASK]
    assert "killed by signal 9" in killed["reason"]
    assert "(after 2 attempts)" in killed["reason"]
    assert "iteration #" in killed["log_tail"]  # it was killed mid-SCF
    # retries=1: the killed program ran twice, the deterministic failure once, the rest once.
    assert starts(calls) == {
        "task-000000": 1,
        "task-000001": 1,
        "task-000002": 1,
        KILLED_TASK: 2,
    }
    # Each task's report (next to its labelled data) says how many attempts it took.
    reports = {
        p.parent.name: json.loads(p.read_text())
        for p in run.wfdir.rglob("opshelf-report.json")
        if ".dflow" not in p.parts and "outputs" in p.parts
    }
    assert reports[KILLED_TASK]["attempts"] == 2
    assert len(reports[KILLED_TASK]["earlier_attempts"]) == 1
    assert reports["task-000002"]["attempts"] == 1


def test_too_few_successes_fail_the_step_and_keep_what_was_collected(
    pw_ready: None, tmp_path: Path
) -> None:
    engine, calls = killing_pw(tmp_path)
    run = run_prep_run_fp(
        tmp_path / "dflow",
        write_frames(tmp_path / "frames.extxyz", batch()),
        engine,
        run=StepExecution(retries=0),
        min_success_ratio=0.9,
        n_tasks=4,
    )
    assert run.phase == "Failed"
    assert starts(calls)[KILLED_TASK] == 1  # retries=0: no second start
    collect = run.step_dir("collect-fp")
    # The message names the numbers and where the failures are listed.
    logs = "".join(p.read_text(errors="replace") for p in collect.rglob("log*.txt"))
    assert "2 of 4 tasks succeeded (50.0%), below the minimum 90.0%" in logs
    # What was collected is still on disk.
    collected = next(collect.rglob("collected"))
    failures = json.loads((collected / "failures.json").read_text())
    assert sorted(f["task"] for f in failures) == ["task-000002", KILLED_TASK]
    data = dpdata.MultiSystems.from_file(str(collected / "data"), fmt="deepmd/npy", labeled=True)
    assert data.get_nframes() == 2
