"""Selection on hand-computed cases: each trust-level style, NaN handling, filters, report."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from opshelf.md.filters import ConfFilters, cell_angles_deg, rejection_reason
from opshelf.md.model_devi import read_model_devi, write_model_devi
from opshelf.md.selection import (
    ACCURATE,
    CANDIDATE,
    FAILED,
    DeviationTable,
    TrustLevels,
    candidate_order,
    classify,
    n_to_select,
    selection_report,
)

A, C, F = ACCURATE, CANDIDATE, FAILED


def table(devi_f: list[float], devi_v: list[float] | None = None,
          traj: list[int] | None = None) -> DeviationTable:
    n = len(devi_f)
    v = devi_v if devi_v is not None else [0.0] * n
    rows = np.zeros((n, 7))
    rows[:, 4], rows[:, 1] = devi_f, v
    trajs = traj if traj is not None else [0] * n
    groups = [rows[np.asarray(trajs) == t] for t in sorted(set(trajs))]
    return DeviationTable.from_trajectories(groups)


def test_fixed_levels_classes_and_nan_is_failed() -> None:
    t = table([0.01, 0.05, 0.10, 0.15, 0.30, np.nan, 0.049999])
    levels = TrustLevels(style="fixed-levels", f_lo=0.05, f_hi=0.15)
    # f < 0.05 accurate; 0.05 <= f < 0.15 candidate; f >= 0.15 or NaN failed
    assert classify(t, levels).labels.tolist() == [A, C, C, F, F, F, A]


def test_fixed_levels_with_virial() -> None:
    t = table([0.01, 0.01, 0.10, 0.01, 0.01], devi_v=[0.0, 0.2, 0.0, 0.6, np.nan])
    levels = TrustLevels(f_lo=0.05, f_hi=0.15, v_lo=0.1, v_hi=0.5)
    # row 1: f accurate but v in [v_lo, v_hi) -> candidate; row 3: v >= v_hi -> failed;
    # row 4: virial NaN while virial levels are used -> failed
    assert classify(t, levels).labels.tolist() == [A, C, C, F, F]
    # without virial levels a NaN virial does not matter
    assert classify(t, TrustLevels(f_lo=0.05, f_hi=0.15)).labels.tolist() == [A, A, C, A, A]


def test_max_select_picks_largest_first_and_random_is_seeded() -> None:
    t = table([0.06, 0.12, 0.08, 0.14, 0.07, 0.01])
    levels = TrustLevels(style="fixed-levels-max-select", f_lo=0.05, f_hi=0.15)
    cls = classify(t, levels)
    order = candidate_order(t, cls, levels.style)
    assert order.tolist() == [3, 1, 2, 4, 0]  # 0.14, 0.12, 0.08, 0.07, 0.06
    random_a = candidate_order(t, cls, "fixed-levels", seed=1)
    assert sorted(random_a.tolist()) == [0, 1, 2, 3, 4]
    assert random_a.tolist() == candidate_order(t, cls, "fixed-levels", seed=1).tolist()
    assert n_to_select(5, max_select=2, max_select_ratio=None) == 2
    assert n_to_select(5, max_select=None, max_select_ratio=0.5) == 2  # int(2.5)
    assert n_to_select(5, max_select=None, max_select_ratio=None) == 5


def test_adaptive_lower_dpgen2_semantics() -> None:
    # 10 frames; f_hi 0.5: rows 8 (0.6) and 9 (NaN) fail; of the 8 others, numb_candi_f=3
    # (> int(0.1 * 8) = 0) largest are candidates: 0.45, 0.40, 0.30; lower level 0.30
    f = [0.01, 0.02, 0.03, 0.05, 0.30, 0.40, 0.45, 0.10, 0.60, np.nan]
    t = table(f)
    levels = TrustLevels(style="adaptive-lower", f_hi=0.5, numb_candi_f=3, rate_candi_f=0.1)
    cls = classify(t, levels)
    assert cls.labels.tolist() == [A, A, A, A, C, C, C, A, F, F]
    assert cls.level_f_lo == pytest.approx(0.30)
    # the rate wins when larger: int(0.5 * 8) = 4 candidates, lower level 0.10
    cls = classify(t, TrustLevels(style="adaptive-lower", f_hi=0.5, numb_candi_f=1,
                                  rate_candi_f=0.5))
    assert cls.labels.tolist() == [A, A, A, A, C, C, C, C, F, F]
    assert cls.level_f_lo == pytest.approx(0.10)
    # exactly f_hi is not failed in DPGEN2's adaptive-lower (failed: f > f_hi)
    assert classify(table([0.5]), TrustLevels(style="adaptive-lower", f_hi=0.5,
                                              numb_candi_f=0, rate_candi_f=0.0)
                    ).labels.tolist() == [A]


def test_adaptive_lower_virial_candidates_are_a_union() -> None:
    t = table([0.1, 0.2, 0.3, 0.05], devi_v=[0.9, 0.1, 0.1, 0.1])
    levels = TrustLevels(style="adaptive-lower", f_hi=0.5, v_hi=1.0, numb_candi_f=1,
                         rate_candi_f=0.0, numb_candi_v=1, rate_candi_v=0.0)
    cls = classify(t, levels)
    # top force (row 2) and top virial (row 0) are candidates
    assert cls.labels.tolist() == [C, A, C, A]
    assert cls.level_v_lo == pytest.approx(0.9)


def test_trust_level_validation() -> None:
    with pytest.raises(ValidationError, match="needs f_lo"):
        TrustLevels(style="fixed-levels", f_hi=0.2)
    with pytest.raises(ValidationError, match="f_lo"):
        TrustLevels(f_lo=0.3, f_hi=0.2)
    with pytest.raises(ValidationError, match="v_lo and v_hi"):
        TrustLevels(f_lo=0.1, f_hi=0.2, v_hi=0.3)


def test_report_counts_per_trajectory() -> None:
    t = table([0.01, 0.1, 0.2, 0.1, 0.1], traj=[0, 0, 0, 1, 1])
    cls = classify(t, TrustLevels(f_lo=0.05, f_hi=0.15))
    report = selection_report(t, cls, np.array([1, 3]), ["a", "b"], np.array([4]))
    assert report["overall"] == {
        "n_frames": 5, "n_accurate": 1, "accurate_ratio": 0.2, "n_candidate": 3,
        "candidate_ratio": 0.6, "n_failed": 1, "failed_ratio": 0.2, "n_selected": 2,
        "n_filtered": 1}
    assert report["trajectories"]["a"]["n_candidate"] == 1
    assert report["trajectories"]["b"]["candidate_ratio"] == 1.0
    assert report["trajectories"]["b"]["n_filtered"] == 1


def test_model_devi_file_round_trip_and_truncated_rows(tmp_path) -> None:
    path = tmp_path / "model_devi.out"
    write_model_devi(path, [[0, 0.1, 0.01, 0.05, 0.2, 0.02, 0.1], [10, 1, 1, 1, 1, 1, 1]])
    with open(path, "a") as fh:
        fh.write("          20   nan 0.1 0.1 0.3 0.1 0.1\n          30   0.1 0.1\n")
    rows = read_model_devi(path)
    assert rows.shape == (4, 7)
    assert rows[0].tolist() == pytest.approx([0, 0.1, 0.01, 0.05, 0.2, 0.02, 0.1])
    assert np.isnan(rows[2, 1]) and np.isnan(rows[3, 4])
    t = DeviationTable.from_trajectories([rows])
    assert classify(t, TrustLevels(f_lo=0.05, f_hi=0.5)).labels.tolist() == [C, F, C, F]


def test_filters_hand_computed() -> None:
    cube = np.eye(3) * 4.0
    two = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert rejection_reason(ConfFilters(min_distance_A=1.5), cube, two) is not None
    assert rejection_reason(ConfFilters(min_distance_A=0.9), cube, two) is None
    # periodic image: atoms at x=0.2 and x=3.9 are 0.3 A apart through the boundary
    wrap = np.array([[0.2, 0.0, 0.0], [3.9, 0.0, 0.0]])
    assert "0.300" in rejection_reason(ConfFilters(min_distance_A=1.0), cube, wrap)
    skewed = np.array([[4.0, 0, 0], [3.5, 2.0, 0], [0, 0, 4.0]])
    gamma = np.degrees(np.arctan2(2.0, 3.5))  # angle between a and b, 29.74 deg
    assert cell_angles_deg(skewed)[2] == pytest.approx(gamma)
    assert rejection_reason(ConfFilters(min_cell_angle_deg=30), skewed, two) is not None
    assert rejection_reason(ConfFilters(min_cell_angle_deg=29), skewed, two) is None
    long = np.diag([4.0, 4.0, 21.0])
    assert "5.250" in rejection_reason(ConfFilters(max_length_ratio=5.0), long, two)
    assert rejection_reason(ConfFilters(max_length_ratio=5.3), long, two) is None
