"""Test a frozen model on labelled data with `dp test`: per-system and overall errors.

`dp test -d detail` writes every frame's reference and predicted energy per atom, forces
and virial per atom, the systems one after another; the errors are computed from those
files, so per-system and pooled numbers come from one dp run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opshelf.core.errors import MissingInputError
from opshelf.core.process import run_command
from opshelf.train.data import count_frames, find_systems
from opshelf.train.deepmd import DpProfile, check_dp

DETAIL_PREFIX = "detail"
METRICS_FILE = "test-metrics.json"
#: detail-file suffix -> quantity name with units (reference and prediction columns).
_QUANTITIES = {"e_peratom": "energy_eV_per_atom", "f": "force_eV_per_A",
               "v_peratom": "virial_eV_per_atom"}


def system_shape(system: Path) -> tuple[int, int]:
    """(frames, atoms) of a deepmd/npy system."""
    natoms = len((system / "type.raw").read_text().split())
    return count_frames([system]), natoms


def errors(reference: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    diff = np.asarray(prediction) - np.asarray(reference)
    return {"rmse": float(np.sqrt(np.mean(diff**2))), "mae": float(np.mean(np.abs(diff)))}


def _key(quantity: str, stat: str) -> str:
    name, units = quantity.split("_", 1)
    return f"{name}_{stat}_{units}"


def detail_metrics(prefix: Path, systems: Sequence[tuple[str, int, int]]) -> dict[str, Any]:
    """Per-system and pooled RMSE/MAE of every quantity dp test wrote for `prefix`.

    `systems`: (name, frames, atoms) in the order dp tested them. DeePMD-kit 3.2 writes the
    `# <system>:` header only above the first system, so rows are split by these counts
    (a row per frame; per atom for forces); a row count that does not add up is an error.
    """
    per_system: dict[str, dict[str, Any]] = {
        name: {"n_frames": frames, "n_atoms": atoms} for name, frames, atoms in systems}
    pooled: dict[str, Any] = {}
    for suffix, quantity in _QUANTITIES.items():
        path = prefix.parent / f"{prefix.name}.{suffix}.out"
        if not path.is_file():
            continue  # e.g. no virial in the data
        table = np.loadtxt(path, comments="#", ndmin=2)
        sizes = [frames * (atoms if suffix == "f" else 1) for _, frames, atoms in systems]
        if table.shape[0] != sum(sizes):
            raise MissingInputError(f"{path}: {table.shape[0]} rows, expected {sum(sizes)} "
                                    "for the systems tested; an incomplete dp test run?")
        half = table.shape[1] // 2
        offsets = np.cumsum([0, *sizes])
        for (name, _, _), lo, hi in zip(systems, offsets[:-1], offsets[1:]):
            for stat, value in errors(table[lo:hi, :half], table[lo:hi, half:]).items():
                per_system[name][_key(quantity, stat)] = value
        for stat, value in errors(table[:, :half], table[:, half:]).items():
            pooled[_key(quantity, stat)] = value
    if not pooled:
        raise MissingInputError(f"dp test wrote no detail files at {prefix}.*.out")
    pooled["n_frames"] = sum(frames for _, frames, _ in systems)
    pooled["n_systems"] = len(systems)
    return {"overall": pooled, "systems": per_system}


def evaluate_model(model: Path, data: Sequence[Path], work_dir: Path,
               profile: DpProfile | None = None) -> dict[str, Any]:
    """Run `dp test` of `model` over every system in `data`; write and return the metrics:
    `overall` (pooled over every frame) and `systems` (per system path), with keys such as
    `energy_rmse_eV_per_atom`, `force_mae_eV_per_A`, `virial_rmse_eV_per_atom`."""
    profile = profile or DpProfile()
    model = Path(model)
    if not model.is_file():
        raise MissingInputError(f"model file not found: {model}")
    systems = find_systems(data)
    work_dir.mkdir(parents=True, exist_ok=True)
    check_dp(profile, work_dir)
    (work_dir / "systems.txt").write_text("".join(f"{s}\n" for s in systems))
    run_command(profile.argv("test", "-m", str(model.resolve()), "-f", "systems.txt", "-d",
                             DETAIL_PREFIX), work_dir, env=profile.environment(),
                timeout=profile.timeout_s, log_name="dp-test")
    shapes = [(str(system), *system_shape(system)) for system in systems]
    metrics = {"model": str(model), **detail_metrics(work_dir / DETAIL_PREFIX, shapes)}
    (work_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    return metrics

