"""Cross-package: core's `label` workflow, driven through the `opshelf` CLI, labels frames with
opshelf-fp's real pw.x engine — the engine is found through the `opshelf.engines` entry point,
so core never imports opshelf-fp."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dpdata
import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from opshelf.core.testing import require_engine

OPSHELF = [sys.executable, "-m", "opshelf.core.cli"]


def test_label_workflow_runs_qe_through_the_cli(tmp_path: Path) -> None:
    require_engine("pw.x")
    # 2-atom diamond Si, a = 5.43 A (experimental, ase.data.reference_states); the second frame has
    # one atom displaced so it feels a restoring force.
    perfect = bulk("Si", "diamond", a=5.43)
    displaced = perfect.copy()
    displaced.positions[1] += (0.05, -0.03, 0.02)
    write(tmp_path / "si2.extxyz", [perfect, displaced], format="extxyz")
    (tmp_path / "config.yaml").write_text(
        "frames: [si2.extxyz]\n"
        "engine:\n"
        "  name: qe\n"
        "  settings: {pseudopotentials: {Si: Si.pz-vbc.UPF}, ecutwfc_Ry: 20.0, kpoints: [2, 2, 2]}\n"
        "  profile: {threads: 1}\n"
        "task: {kind: single_point}\n"
    )
    proc = subprocess.run(
        [*OPSHELF, "run", "label", "config.yaml", "--runs-dir", "runs", "--name", "si2-qe"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = tmp_path / "runs" / "si2-qe" / "results"
    assert str(results) in proc.stdout + proc.stderr  # the run ends by saying where its output is

    summary = json.loads((results / "summary.json").read_text())
    assert (summary["n_tasks"], summary["n_failed"]) == (2, 0)
    (system,) = dpdata.MultiSystems.from_file(str(results / "data"), fmt="deepmd/npy").systems.values()
    assert system.get_nframes() == 2
    energies = system["energies"]
    forces = system["forces"]
    assert np.all(np.isfinite(energies))
    # Physics, not a recorded number: the perfect crystal has zero force by symmetry (pw.x prints
    # forces to 1e-4 Ry/bohr ~ 3e-3 eV/A), and forces of each frame sum to ~0 (translation invariance).
    perfect_idx = int(np.argmin(np.abs(forces).max(axis=(1, 2))))
    assert np.abs(forces[perfect_idx]).max() < 5e-3
    np.testing.assert_allclose(forces.sum(axis=1), 0.0, atol=5e-3)
    # Displacing an atom costs energy.
    assert energies[1 - perfect_idx] > energies[perfect_idx]


@pytest.mark.parametrize("group", ["workflows", "engines", "models"])
def test_opshelf_list_sees_every_installed_package(group: str) -> None:
    proc = subprocess.run([*OPSHELF, "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"{group}:" in proc.stdout
    if group == "engines":
        for name in ("ase", "cp2k", "qe", "vasp", "abacus", "gaussian"):
            assert f"  {name} " in proc.stdout
