"""Write init-data.extxyz: the initial training data of the cu-emt example.

12 EMT-labelled 2x2x2 fcc Cu cells (32 atoms), small random strain (<= 1 %) and small
displacements (0.03 A): near-equilibrium frames only, so the first models are poor at the
temperatures the loop explores and concurrent learning has something to find.
Run: python make_init_data.py  (deterministic: seed 0)
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT


def main(out: Path = Path(__file__).with_name("init-data.extxyz")) -> None:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(12):
        atoms = bulk("Cu", "fcc", a=3.59, cubic=True) * (2, 2, 2)
        strain = rng.uniform(-0.01, 0.01, (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.get_forces()
        atoms.get_stress()
        frames.append(atoms)
    ase.io.write(out, frames, format="extxyz")


if __name__ == "__main__":
    main()
