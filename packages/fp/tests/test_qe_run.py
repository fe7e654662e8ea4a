"""REAL pw.x runs on a 2-atom Si cell (Si.pz-vbc.UPF from quantum-espresso-data, 20 Ry,
2x2x2 Gamma-centred mesh, 1 thread: under a second each here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fp_test_helpers import si2_frame

from opshelf.core.engine import RelaxOptions, Task, TaskKind, write_task
from opshelf.core.errors import MissingInputError
from opshelf.fp import label_frames
from opshelf.fp.qe import QeEngine

SMALL = {"pseudopotentials": {"Si": "Si.pz-vbc.UPF"}, "ecutwfc_Ry": 20.0, "kpoints": [2, 2, 2]}
DISPLACEMENT = (0.05, -0.03, 0.02)  # Angstrom, second atom
# Same pw.x build and inputs reproduce energies to ~1e-9 Ry; allow other BLAS/FFT builds:
TOLERANCES = {
    "energy_eV": {"atol": 1e-5},
    "force_eV_per_A": {"atol": 1e-4},
    "virial_eV": {"atol": 1e-3},
}


@pytest.fixture
def engine(pw_ready: None) -> QeEngine:
    return QeEngine(SMALL, {"threads": 1})


def voigt(tensor: np.ndarray) -> np.ndarray:
    """xx, yy, zz, yz, xz, xy."""
    return tensor[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def test_symmetric_cell_has_no_forces(engine: QeEngine, tmp_path: Path) -> None:
    frame = si2_frame()
    write_task(tmp_path, frame, Task(), engine)
    system = engine.run(tmp_path, Task(), frame).system
    assert np.isfinite(system["energies"][0])
    assert np.abs(system["forces"]).max() < 1e-4  # zero by symmetry; pw.x prints 1e-8 Ry/Bohr
    virial = system["virials"][0]
    # Cubic crystal: isotropic stress, no off-diagonal part, in the frame's orientation.
    np.testing.assert_allclose(np.diag(virial), virial[0, 0], atol=1e-6)
    np.testing.assert_allclose(virial - np.diag(np.diag(virial)), 0.0, atol=1e-6)


def test_displaced_atom_regression_and_physics(
    engine: QeEngine, tmp_path: Path, num_regression
) -> None:
    frame = si2_frame(DISPLACEMENT)
    write_task(tmp_path, frame, Task(), engine)
    system = engine.run(tmp_path, Task(), frame).system
    forces = system["forces"][0]
    assert np.abs(forces.sum(axis=0)).max() < 1e-3  # translational invariance
    assert np.dot(forces[1], DISPLACEMENT) < 0  # restoring force
    np.testing.assert_allclose(system["coords"], frame["coords"], atol=1e-6)
    np.testing.assert_allclose(system["cells"], frame["cells"], atol=1e-6)
    num_regression.check(
        {
            "energy_eV": np.repeat(system["energies"], 6),
            "force_eV_per_A": forces.ravel(),
            "virial_eV": voigt(system["virials"][0]),
        },
        fullpath=Path(__file__).parent / "si2_regression" / "qe-displaced.csv",
        default_tolerance={"atol": 0, "rtol": 0},
        tolerances=TOLERANCES,
    )


def test_relax_restores_the_crystal(engine: QeEngine, tmp_path: Path) -> None:
    frame = si2_frame(DISPLACEMENT)
    single, _ = label_frames(frame, engine, tmp_path / "sp")
    task = Task(kind=TaskKind.RELAX, relax=RelaxOptions(fmax_eV_per_A=0.01))
    relaxed, failures = label_frames(frame, engine, tmp_path / "relax", task=task)
    assert failures == []
    system = relaxed[0]
    assert np.abs(system["forces"]).max() < 0.01  # the requested threshold
    assert system["energies"][0] < single[0]["energies"][0]
    # The atoms meet again at the diamond bond: a quarter of the cube diagonal, 5.43*sqrt(3)/4.
    bond = np.linalg.norm(system["coords"][0, 1] - system["coords"][0, 0])
    assert bond == pytest.approx(5.43 * np.sqrt(3) / 4, abs=2e-3)


def test_unconverged_scf_is_a_recorded_failure(pw_ready: None, tmp_path: Path) -> None:
    engine = QeEngine({**SMALL, "electron_maxstep": 1}, {"threads": 1})
    labelled, failures = label_frames(si2_frame(DISPLACEMENT), engine, tmp_path)
    assert labelled.get_nframes() == 0
    assert len(failures) == 1
    assert "SCF not converged" in failures[0].reason
    assert "convergence NOT achieved" in failures[0].reason  # pw.x's own message


def test_missing_pseudopotential_names_the_element(pw_ready: None, tmp_path: Path) -> None:
    engine = QeEngine({**SMALL, "pseudopotentials": {"Si": "Si.no-such.UPF"}})
    with pytest.raises(MissingInputError, match=r"element 'Si'.*Si\.no-such\.UPF"):
        label_frames(si2_frame(), engine, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_labels_several_frames_in_the_type_map(engine: QeEngine, tmp_path: Path) -> None:
    """Frames keep their type map (with an extra, absent type) across tasks."""
    frames = si2_frame()
    frames.append(si2_frame(DISPLACEMENT))
    frames.data["atom_names"] = ["Si", "Cu"]
    frames.data["atom_numbs"] = [2, 0]
    labelled, failures = label_frames(frames, engine, tmp_path)
    assert failures == []
    assert labelled.get_nframes() == 2
    (system,) = labelled.systems.values()
    assert system["atom_names"] == ["Si", "Cu"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task-000000", "task-000001"]


def test_crash_is_a_recorded_failure_with_the_log_tail(pw_ready: None, tmp_path: Path) -> None:
    """pw.x stops on an unknown namelist entry: a CommandError, recorded with pw.x's own
    error report in the reason and the log tail."""
    engine = QeEngine({**SMALL, "extra": {"system": {"no_such_keyword": 1}}}, {"threads": 1})
    labelled, failures = label_frames(si2_frame(), engine, tmp_path)
    assert labelled.get_nframes() == 0
    assert len(failures) == 1
    assert "'pw.x' failed" in failures[0].reason
    assert "pw.x says: Error in routine read_namelists" in failures[0].reason
    assert "read_namelists" in failures[0].log_tail  # pw.x's own error report


def test_killed_program_is_run_again_then_recorded(pw_ready: None, tmp_path: Path) -> None:
    """A program killed from outside (SIGKILL) is re-run `program_retries` times, then
    recorded; the program here kills itself at once, so no pw.x is needed."""
    starts = tmp_path / "starts.txt"
    program = tmp_path / "killed.sh"
    program.write_text(f"#!/bin/sh\necho start >> {starts}\nkill -KILL $$\n")
    program.chmod(0o755)
    engine = QeEngine(SMALL, {"command": [str(program)]})
    labelled, failures = label_frames(si2_frame(), engine, tmp_path / "w", program_retries=2)
    assert labelled.get_nframes() == 0
    (failure,) = failures
    assert failure.attempts == 3
    assert "killed by signal 9" in failure.reason and "(after 3 attempts)" in failure.reason
    assert starts.read_text().split() == ["start"] * 3
