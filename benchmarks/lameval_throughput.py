"""Structures per second evaluating one data set: opshelf-lameval's (batched) evaluation vs a
plain per-structure ASE loop (as LAMBench does), same model, same data, same device.

    .venv/bin/python benchmarks/lameval_throughput.py [--model sevennet] [--atoms 32] [--n 64]

The data set: `--n` rattled fcc Cu cells of `--atoms` atoms (32: 2x2x2 conventional cells).
Warm-up (model load, first calls) is excluded from both timings. Prints the device and, last,
`opshelf_structs_per_s=<x> ase_loop_structs_per_s=<y>`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase.build import bulk

from opshelf.core.models import load_calculator
from opshelf.lameval.predict import AseLoopPredictor, ModelSpec, make_predictor
from opshelf.lameval.tasks import device_name

REPEATS = {4: (1, 1, 1), 32: (2, 2, 2), 108: (3, 3, 3), 256: (4, 4, 4), 500: (5, 5, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sevennet", help="chgnet or sevennet")
    parser.add_argument("--atoms", type=int, default=32, choices=sorted(REPEATS))
    parser.add_argument("--n", type=int, default=64, help="structures in the data set")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    base = bulk("Cu", "fcc", a=3.62, cubic=True) * REPEATS[args.atoms]
    frames = []
    for _ in range(args.n):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    batched = make_predictor(ModelSpec(name=args.model, calculator=args.model,
                                       batch_size=args.batch_size))
    loop = AseLoopPredictor(load_calculator(args.model))
    batched.predict(frames[: args.batch_size])  # warm-up
    loop.predict(frames[:2])
    start = time.perf_counter()
    batched.predict(frames)
    opshelf_rate = len(frames) / (time.perf_counter() - start)
    start = time.perf_counter()
    loop.predict(frames)
    loop_rate = len(frames) / (time.perf_counter() - start)
    print(f"model={args.model} device={device_name()!r} atoms={len(base)} n={args.n} "
          f"batch_size={args.batch_size} speedup={opshelf_rate / loop_rate:.2f}x")
    print(f"opshelf_structs_per_s={opshelf_rate:.2f} ase_loop_structs_per_s={loop_rate:.2f}")


if __name__ == "__main__":
    main()
