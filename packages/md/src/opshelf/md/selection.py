"""Selection of explored frames by model deviation: pure functions over numpy arrays.

A `DeviationTable` holds every frame of every trajectory in flat arrays (trajectory index,
frame index, force deviation, virial deviation). `classify` labels each frame ACCURATE,
CANDIDATE or FAILED under a trust-level style; `candidate_order` ranks candidates;
`selection_report` counts per trajectory and overall. NaN (a missing or unreadable
deviation) is always FAILED, never a candidate.

Trust-level styles (`TrustLevels.style`):
- `fixed-levels`: failed if f >= f_hi (or v >= v_hi); accurate if f < f_lo (and v < v_lo);
  candidate otherwise; candidates are picked at random.
- `fixed-levels-max-select`: the same classes; the largest force deviations are picked first.
- `adaptive-lower` (DPGEN2's ExplorationReportAdaptiveLower): failed if f > f_hi (or
  v > v_hi); of the other frames the max(numb_candi_f, int(rate_candi_f * n)) largest force
  deviations (and likewise for the virial) are candidates, the rest accurate; the lower
  level is the smallest deviation among them. Candidates are picked at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from opshelf.core.bounds import ForceEvA, VirialEvPerAtom
from opshelf.core.config import StrictModel

ACCURATE, CANDIDATE, FAILED = 0, 1, 2
CLASS_NAMES = ("accurate", "candidate", "failed")


class TrustLevels(StrictModel):
    """Trust levels of the force (and optionally virial) model deviation, eV/A and eV/atom."""

    style: Literal["fixed-levels", "fixed-levels-max-select", "adaptive-lower"] = Field(
        "fixed-levels", description="fixed-levels: candidates between f_lo and f_hi, picked at "
        "random; fixed-levels-max-select: the largest deviations first; adaptive-lower: "
        "DPGEN2's adaptive lower level")
    f_lo: ForceEvA | None = Field(None, description="lower force level (fixed styles)")
    f_hi: ForceEvA = Field(description="upper force level: above it a frame is failed")
    v_lo: VirialEvPerAtom | None = Field(None, description="lower virial level (fixed styles)")
    v_hi: VirialEvPerAtom | None = Field(None, description="upper virial level; no virial check "
                               "when unset")
    numb_candi_f: int = Field(200, ge=0, le=10**6, description="adaptive-lower: candidates by force")
    rate_candi_f: float = Field(0.01, ge=0, le=1, description="adaptive-lower: candidates by "
                                "force as a fraction of the frames (the larger count wins)")
    numb_candi_v: int = Field(0, ge=0, le=10**6, description="adaptive-lower: candidates by virial")
    rate_candi_v: float = Field(0.0, ge=0, le=1, description="adaptive-lower: candidates by "
                                "virial as a fraction of the frames")

    @model_validator(mode="after")
    def _levels_consistent(self) -> TrustLevels:
        if self.style != "adaptive-lower":
            if self.f_lo is None:
                raise ValueError(f"style {self.style!r} needs f_lo")
            if self.f_lo > self.f_hi:
                raise ValueError(f"f_lo ({self.f_lo}) > f_hi ({self.f_hi})")
            if (self.v_lo is None) != (self.v_hi is None):
                raise ValueError("give both v_lo and v_hi, or neither")
            if self.v_lo is not None and self.v_hi is not None and self.v_lo > self.v_hi:
                raise ValueError(f"v_lo ({self.v_lo}) > v_hi ({self.v_hi})")
        return self

    @property
    def uses_virial(self) -> bool:
        return self.v_hi is not None


@dataclass
class DeviationTable:
    """Every explored frame: flat arrays of equal length."""

    traj: np.ndarray    # int32, index of the trajectory
    frame: np.ndarray   # int64, index of the frame in its trajectory
    devi_f: np.ndarray  # float64, max force deviation (NaN: missing)
    devi_v: np.ndarray  # float64, max virial deviation (NaN: missing)

    def __len__(self) -> int:
        return int(self.traj.size)

    @classmethod
    def from_trajectories(cls, deviations: Sequence[np.ndarray]) -> DeviationTable:
        """From one (n_frames, 7) model-deviation array per trajectory (rows = frames)."""
        sizes = np.fromiter((len(d) for d in deviations), dtype=np.int64, count=len(deviations))
        traj = np.repeat(np.arange(len(deviations), dtype=np.int32), sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else sizes
        frame = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(offsets, sizes)
        if len(deviations):
            stacked = np.concatenate([np.asarray(d, dtype=float).reshape(-1, 7)
                                      for d in deviations])
        else:
            stacked = np.empty((0, 7))
        return cls(traj, frame, stacked[:, 4].copy(), stacked[:, 1].copy())


@dataclass
class Classification:
    labels: np.ndarray  # int8: ACCURATE / CANDIDATE / FAILED per row
    level_f_lo: float
    level_v_lo: float | None


def classify(table: DeviationTable, levels: TrustLevels) -> Classification:
    """Label every row of `table`; NaN deviations (force, or virial when used) are FAILED."""
    f = table.devi_f
    use_v = levels.uses_virial
    v = table.devi_v if use_v else np.zeros_like(f)
    bad = ~np.isfinite(f) | (~np.isfinite(v) if use_v else False)
    # NaN compares False: replace it so the comparisons below cannot mark it accurate
    f = np.where(bad, np.inf, f)
    v = np.where(bad, np.inf, v)
    labels = np.full(f.shape, CANDIDATE, dtype=np.int8)
    if levels.style == "adaptive-lower":
        return _adaptive_lower(f, v, bad, levels, labels)
    failed = bad | (f >= levels.f_hi)
    accurate = f < levels.f_lo  # type: ignore[operator]
    if use_v:
        failed |= v >= levels.v_hi
        accurate &= v < levels.v_lo
    labels[accurate] = ACCURATE
    labels[failed] = FAILED
    return Classification(labels, float(levels.f_lo), levels.v_lo)  # type: ignore[arg-type]


def _adaptive_lower(f: np.ndarray, v: np.ndarray, bad: np.ndarray, levels: TrustLevels,
                    labels: np.ndarray) -> Classification:
    use_v = levels.uses_virial
    failed = bad | (f > levels.f_hi)
    if use_v:
        failed |= v > levels.v_hi
    kept = np.flatnonzero(~failed)
    labels[:] = ACCURATE
    labels[failed] = FAILED

    def top(values: np.ndarray, numb: int, rate: float) -> tuple[np.ndarray, float | None]:
        n = min(max(numb, int(rate * kept.size)), kept.size)
        if n == 0:
            return kept[:0], None
        # the n largest deviations (argpartition: O(n_rows), no full sort)
        part = np.argpartition(values[kept], kept.size - n)[kept.size - n:]
        chosen = kept[part]
        return chosen, float(values[chosen].min())

    cand_f, lo_f = top(f, levels.numb_candi_f, levels.rate_candi_f)
    labels[cand_f] = CANDIDATE
    lo_v = None
    if use_v:
        cand_v, lo_v = top(v, levels.numb_candi_v, levels.rate_candi_v)
        labels[cand_v] = CANDIDATE
        lo_v = levels.v_hi if lo_v is None else lo_v
    return Classification(labels, levels.f_hi if lo_f is None else lo_f, lo_v)


def candidate_order(table: DeviationTable, classification: Classification,
                    style: str, seed: int = 0) -> np.ndarray:
    """Row indices of the candidates, in the order they are picked: largest force
    deviation first for `fixed-levels-max-select`, a seeded random order otherwise."""
    candidates = np.flatnonzero(classification.labels == CANDIDATE)
    if style == "fixed-levels-max-select":
        # stable: equal deviations keep trajectory/frame order
        return candidates[np.argsort(-table.devi_f[candidates], kind="stable")]
    return np.random.default_rng(seed).permutation(candidates)


def n_to_select(n_candidates: int, max_select: int | None, max_select_ratio: float | None
                ) -> int:
    """How many candidates to pick: all, capped by a number and/or a ratio of candidates."""
    n = n_candidates
    if max_select is not None:
        n = min(n, max_select)
    if max_select_ratio is not None:
        n = min(n, int(max_select_ratio * n_candidates))
    return n


def selection_report(table: DeviationTable, classification: Classification,
                     selected: np.ndarray, traj_names: Sequence[str],
                     filtered: np.ndarray | None = None) -> dict[str, Any]:
    """Counts and ratios of each class, per trajectory and overall."""
    n_traj = len(traj_names)
    counts = np.zeros((n_traj, 3), dtype=np.int64)
    np.add.at(counts, (table.traj, classification.labels.astype(np.int64)), 1)
    n_selected = np.bincount(table.traj[selected], minlength=n_traj) if len(selected) else \
        np.zeros(n_traj, dtype=np.int64)
    n_filtered = (np.bincount(table.traj[filtered], minlength=n_traj)
                  if filtered is not None and len(filtered) else np.zeros(n_traj, dtype=np.int64))

    def entry(c: np.ndarray, sel: int, filt: int) -> dict[str, Any]:
        total = int(c.sum())
        out: dict[str, Any] = {"n_frames": total}
        for name, value in zip(CLASS_NAMES, c):
            out[f"n_{name}"] = int(value)
            out[f"{name}_ratio"] = float(value) / total if total else 0.0
        out["n_selected"] = int(sel)
        out["n_filtered"] = int(filt)
        return out

    return {
        "overall": entry(counts.sum(axis=0), int(n_selected.sum()), int(n_filtered.sum())),
        "level_f_lo": classification.level_f_lo,
        "level_v_lo": classification.level_v_lo,
        "trajectories": {name: entry(counts[i], int(n_selected[i]), int(n_filtered[i]))
                         for i, name in enumerate(traj_names)},
    }
