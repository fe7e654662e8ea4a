"""Configuration filters applied to selected frames (after DPGEN2's conf filters).

Each returns the reason a frame is rejected, or None when it passes. A frame is given as
cell (3x3, A), coordinates (n x 3, A) and periodicity.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from opshelf.core.config import StrictModel


class ConfFilters(StrictModel):
    """Filters on the selected frames; each is off when unset."""

    min_distance_A: float | None = Field(
        None, gt=0, le=10, description="reject a frame with two atoms closer than this")
    min_cell_angle_deg: float | None = Field(
        None, gt=0, lt=90, description="reject a skewed box: an angle between cell vectors "
        "below this or above 180 minus this")
    max_length_ratio: float | None = Field(
        None, ge=1, le=1000, description="reject a box whose longest cell vector is more than this "
        "times its shortest")


def min_interatomic_distance(cell: np.ndarray, coords: np.ndarray, pbc: bool,
                             cutoff: float) -> float:
    """Smallest distance between two atoms (periodic images included), or inf when no pair
    lies within `cutoff`."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(positions=coords, cell=cell, pbc=pbc)
    if len(atoms) < 2 and not pbc:
        return float("inf")
    distances = neighbor_list("d", atoms, cutoff)
    return float(distances.min()) if distances.size else float("inf")


def cell_angles_deg(cell: np.ndarray) -> np.ndarray:
    """(alpha, beta, gamma): the angles between b-c, a-c, a-b."""
    a, b, c = np.asarray(cell, dtype=float)

    def angle(x: np.ndarray, y: np.ndarray) -> float:
        cos = np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))
        return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))

    return np.array([angle(b, c), angle(a, c), angle(a, b)])


def rejection_reason(filters: ConfFilters, cell: np.ndarray, coords: np.ndarray,
                     pbc: bool = True) -> str | None:
    """Why the frame fails `filters`, or None."""
    if filters.min_distance_A is not None:
        d = min_interatomic_distance(cell, coords, pbc, filters.min_distance_A)
        if d < filters.min_distance_A:
            return f"atoms {d:.3f} A apart < min_distance_A {filters.min_distance_A}"
    if pbc and filters.min_cell_angle_deg is not None:
        angles = cell_angles_deg(cell)
        low, high = filters.min_cell_angle_deg, 180.0 - filters.min_cell_angle_deg
        if angles.min() < low or angles.max() > high:
            return (f"cell angles {np.round(angles, 2).tolist()} deg outside "
                    f"[{low}, {high}] (min_cell_angle_deg)")
    if pbc and filters.max_length_ratio is not None:
        lengths = np.linalg.norm(np.asarray(cell, dtype=float), axis=1)
        ratio = float(lengths.max() / lengths.min())
        if ratio > filters.max_length_ratio:
            return f"cell length ratio {ratio:.3f} > max_length_ratio {filters.max_length_ratio}"
    return None
