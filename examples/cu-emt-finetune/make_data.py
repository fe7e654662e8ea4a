"""Write the cu-emt-finetune example's data: init-data.extxyz and test-data.extxyz.

- init-data.extxyz: 12 EMT-labelled 2x2x2 fcc Cu cells (32 atoms) near equilibrium (strain
  <= 1 %, displacements 0.03 A): the frames concurrent learning starts from (the cu-emt
  example's recipe, same seed).
- test-data.extxyz: 20 EMT frames of ASE Langevin MD of 2x2x2 fcc Cu at 400 K and 800 K (the
  temperatures the loop explores), every 20 steps of 2 fs after 200 steps: a held-out set
  no model is trained on, the same for the fine-tuned and the from-scratch loop.
Run: python make_data.py  (deterministic: seeds 0, 400, 800)
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

HERE = Path(__file__).resolve().parent


def labelled(atoms: Atoms) -> Atoms:
    """A copy of `atoms` holding its EMT energy, forces and stress."""
    atoms.calc = EMT()
    copy = atoms.copy()
    copy.calc = SinglePointCalculator(copy, energy=atoms.get_potential_energy(),
                                      forces=atoms.get_forces(), stress=atoms.get_stress())
    return copy


def init_frames() -> list[Atoms]:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(12):
        atoms = bulk("Cu", "fcc", a=3.59, cubic=True) * (2, 2, 2)
        strain = rng.uniform(-0.01, 0.01, (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        frames.append(labelled(atoms))
    return frames


def md_frames(temperature: float, n_frames: int = 10) -> list[Atoms]:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature,
                                 rng=np.random.default_rng(int(temperature)))
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02,
                   rng=np.random.default_rng(int(temperature) + 1))
    dyn.run(200)
    frames = []
    for _ in range(n_frames):
        dyn.run(20)
        frames.append(labelled(atoms.copy()))
    return frames


def main(out: Path = HERE) -> None:
    ase.io.write(out / "init-data.extxyz", init_frames(), format="extxyz")
    ase.io.write(out / "test-data.extxyz", md_frames(400) + md_frames(800), format="extxyz")


if __name__ == "__main__":
    main()
