"""Structures per second evaluating one data set: opshelf-lameval's (batched) evaluation vs a
plain per-structure ASE loop (as LAMBench does), same model, same data, same device.

    .venv/bin/python benchmarks/lameval_throughput.py [--model sevennet] [--atoms 32] [--n 64]

The data set: `--n` rattled fcc Cu cells of `--atoms` atoms (32: 2x2x2 conventional cells).
Warm-up (model load, first calls) is excluded from both timings; the two sides are timed
in alternating rounds (`--repeats`, medians). opshelf's evaluation is
what a config gets by default (`batched: null`: batches on a GPU, the ASE loop on a CPU);
`--batched` forces batches of `--batch-size`. Prints the device, the path taken, each batch
size's rate with `--sweep`, and, last, `opshelf_structs_per_s=<x> ase_loop_structs_per_s=<y>`.

Measured (2 CPU cores, idle, 32-atom Cu, 32 structures, structs/s): SevenNet-0 loop 4.9,
batches of 32 2.6, 16 2.7, 8 3.8, 4 4.6; CHGNet 0.3.0 loop 4.7, batches of 32 2.5, 16 3.0,
8 4.1, 4 5.1. On a CPU a forward pass is compute-bound, so packing structures saves only the
per-call overhead and large batches lose cache locality. `--profile` shows it: the share of
the ASE loop's time spent inside the model's own forward pass (energy, forces and stress by
autograd) bounds what any batching can gain, loop_time / (loop_time - outside) at best.
Measured (idle, 2 threads, 32-atom Cu): CHGNet's pass 182 of 209 ms per structure (87 %:
at most 1.15x), SevenNet-0's 220 of 228 ms (97 %: at most 1.03x).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from ase.build import bulk

from opshelf.core.models import load_calculator
from opshelf.lameval.models import torch_thread_count
from opshelf.lameval.predict import AseLoopPredictor, ModelSpec, make_predictor
from opshelf.lameval.tasks import device_name

REPEATS = {4: (1, 1, 1), 32: (2, 2, 2), 108: (3, 3, 3), 256: (4, 4, 4), 500: (5, 5, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sevennet", help="chgnet or sevennet")
    parser.add_argument("--atoms", type=int, default=32, choices=sorted(REPEATS))
    parser.add_argument("--n", type=int, default=64, help="structures in the data set")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batched", action="store_true", help="force batches (else: default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, every core; on a busy "
                        "machine its threads wait on each other: set 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating timed rounds of each side (medians)")
    parser.add_argument("--sweep", action="store_true", help="also time batch sizes 4..32")
    parser.add_argument("--profile", action="store_true",
                        help="also split the ASE loop's time: the model's forward pass vs the rest")
    args = parser.parse_args()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    base = bulk("Cu", "fcc", a=3.62, cubic=True) * REPEATS[args.atoms]
    frames = []
    for _ in range(args.n):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        frames.append(atoms)
    spec = ModelSpec(name=args.model, calculator=args.model, batch_size=args.batch_size,
                     batched=True if args.batched else None)
    batched = make_predictor(spec)
    loop = AseLoopPredictor(load_calculator(args.model))
    batched.predict(frames[: args.batch_size])  # warm-up
    loop.predict(frames[:2])
    # alternate the two, --repeats rounds, medians: load that comes and goes (a shared
    # machine) then hits both sides alike instead of whichever ran during it
    opshelf_rates, loop_rates = [], []
    for _ in range(args.repeats):
        opshelf_rates.append(structs_per_s(batched, frames))
        loop_rates.append(structs_per_s(loop, frames))
    opshelf_rate, loop_rate = statistics.median(opshelf_rates), statistics.median(loop_rates)
    if args.sweep:
        for size in (4, 8, 16, 32):
            sized = make_predictor(spec.model_copy(update={"batched": True, "batch_size": size}))
            sized.predict(frames[:size])
            print(f"batch_size={size} structs_per_s={structs_per_s(sized, frames):.2f}")
    if args.profile:
        profile_loop(loop, frames)
    path = f"batches of {args.batch_size}" if batched.batched else "ASE loop"
    print(f"model={args.model} device={device_name()!r} threads={torch_thread_count()} "
          f"atoms={len(base)} n={args.n} "
          f"opshelf path: {path} speedup={opshelf_rate / loop_rate:.2f}x")
    print(f"opshelf_structs_per_s={opshelf_rate:.2f} ase_loop_structs_per_s={loop_rate:.2f}")


def structs_per_s(predictor: Any, frames: list) -> float:
    start = time.perf_counter()
    predictor.predict(frames)
    return len(frames) / (time.perf_counter() - start)


def profile_loop(loop: AseLoopPredictor, frames: list) -> None:
    """Time the ASE loop and, inside it, the calculator's model forward pass (for CHGNet and
    SevenNet the forces and stress are autograd inside that pass). The instance's `forward`
    is wrapped, not hooked: CHGNet's calculator calls `model.forward` directly, which skips
    module hooks."""
    import torch

    model = getattr(loop.calc, "model", None)
    if not isinstance(model, torch.nn.Module):
        print(f"profile: {type(loop.calc).__name__} has no torch model to time")
        return
    inside = [0.0]
    forward = model.forward

    def timed_forward(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return forward(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - start

    model.forward = timed_forward
    try:
        start = time.perf_counter()
        loop.predict(frames)
        total = time.perf_counter() - start
    finally:
        del model.forward  # back to the class's method
    per = 1e3 / len(frames)
    print(f"profile: ASE loop {total * per:.1f} ms/structure, model forward pass "
          f"{inside[0] * per:.1f} ms ({inside[0] / total:.0%}), the rest "
          f"{(total - inside[0]) * per:.1f} ms; batching gains at most "
          f"{total / inside[0]:.2f}x unless the pass itself gets faster per structure")


if __name__ == "__main__":
    main()
