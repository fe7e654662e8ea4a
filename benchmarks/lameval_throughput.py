"""Structures per second evaluating one data set: opshelf-lameval's (batched) evaluation vs a
plain per-structure ASE loop (as LAMBench does), same model, same data, same device.

    .venv/bin/python benchmarks/lameval_throughput.py [--model sevennet] [--atoms 32] [--n 64]

The data set: `--n` rattled fcc Cu cells of `--atoms` atoms (32: 2x2x2 conventional cells).
Warm-up (model load, first calls) is excluded from both timings; the two sides are timed
in alternating rounds (`--repeats`, medians). opshelf's evaluation is
what a config gets by default (`batched: null`: batches on a GPU, the ASE loop on a CPU);
`--batched` forces batches of `--batch-size`. Prints the device, the path taken, each batch
size's rate with `--sweep`, and, last, `device=.. cores=.. speedup=.. opshelf_structs_per_s=<x>
ase_loop_structs_per_s=<y>`.

opshelf's default on a CPU (issue 21): the ASE loop in worker processes, one per usable core
(the process's CPU affinity), one torch thread each; the ASE loop it is timed against runs in
this process at torch's default threads. Measured (2026-12-05 22:00-22:09, 2 cores, load
average 8-11 from other people's jobs, CHGNet 0.3.0, 32-atom Cu, n=16, 3 rounds):
`device=cpu:_x86_64 cores=2 speedup=8.54 opshelf_structs_per_s=0.68 ase_loop_structs_per_s=0.08`
(rounds 0.68/0.60/0.69 vs 0.08/0.07/0.11; workers started in 36.9 s, not timed): under that
load torch's two threads wait on each other. Nearly idle (22:17-22:18, load average 0.96-1.31,
same model, n=32): `device=cpu:_x86_64 cores=2 speedup=1.21 opshelf_structs_per_s=5.32
ase_loop_structs_per_s=4.41` (rounds 5.32/5.26/5.50 vs 4.63/4.41/4.24; started in 7.0 s):
BELOW the 1.5x target. Idle, torch's two threads already run a structure 1.65x faster than
one (4.4 vs 2.66 structs/s per worker), so two one-thread workers can gain at most
2/1.65 = 1.21x here; the target holds only on a loaded machine.
No GPU was lent: the batched GPU path is unmeasured here (tests run it on a CPU).

Earlier (2 CPU cores, idle, 32-atom Cu, 32 structures, structs/s): SevenNet-0 loop 4.9,
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
from opshelf.lameval.pool import usable_cores
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
                        help="torch CPU threads of the ASE loop in this process (default: "
                        "torch's, every core; on a busy machine its threads wait on each "
                        "other: set 1)")
    parser.add_argument("--workers", type=int, default=None,
                        help="opshelf's worker processes on a CPU (default: one per usable "
                        "core for chgnet/sevennet; 1: in this process)")
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
                     batched=True if args.batched else None, workers=args.workers)
    start = time.perf_counter()
    batched = make_predictor(spec)
    start_s = time.perf_counter() - start
    loop = AseLoopPredictor(load_calculator(args.model))
    batched.predict(frames[: args.batch_size])  # warm-up
    loop.predict(frames[:2])
    # alternate the two, --repeats rounds, medians: load that comes and goes (a shared
    # machine) then hits both sides alike instead of whichever ran during it
    opshelf_rates, loop_rates = [], []
    for _ in range(args.repeats):
        opshelf_rates.append(structs_per_s(batched, frames))
        loop_rates.append(structs_per_s(loop, frames))
        print(f"round: opshelf {opshelf_rates[-1]:.2f}, ASE loop {loop_rates[-1]:.2f} "
              f"structs/s (load {load_average()})", flush=True)
    opshelf_rate, loop_rate = statistics.median(opshelf_rates), statistics.median(loop_rates)
    if args.sweep:
        for size in (4, 8, 16, 32):
            sized = make_predictor(spec.model_copy(update={"batched": True, "batch_size": size}))
            sized.predict(frames[:size])
            print(f"batch_size={size} structs_per_s={structs_per_s(sized, frames):.2f}")
    if args.profile:
        profile_loop(loop, frames)
    batched.close()
    workers, threads = spec.pool_plan()
    path = (f"batches of {args.batch_size}" if batched.batched else
            f"ASE loop in {workers} worker processes x {threads} torch thread(s) "
            f"(started in {start_s:.1f} s, not timed)" if workers > 1 else "ASE loop")
    print(f"model={args.model} atoms={len(base)} n={args.n} opshelf path: {path}; "
          f"ASE loop at {torch_thread_count()} torch threads; load average {load_average()}")
    print(f"device={device_name().replace(' ', '_')} cores={usable_cores()} "
          f"speedup={opshelf_rate / loop_rate:.2f} "
          f"opshelf_structs_per_s={opshelf_rate:.2f} ase_loop_structs_per_s={loop_rate:.2f}")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other people's jobs on a shared machine)."""
    import os

    return "/".join(f"{x:.2f}" for x in os.getloadavg())


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
