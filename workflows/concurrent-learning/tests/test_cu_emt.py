"""The cu-emt example for real: DeePMD-kit training, LAMMPS exploration with the ensemble,
EMT labels. The loop must converge (every stage meets its criterion, exit status 0, the
verdict "converged"), its own held-out score must fall from the first iteration's models to
the last one's, and so must the force error on an independent EMT-labelled set (ASE MD at
400 K and 800 K, the explored temperatures, never seen by the loop).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import opshelf

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "cu-emt"


def held_out_set(out: Path) -> Path:
    """EMT frames from ASE Langevin MD of 2x2x2 fcc Cu (400 K and 800 K, every 20 steps)."""
    import dpdata
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    multi = dpdata.MultiSystems(type_map=["Cu"])
    for temperature in (400, 800):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        atoms.calc = EMT()
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature,
                                     rng=np.random.default_rng(temperature))
        dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02,
                       rng=np.random.default_rng(temperature + 1))
        for _ in range(10):
            dyn.run(20)
            multi.append(_labelled(atoms))
    multi.to("deepmd/npy", str(out))
    return out


def _labelled(atoms: object) -> object:
    import dpdata
    from ase.calculators.singlepoint import SinglePointCalculator

    copy = atoms.copy()  # type: ignore[attr-defined]
    copy.calc = SinglePointCalculator(copy, energy=atoms.get_potential_energy(),  # type: ignore[attr-defined]
                                      forces=atoms.get_forces())  # type: ignore[attr-defined]
    return dpdata.LabeledSystem(copy, fmt="ase/structure")


@pytest.mark.engine("dp", "py:lammps", "py:deepmd")
def test_cu_emt_loop_improves_held_out_accuracy(tmp_path: Path) -> None:
    from opshelf.train.evaluate import evaluate_model

    config = tmp_path / "cu-emt"
    shutil.copytree(EXAMPLE, config)
    run = opshelf("run", "cl", str(config / "config.yaml"), "--name", "cu", "--no-progress",
                  runs_dir=tmp_path / "runs", timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.splitlines()[-1] == "opshelf: converged: every stage met its criterion"
    import json

    history = json.loads((tmp_path / "runs" / "cu" / "results" / "history.json").read_text())
    assert history["converged"]
    scored = [r["test_force_rmse_eV_per_A"] for r in history["history"]]
    print(f"loop's held-out force RMSE by iteration: {scored}")
    # the loop's own held-out set (frames of the first exploration, labelled once, never
    # trained on): the last models beat the first clearly (measured, seed 1: 0.101 -> 0.031
    # eV/A)
    assert None not in scored and scored[-1] < 0.8 * scored[0]
    status = opshelf("status", "cu", runs_dir=tmp_path / "runs")
    lines = status.stdout.split("\n")
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("iter"))
    rows = [line.split() for line in lines[header + 1:] if line.strip()[:1].isdigit()]
    assert len(rows) >= 2
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    for r in rows:  # ratios are fractions that add up to one
        assert abs(sum(float(x) for x in r[3:6]) - 1.0) < 2e-3
    assert any(line.startswith("loop finished:") for line in lines)
    assert int(rows[0][7]) > 0  # the first models are poor: frames were labelled

    wfdir = tmp_path / "runs" / "cu" / "dflow" / "cu"
    held = held_out_set(tmp_path / "held-out")
    first = sorted(wfdir.glob("iter-000000--run-train-000000/outputs/artifacts/model/*/*.pb"))
    last = sorted((tmp_path / "runs" / "cu" / "results" / "models").glob("*.pb"))
    assert first and last

    def force_rmse(models: list[Path]) -> float:
        return float(np.mean([evaluate_model(m, [held], tmp_path / f"test-{i}-{m.parent.name}")
                              ["overall"]["force_rmse_eV_per_A"] for i, m in enumerate(models)]))

    rmse_first, rmse_last = force_rmse(first), force_rmse(last)
    print(f"held-out force RMSE: first iteration {rmse_first:.4f}, last {rmse_last:.4f} eV/A")
    # the loop adds hot frames the initial near-equilibrium data lacks: the mean error of the
    # ensemble on hot held-out frames must drop clearly (10 %), not just by noise
    # (printed above; see the issue note for the measured numbers)
    assert rmse_last < 0.9 * rmse_first
