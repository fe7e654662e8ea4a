"""Write test-data.extxyz: the cu-emt-finetune example's held-out set.

20 EMT frames of ASE Langevin MD of 2x2x2 fcc Cu at 400 K and 800 K (the temperatures the
loop explores), every 20 steps of 2 fs after 200 steps: no model is trained on them, and the
fine-tuned and the from-scratch loop are scored on the same frames. (The init data are the
cu-emt example's init-data.extxyz: 12 near-equilibrium frames.)
Run: python make_test_data.py  (deterministic: seeds 400, 800)
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
    ase.io.write(out / "test-data.extxyz", md_frames(400) + md_frames(800), format="extxyz")


if __name__ == "__main__":
    main()
