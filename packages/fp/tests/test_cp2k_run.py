"""REAL CP2K runs on a 2-atom Si cell (SZV basis, 150 Ry, 2x2x2 k-points, 1 thread:
about 5 s each here). Numbers are pinned with num_regression; physics is checked directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fp_test_helpers import si2_frame

from opshelf.core.engine import RelaxOptions, Task, TaskFailed, TaskKind, write_task
from opshelf.core.errors import MissingInputError
from opshelf.fp import label_frames
from opshelf.fp.cp2k import Cp2kEngine

SMALL = {"basis": "SZV", "cutoff_Ry": 150.0, "rel_cutoff_Ry": 30.0, "kpoints": [2, 2, 2]}
DISPLACEMENT = (0.05, -0.03, 0.02)  # Angstrom, second atom
# Tolerances for the regression: same CP2K build and inputs reproduce energies to ~1e-8 Ha;
# allow for other BLAS/FFT builds: 1e-5 eV energy, 1e-4 eV/A forces, 1e-3 eV virial.
TOLERANCES = {
    "energy_eV": {"atol": 1e-5},
    "force_eV_per_A": {"atol": 1e-4},
    "virial_eV": {"atol": 1e-3},
}


@pytest.fixture
def engine(cp2k_ready: None) -> Cp2kEngine:
    return Cp2kEngine(SMALL, {"threads": 1})


def voigt(tensor: np.ndarray) -> np.ndarray:
    """xx, yy, zz, yz, xz, xy."""
    return tensor[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def run(engine: Cp2kEngine, frame, task_dir: Path):
    write_task(task_dir, frame, Task(), engine)
    return engine.run(task_dir, Task(), frame).system


def test_symmetric_cell_has_no_forces(engine: Cp2kEngine, tmp_path: Path) -> None:
    system = run(engine, si2_frame(), tmp_path)
    assert np.isfinite(system["energies"][0])
    # Diamond Si: every atom sits on an inversion-symmetric site, so forces vanish
    # (up to the real-space grid's egg-box error, well below 1e-3 eV/A here).
    assert np.abs(system["forces"]).max() < 1e-3
    assert system.has_virial()


def test_displaced_atom_regression_and_physics(
    engine: Cp2kEngine, tmp_path: Path, num_regression
) -> None:
    frame = si2_frame(DISPLACEMENT)
    system = run(engine, frame, tmp_path)
    forces = system["forces"][0]
    # Translational invariance: forces sum to ~0 (grid error only).
    assert np.abs(forces.sum(axis=0)).max() < 5e-3
    # Restoring force: it points against the displacement, and is not tiny.
    assert np.dot(forces[1], DISPLACEMENT) < 0
    assert np.linalg.norm(forces[1]) > 0.1
    # Labels stay in the frame's orientation and atom order.
    np.testing.assert_allclose(system["coords"], frame["coords"], atol=1e-6)
    num_regression.check(
        {
            "energy_eV": np.repeat(system["energies"], 6),
            "force_eV_per_A": forces.ravel(),
            "virial_eV": voigt(system["virials"][0]),
        },
        default_tolerance={"atol": 0, "rtol": 0},
        tolerances=TOLERANCES,
    )


def test_unconverged_scf_is_a_recorded_failure(cp2k_ready: None, tmp_path: Path) -> None:
    engine = Cp2kEngine({**SMALL, "max_scf": 1}, {"threads": 1})
    labelled, failures = label_frames(si2_frame(DISPLACEMENT), engine, tmp_path)
    assert labelled.get_nframes() == 0
    assert len(failures) == 1
    assert "SCF not converged" in failures[0].reason
    assert "PROGRAM ENDED" in failures[0].log_tail  # CP2K 2023 warns and finishes
    with pytest.raises(TaskFailed, match="SCF not converged"):
        engine.read_results(failures[0].task_dir, Task(), si2_frame(DISPLACEMENT))


def test_missing_basis_names_the_element(cp2k_ready: None, tmp_path: Path) -> None:
    engine = Cp2kEngine(SMALL)
    with pytest.raises(MissingInputError, match=r"element 'Pu'.*BASIS_MOLOPT"):
        engine.check(["Si", "Pu"], Task())
    with pytest.raises(MissingInputError, match=r"potential 'GTH-XYZ' for element 'Si'"):
        Cp2kEngine({**SMALL, "potentials": {"Si": "GTH-XYZ"}}).check(["Si"], Task())
    # label_frames checks before anything runs: no task dir is made.
    with pytest.raises(MissingInputError):
        label_frames(
            si2_frame(), Cp2kEngine({**SMALL, "potential_file": "NO_SUCH_FILE"}), tmp_path / "w"
        )
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_geo_opt_then_single_point_on_the_relaxed_structure(
    engine: Cp2kEngine, tmp_path: Path
) -> None:
    """GEO_OPT, then ENERGY_FORCE restarted from it (~30-60 s here: marked slow)."""
    frame = si2_frame(DISPLACEMENT)
    task = Task(kind=TaskKind.RELAX, relax=RelaxOptions(fmax_eV_per_A=0.01, max_steps=30))
    relaxed, failures = label_frames(frame, engine, tmp_path, task=task)
    assert failures == []
    system = relaxed[0]
    assert (tmp_path / "task.000000" / "cp2k-final.out").is_file()
    assert np.abs(system["forces"]).max() < 0.01
    # The atoms meet again at the diamond bond: a quarter of the cube diagonal, 5.43*sqrt(3)/4.
    bond = np.linalg.norm(system["coords"][0, 1] - system["coords"][0, 0])
    assert bond == pytest.approx(5.43 * np.sqrt(3) / 4, abs=2e-3)
    assert system.has_virial()
