"""Write init-data.extxyz: the initial training data of the cu-cp2k example.

6 CP2K-labelled 4-atom cubic fcc Cu cells (a = 3.63 A, near the PBE lattice constant),
random symmetric strain (<= 2 %) and Gaussian displacements (0.04 A), labelled with exactly
the `fp.engine` of config.yaml (PBE, SZV-MOLOPT-SR-GTH, 2x2x2 k, Fermi-Dirac 1000 K).
Near-equilibrium frames only: the first models are poor at the exploration temperatures and
the loop has something to find. Energies, forces and the stress tensor are written.
Run: python make_init_data.py  (deterministic structures: seed 0; needs cp2k; minutes)
"""

from __future__ import annotations

import time
from pathlib import Path

import ase.io
import dpdata
import numpy as np
import yaml
from ase.build import bulk

from opshelf.core.engine import load_engine
from opshelf.fp import label_frames

HERE = Path(__file__).resolve().parent
N_FRAMES = 6


def structures(n_frames: int = N_FRAMES, seed: int = 0) -> dpdata.System:
    rng = np.random.default_rng(seed)
    frames = dpdata.System()
    for _ in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.63, cubic=True)
        strain = rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.04, atoms.positions.shape)
        frames.append(dpdata.System(atoms, fmt="ase/structure"))
    return frames


def main(out: Path = HERE / "init-data.extxyz", work: Path = HERE / "init-data-work") -> None:
    fp = yaml.safe_load((HERE / "config.yaml").read_text())["fp"]
    engine = load_engine(fp["engine"])
    start = time.perf_counter()
    labelled, failures = label_frames(structures(), engine, work)
    seconds = time.perf_counter() - start
    if failures:
        raise SystemExit("; ".join(f"frame {f.index}: {f.reason}" for f in failures))
    frames = [atoms for system in labelled for atoms in system.to("ase/structure")]
    ase.io.write(out, frames, format="extxyz")
    print(f"wrote {len(frames)} frames to {out}: {seconds:.0f} s, "
          f"{seconds / len(frames):.0f} s per label")


if __name__ == "__main__":
    main()
