"""Classify and select over 10^6 model-deviation rows spread over 1000 trajectories.

Writes 1000 model_devi.out files (1000 rows each, LAMMPS' format, a few NaN rows) into a
temporary folder, then times reading them all, classifying every row (fixed-levels with
virial levels, and adaptive-lower) and picking candidates (random and largest-first).
Frames are not read: that cost scales with the number selected, not with 10^6.

Last line: select_1e6_s=<seconds> peak_rss_mb=<MB>   (target: < 5 s, < 1 GB)

Usage: python benchmarks/select_large.py [--trajectories 1000] [--rows 1000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from opshelf.md.model_devi import read_model_devi, write_model_devi
from opshelf.md.selection import (
    DeviationTable,
    TrustLevels,
    candidate_order,
    classify,
    n_to_select,
    selection_report,
)


def write_files(root: Path, n_traj: int, n_rows: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for t in range(n_traj):
        rows = np.empty((n_rows, 7))
        rows[:, 0] = np.arange(n_rows) * 10
        rows[:, 1:4] = rng.lognormal(-3.0, 1.0, (n_rows, 3))
        rows[:, 4:7] = rng.lognormal(-2.5, 0.8, (n_rows, 3))
        rows[rng.random(n_rows) < 1e-3, 4] = np.nan
        path = root / f"traj-{t:04d}.out"
        write_model_devi(path, rows)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trajectories", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.trajectories, args.rows)
        start = time.perf_counter()
        table = DeviationTable.from_trajectories([read_model_devi(p) for p in paths])
        t_read = time.perf_counter() - start
        names = [p.stem for p in paths]
        results = {}
        for levels in (TrustLevels(style="fixed-levels", f_lo=0.05, f_hi=0.3, v_lo=0.05,
                                   v_hi=0.5),
                       TrustLevels(style="fixed-levels-max-select", f_lo=0.05, f_hi=0.3),
                       TrustLevels(style="adaptive-lower", f_hi=0.3, numb_candi_f=200,
                                   rate_candi_f=0.01)):
            t0 = time.perf_counter()
            cls = classify(table, levels)
            order = candidate_order(table, cls, levels.style, seed=1)
            chosen = order[:n_to_select(order.size, 1000, None)]
            report = selection_report(table, cls, chosen, names)
            results[levels.style] = (time.perf_counter() - t0, report["overall"])
        total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows={len(table)} trajectories={args.trajectories} read_s={t_read:.2f}")
    for style, (seconds, overall) in results.items():
        print(f"  {style:26s} {seconds:.3f} s  candidates={overall['n_candidate']} "
              f"failed={overall['n_failed']} selected={overall['n_selected']}")
    print(f"select_1e6_s={total:.2f} peak_rss_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
