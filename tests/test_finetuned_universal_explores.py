"""A fine-tuned universal potential explores: SevenNet-0 fine-tuned (opshelf-train's
`sevennet` trainer, two seeds, 2 epochs on 8 EMT-labelled Cu cells) is run by opshelf-md's
ase-ensemble engine as `sevennet-finetuned` models: NVT MD driven by the first model, the
model deviation of both on every dumped frame. Cross-package (train writes the models, md
runs them), so it lives here; the fine-tune's accuracy is tested in opshelf-train
(test_finetune_sevennet.py), exploration with DeePMD ensembles in opshelf-md."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

# a missing sevenn skips here and fails under OPSHELF_REQUIRE_ENGINES=1 (CI)
pytestmark = pytest.mark.engine("py:sevenn")


def emt_cu_cells(n: int, seed: int) -> list:
    """Rattled (0.08 A), strained (<= 2 %) 4-atom fcc Cu cells with EMT labels."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        strain = rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(),
                                           forces=atoms.get_forces())
        frames.append(frame)
    return frames


def test_finetuned_sevennet_ensemble_explores_with_model_deviation(tmp_path: Path) -> None:
    from opshelf.md.explore import ExploreConfig, prepare_explore_tasks, run_explore_tasks
    from opshelf.md.model_devi import read_model_devi
    from opshelf.train.universal import UniversalFinetune, finetune_universal

    result = finetune_universal(emt_cu_cells(8, seed=3), tmp_path / "finetune",
                                UniversalFinetune(trainer="sevennet", epochs=2, seeds=[0, 1],
                                                  threads=1))
    assert result.calculator == "sevennet-finetuned" and len(result.models) == 2
    conf = tmp_path / "conf.extxyz"
    start = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 1)
    start.rattle(0.05, seed=5)  # off the lattice: forces, and their deviation, are not zero
    ase.io.write(conf, start, format="extxyz")
    config = ExploreConfig(
        engine={"name": "ase-ensemble", "settings": {"calculators": [
            {"calculator": result.calculator, "kwargs": {"model": str(m)}}
            for m in result.models]}},
        groups=[{"kind": "md", "temperatures_K": [600], "n_steps": 6, "dump_every": 2}])
    names, paths, _ = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    reports = run_explore_tasks(paths, tmp_path / "runs")
    assert [r["status"] for r in reports] == ["succeeded"], reports
    devi = read_model_devi(tmp_path / "runs" / names[0] / "model_devi.out")
    print("max force deviation per frame (eV/A):", devi[:, 4].tolist())
    assert devi[:, 0].tolist() == [0, 2, 4, 6]
    # two seeds train two different models: they disagree (measured 0.0067-0.0071 eV/A, at
    # load ~8: both start from SevenNet-0 and trained 2 epochs, so they differ little; one
    # model run twice gives round-off, ~1e-7), by far less than 1 eV/A
    assert np.all(devi[:, 4] > 1e-4) and np.all(devi[:, 4] < 1.0)
