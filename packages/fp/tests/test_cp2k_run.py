"""REAL CP2K runs on a 2-atom Si cell (SZV basis, 150 Ry, 2x2x2 k-points, 1 thread:
about 5 s each here): failures, checks, and a relax. The single points (physics and the
pinned numbers of si2_regression/cp2k-displaced.csv) run through PrepRunFp in test_ops.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fp_test_helpers import si2_frame

from opshelf.core.engine import RelaxOptions, Task, TaskFailed, TaskKind
from opshelf.core.errors import MissingInputError
from opshelf.fp import label_frames
from opshelf.fp.cp2k import Cp2kEngine, read_pw_grids

SMALL = {"basis": "SZV", "cutoff_Ry": 150.0, "rel_cutoff_Ry": 30.0, "kpoints": [2, 2, 2]}
DISPLACEMENT = (0.05, -0.03, 0.02)  # Angstrom, second atom
RELAX_DISPLACEMENT = (0.02, -0.01, 0.01)


@pytest.fixture
def engine(cp2k_ready: None) -> Cp2kEngine:
    return Cp2kEngine(SMALL, {"threads": 1})


def test_unconverged_scf_is_a_recorded_failure(cp2k_ready: None, tmp_path: Path) -> None:
    engine = Cp2kEngine({**SMALL, "max_scf": 1}, {"threads": 1})
    labelled, failures = label_frames(si2_frame(DISPLACEMENT), engine, tmp_path)
    assert labelled.get_nframes() == 0
    assert len(failures) == 1
    assert "SCF not converged" in failures[0].reason
    assert "PROGRAM ENDED" in failures[0].log_tail  # CP2K 2023 warns and finishes
    with pytest.raises(TaskFailed, match="SCF not converged"):
        engine.read_results(failures[0].task_dir, Task(), si2_frame(DISPLACEMENT))


def test_abort_is_a_recorded_failure_in_cp2k_s_words(cp2k_ready: None, tmp_path: Path) -> None:
    """CP2K stops on an unknown keyword while parsing (well under a second): recorded with
    the text of its [ABORT] box as the reason."""
    template = tmp_path / "bad.inp"
    template.write_text(
        "&GLOBAL\n  RUN_TYPE ENERGY_FORCE\n  NO_SUCH_KEYWORD 1\n&END GLOBAL\n"
        "&FORCE_EVAL\n  &SUBSYS\n{{CELL}}\n{{COORD}}\n  &END SUBSYS\n&END FORCE_EVAL\n"
    )
    engine = Cp2kEngine({"template": str(template)}, {"threads": 1})
    labelled, failures = label_frames(si2_frame(), engine, tmp_path / "w")
    assert labelled.get_nframes() == 0
    (failure,) = failures
    assert "'cp2k' failed (exit status 1)" in failure.reason
    assert "cp2k says: found an unknown keyword NO_SUCH_KEYWORD in section GLOBAL" in (
        failure.reason
    )
    assert "[ABORT]" in failure.log_tail


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


def test_reference_cell_gives_every_volume_one_fft_grid(cp2k_ready: None, tmp_path: Path) -> None:
    """Si2 at its own size and compressed by 4 % in volume (Gamma only, SZV, 150/30 Ry; four
    runs, 6-10 s each at load 2-5, 13-14 s at load 9). Alone, CP2K picks a grid per cell
    (measured: 30^3 and 27^3 fine-grid points); with cell_ref_A = the larger cell both get
    that cell's grid, and at that cell the energy is the plain run's (same grid, same numbers:
    they agreed to 1e-15 Ha; 1e-6 eV allows for SCF noise)."""
    gamma = {key: value for key, value in SMALL.items() if key != "kpoints"}
    frames = si2_frame()
    compressed = si2_frame()
    compressed.data["cells"] *= 0.96 ** (1 / 3)
    compressed.data["coords"] *= 0.96 ** (1 / 3)
    frames.append(compressed)
    reference = si2_frame()["cells"][0].tolist()
    grids = {}
    energies = {}
    for name, settings in (("plain", gamma), ("cell_ref", {**gamma, "cell_ref_A": reference})):
        labelled, failures = label_frames(
            frames, Cp2kEngine(settings, {"threads": 1}), tmp_path / name
        )
        assert failures == []
        energies[name] = labelled[0]["energies"]
        grids[name] = [
            read_pw_grids(tmp_path / name / f"task-{i:06d}" / "cp2k.out")[0] for i in range(2)
        ]
    assert grids["plain"][0] != grids["plain"][1]  # the compressed cell gets fewer points
    assert grids["cell_ref"] == [grids["plain"][0]] * 2
    assert (tmp_path / "cell_ref" / "task-000001" / "input.inp").read_text().count("CELL_REF") == 2
    assert energies["cell_ref"][0] == pytest.approx(energies["plain"][0], abs=1e-6)


@pytest.mark.slow
def test_geo_opt_then_single_point_on_the_relaxed_structure(
    engine: Cp2kEngine, tmp_path: Path
) -> None:
    """GEO_OPT, then ENERGY_FORCE restarted from it (~25-40 s here: marked slow).

    A small displacement keeps it to 5 BFGS steps (7 from DISPLACEMENT); it still moves
    the bond by 0.012 A, six times the tolerance below, with forces of ~0.5 eV/A."""
    frame = si2_frame(RELAX_DISPLACEMENT)
    task = Task(kind=TaskKind.RELAX, relax=RelaxOptions(fmax_eV_per_A=0.01, max_steps=30))
    relaxed, failures = label_frames(frame, engine, tmp_path, task=task)
    assert failures == []
    system = relaxed[0]
    assert (tmp_path / "task-000000" / "cp2k-final.out").is_file()
    assert np.abs(system["forces"]).max() < 0.01
    # The atoms meet again at the diamond bond: a quarter of the cube diagonal, 5.43*sqrt(3)/4.
    bond = np.linalg.norm(system["coords"][0, 1] - system["coords"][0, 0])
    assert bond == pytest.approx(5.43 * np.sqrt(3) / 4, abs=2e-3)
    assert system.has_virial()
