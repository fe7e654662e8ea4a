"""The FP dflow OPs: contract checks with core's conformance kit, and PrepRunFp run end to
end in local (debug) mode with REAL CP2K and REAL pw.x on 2-atom Si frames.

The single points through PrepRunFp are pinned to the same regression data as the
engines' direct runs (tests/si2_regression/, written from real runs of the same inputs):
the super-OP must not change a number."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dpdata
import numpy as np
import pytest
from fp_test_helpers import found, run_prep_run_fp, si2_frame, write_frames

from opshelf.core.testing import REMOVE, BadInput, assert_op_conformance
from opshelf.fp.ops import PrepFp, RunFp

QE = {
    "name": "qe",
    "settings": {
        "pseudopotentials": {"Si": "Si.pz-vbc.UPF"},
        "ecutwfc_Ry": 20.0,
        "kpoints": [2, 2, 2],
    },
    "profile": {"threads": 1},
}
# SZV, 150 Ry, 2x2x2 k-points: ~5 s a single point here (the inputs of test_cp2k_run.py).
CP2K = {
    "name": "cp2k",
    "settings": {"basis": "SZV", "cutoff_Ry": 150.0, "rel_cutoff_Ry": 30.0, "kpoints": [2, 2, 2]},
    "profile": {"threads": 1},
}
DISPLACEMENT = (0.05, -0.03, 0.02)  # Angstrom, second atom
DISPLACEMENTS = [(0.0, 0.0, 0.0), DISPLACEMENT]
REGRESSION = Path(__file__).parent / "si2_regression"
# Same build and inputs reproduce energies to ~1e-8 Ha (CP2K) / 1e-9 Ry (pw.x); allow other
# BLAS/FFT builds and the frames' trip through extxyz (8 decimals): 1e-5 eV energy,
# 1e-4 eV/A forces, 1e-3 eV virial.
TOLERANCES = {
    "energy_eV": {"atol": 1e-5},
    "force_eV_per_A": {"atol": 1e-4},
    "virial_eV": {"atol": 1e-3},
}
# Physics bounds per engine, eV/A. A perfect diamond cell has zero forces by inversion
# symmetry; what remains is numerical: CP2K's real-space grid (egg-box) error, below 1e-3
# here; pw.x prints forces to 1e-8 Ry/Bohr. Forces of a displaced cell sum to ~0
# (translational invariance), up to the same error.
PHYSICS = {
    "cp2k": {"symmetric_max_force": 1e-3, "force_sum": 5e-3},
    "qe": {"symmetric_max_force": 1e-4, "force_sum": 1e-3},
}


def voigt(tensor: np.ndarray) -> np.ndarray:
    """xx, yy, zz, yz, xz, xy."""
    return tensor[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def frame_index(system: dpdata.System, i: int, frames: list[dpdata.System]) -> int:
    """Which input frame the labelled frame `i` is (the data set merges tasks)."""
    for index, frame in enumerate(frames):
        if np.allclose(system["coords"][i], frame["coords"][0], atol=1e-6):
            return index
    raise AssertionError(f"labelled frame {i} matches no input frame")


def test_prep_fp_conforms_and_checks_inputs_first(pw_ready: None, tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames.extxyz", [si2_frame(d) for d in DISPLACEMENTS])
    no_pseudo = {**QE, "settings": {**QE["settings"], "pseudopotentials": {"Si": "Si.nope.UPF"}}}
    result = assert_op_conformance(
        PrepFp,
        good_inputs={"frames": [frames], "engine": QE, "task": {"kind": "single_point"}},
        bad_inputs=[
            BadInput({"engine": no_pseudo}, match=r"element 'Si'.*Si\.nope\.UPF"),
            BadInput({"engine": {"name": "qee"}}, match=r"unknown engine 'qee'"),
            BadInput({"task": {"kind": "md"}}, match=r"task kind 'md'"),
            BadInput({"engine": REMOVE}, match=r"engine"),
        ],
        workdir=tmp_path / "conf",
    )
    assert result.parameters["task_names"] == ["task-000000", "task-000001"]


def test_run_fp_conforms(pw_ready: None, tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames.extxyz", [si2_frame(d) for d in DISPLACEMENTS])
    prep = assert_op_conformance(
        PrepFp, good_inputs={"frames": [frames], "engine": QE, "task": {}}, workdir=tmp_path / "p"
    )
    # A List[Path] artifact comes back as the folder that holds the task dirs.
    task_path = next(Path(prep.artifacts["task_paths"]).rglob("task-000001"))
    # The same task dir, but its profile names a program that is not installed.
    no_program = tmp_path / "no-program" / "task-000001"
    shutil.copytree(task_path, no_program)
    meta = json.loads((no_program / "opshelf-task.json").read_text())
    meta["engine"]["profile"]["command"] = ["no-such-pw.x"]
    (no_program / "opshelf-task.json").write_text(json.dumps(meta))
    result = assert_op_conformance(
        RunFp,
        good_inputs={"task_name": "task-000001", "task_path": task_path},
        bad_inputs=[
            BadInput({"task_path": tmp_path / "missing"}, match=r"missing.*not a prepared task"),
            BadInput({"task_path": no_program}, match=r"executable 'no-such-pw.x' not found"),
        ],
        workdir=tmp_path / "conf",
    )
    report = result.parameters["report"]
    assert (report["status"], report["attempts"]) == ("succeeded", 1)
    # By default only the engine's inputs and logs stay: not the copied UPF, not out/.
    assert report["raw_files"] == ["opshelf-task.json", "pw.in", "qe.err", "qe.out"]


@pytest.mark.parametrize("engine", [CP2K, QE], ids=["cp2k", "qe"])
def test_prep_run_fp_single_points_in_local_mode(
    engine: dict, request: pytest.FixtureRequest, tmp_path: Path, num_regression
) -> None:
    """A perfect and a displaced diamond cell through prep-fp -> run-fp -> collect-fp."""
    name = engine["name"]
    request.getfixturevalue("cp2k_ready" if name == "cp2k" else "pw_ready")
    frames = [si2_frame(d) for d in DISPLACEMENTS]
    run = run_prep_run_fp(
        tmp_path / "dflow", write_frames(tmp_path / "frames.extxyz", frames), engine, n_tasks=2
    )
    assert run.phase == "Succeeded"
    keys = {p.name for p in run.wfdir.iterdir() if p.is_dir()}
    assert {"iter-000000--prep-fp", "iter-000000--collect-fp"} <= keys
    # Read through the super-OP's own outputs: that checks its output wiring too.
    outputs = run.step_dir("fp") / "outputs"
    assert (outputs / "parameters" / "n_frames").read_text().strip() == "2"
    summary = json.loads(found(run.output("summary"), "summary.json").read_text())
    assert (summary["n_tasks"], summary["n_failed"], summary["n_frames"]) == (2, 0, 2)
    assert json.loads(found(run.output("failures"), "failures.json").read_text()) == []
    data = dpdata.MultiSystems.from_file(
        str(found(run.output("data"), "data")), fmt="deepmd/npy", labeled=True
    )
    (system,) = data.systems.values()
    assert system.get_nframes() == 2 and system.has_virial()
    by_frame = {frame_index(system, i, frames): i for i in range(2)}
    bounds = PHYSICS[name]

    symmetric = system["forces"][by_frame[0]]
    assert np.abs(symmetric).max() < bounds["symmetric_max_force"]

    displaced = system["forces"][by_frame[1]]
    assert np.abs(displaced.sum(axis=0)).max() < bounds["force_sum"]
    assert np.dot(displaced[1], DISPLACEMENT) < 0  # a restoring force
    assert np.linalg.norm(displaced[1]) > 0.1  # and not a tiny one
    num_regression.check(
        {
            "energy_eV": np.repeat(system["energies"][by_frame[1]], 6),
            "force_eV_per_A": displaced.ravel(),
            "virial_eV": voigt(system["virials"][by_frame[1]]),
        },
        fullpath=REGRESSION / f"{name}-displaced.csv",
        default_tolerance={"atol": 0, "rtol": 0},
        tolerances=TOLERANCES,
    )
    # The raw outputs: one run dir per task, with the program's input and log.
    raw = run.output("raw_outputs").resolve()
    logs = sorted(p.parent.name for p in raw.rglob(f"{name}.out") if ".dflow" not in p.parts)
    assert logs == ["task-000000", "task-000001"]


def test_prep_run_fp_relax_keeps_the_files_asked_for(pw_ready: None, tmp_path: Path) -> None:
    """A relax task through the same contract (pw.x 'relax'), keeping only pw.x's log."""
    frames_file = write_frames(tmp_path / "frames.extxyz", [si2_frame(DISPLACEMENT)])
    task = {"kind": "relax", "relax": {"fmax_eV_per_A": 0.01}}
    run = run_prep_run_fp(tmp_path / "dflow", frames_file, QE, task=task, keep_files=["qe.out"])
    assert run.phase == "Succeeded"
    data = dpdata.MultiSystems.from_file(
        str(found(run.output("data"), "data")), fmt="deepmd/npy", labeled=True
    )
    (system,) = data.systems.values()
    assert system.get_nframes() == 1  # the relaxed structure only, not the trajectory
    assert np.abs(system["forces"]).max() < 0.01  # the requested threshold
    # The atoms meet again at the diamond bond: a quarter of the cube diagonal, 5.43*sqrt(3)/4.
    bond = np.linalg.norm(system["coords"][0, 1] - system["coords"][0, 0])
    assert bond == pytest.approx(5.43 * np.sqrt(3) / 4, abs=2e-3)
    run_dir = next(p for p in run.output("raw_outputs").resolve().rglob("task-000000"))
    assert sorted(p.name for p in run_dir.iterdir()) == ["qe.out"]
    assert "bfgs converged" in (run_dir / "qe.out").read_text()


@pytest.fixture(autouse=True)
def _dflow_debug_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep dflow's debug files inside the test's tmp dir."""
    monkeypatch.chdir(tmp_path)
