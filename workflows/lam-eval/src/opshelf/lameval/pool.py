"""Evaluate structures in worker processes, each with its own copy of the model.

On a CPU a large model's forward pass is compute-bound and small (a 32-atom cell): torch's
intra-op threads gain little on it, and on a shared machine its threads wait on each other
(CHGNet ran 7-10x slower at torch's default threads on 2 busy cores). One process per core,
each with one torch thread, keeps every core on its own structure instead
(`benchmarks/lameval_throughput.py` measures it against the per-structure ASE loop).

Workers start with `spawn` (a forked torch can deadlock in its thread pools), load the model
once, and evaluate contiguous chunks of the data set in the ASE loop; results come back in
the input's order. A structure the model cannot do raises in the caller, as in the loop.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from opshelf.core.errors import ConfigError

if TYPE_CHECKING:
    from ase import Atoms

#: seconds the workers may take to start and load their model
START_TIMEOUT_S = 900.0
#: chunks per worker and data set: small enough to balance, large enough to amortise a call
CHUNKS_PER_WORKER = 4

_WORKER: dict[str, Any] = {}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a Slurm or taskset share), not
    the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_worker(make_loop: Callable[[str], Any], spec_json: str, threads: int,
                 barrier: Any) -> None:
    """Runs once in each worker: threads first (before torch starts its pools), then the model."""
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[key] = str(threads)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(threads)
    _WORKER["predictor"] = make_loop(spec_json)
    _WORKER["threads"] = threads
    _WORKER["barrier"] = barrier


def _torch() -> Any:
    """torch when it is installed (an EMT or import-path model may not need it), else None."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch


def _ready() -> tuple[int, int | None]:
    """Waits until every worker has loaded its model; (pid, torch threads)."""
    import sys

    _WORKER["barrier"].wait(timeout=START_TIMEOUT_S)
    torch = sys.modules.get("torch")
    return os.getpid(), None if torch is None else int(torch.get_num_threads())


def _predict_chunk(frames: Sequence[Atoms]) -> list[Any]:
    return _WORKER["predictor"].predict(frames)


class PoolPredictor:
    """The ASE loop spread over `workers` processes with `threads` torch threads each;
    `make_loop(spec_json)` (a module-level function: workers import it) builds each worker's
    loop from the model spec's JSON."""

    batched = False

    def __init__(self, make_loop: Callable[[str], Any], spec_json: str, workers: int,
                 threads: int) -> None:
        if workers < 1 or threads < 1:
            raise ConfigError(f"workers and threads must be >= 1 (got {workers}, {threads})")
        ctx = multiprocessing.get_context("spawn")
        self.workers, self.threads = workers, threads
        self._pool = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker,
            initargs=(make_loop, spec_json, threads, ctx.Barrier(workers)))
        # one waiting task per worker: no worker is idle, so each submit starts a process,
        # and none returns before all have loaded the model (the first timing is warm)
        started = [self._pool.submit(_ready) for _ in range(workers)]
        self.worker_threads = [f.result(timeout=START_TIMEOUT_S)[1] for f in started]

    def predict(self, frames: Sequence[Atoms]) -> list[Any]:
        size = max(1, -(-len(frames) // (self.workers * CHUNKS_PER_WORKER)))
        chunks = [frames[i:i + size] for i in range(0, len(frames), size)]
        return [p for chunk in self._pool.map(_predict_chunk, chunks) for p in chunk]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PoolPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
