"""Metric code against values computed by hand (each number's derivation is in a comment)."""

from __future__ import annotations

import numpy as np
import pytest

from opshelf.lameval import metrics


def test_rmse_and_mae_by_hand() -> None:
    errors = np.array([3.0, -4.0, 0.0, 1.0])
    # RMSE = sqrt((9 + 16 + 0 + 1) / 4) = sqrt(6.5); MAE = (3 + 4 + 0 + 1) / 4 = 2
    assert metrics.rmse(errors) == pytest.approx(np.sqrt(6.5), rel=1e-12)
    assert metrics.mae(errors) == pytest.approx(2.0, rel=1e-12)


def test_element_shift_recovers_per_element_reference_energies() -> None:
    # Frames: AB, A2B, AB3 (counts of A, B). Reference = model + 1.5 eV per A - 0.25 eV per B
    counts = metrics.element_counts([["A", "B"], ["A", "A", "B"], ["A", "B", "B", "B"]],
                                    ["A", "B"])
    np.testing.assert_array_equal(counts, [[1, 1], [2, 1], [1, 3]])
    e_model = np.array([-10.0, -14.0, -20.0])
    e_ref = e_model + counts @ np.array([1.5, -0.25])
    errors, shift = metrics.energy_errors_per_atom(e_model, e_ref, counts)
    np.testing.assert_allclose(shift, [1.5, -0.25], atol=1e-12)
    np.testing.assert_allclose(errors, 0.0, atol=1e-12)


def test_element_shift_single_element_is_the_mean_offset_per_atom() -> None:
    # One element, frames of 2 and 4 atoms; dE = E_ref - E_model = 1.0 and 3.0 eV.
    # Least squares for s in [2, 4] s = [1, 3]: s = (2*1 + 4*3) / (4 + 16) = 0.7 eV/atom,
    # residual errors per atom: (2*0.7 - 1)/2 = 0.2, (4*0.7 - 3)/4 = -0.05
    counts = np.array([[2.0], [4.0]])
    errors, shift = metrics.energy_errors_per_atom(np.zeros(2), np.array([1.0, 3.0]), counts)
    assert shift[0] == pytest.approx(0.7, rel=1e-12)
    np.testing.assert_allclose(errors, [0.2, -0.05], atol=1e-12)


def test_dummy_model_and_normalisation() -> None:
    # Dummy: energies from the composition only (same fit as above: errors 0.2, -0.05 eV/atom,
    # RMSE sqrt((0.04 + 0.0025)/2)), forces 0 (RMSE = RMS of the reference forces = 2).
    counts = np.array([[2.0], [4.0]])
    forces = np.array([2.0, -2.0, 2.0, -2.0])
    dummy = metrics.dummy_errors(np.array([1.0, 3.0]), counts, forces, None)
    assert dummy["energy"] == pytest.approx(np.sqrt(0.02125), rel=1e-12)
    assert dummy["force"] == pytest.approx(2.0, rel=1e-12)
    assert metrics.normalised_error(0.5, 2.0) == pytest.approx(0.25)
    assert metrics.normalised_error(3.0, 2.0) == 1.0  # worse than the dummy: capped at 1
    assert metrics.normalised_error(0.1, 0.0) is None  # nothing to predict: left out


def test_generalizability_error_weights_and_log_average() -> None:
    # Domain A: energy errors 0.1 and 0.4 -> log-average sqrt(0.04) = 0.2; force 0.5;
    # no virial: weights 0.5/0.5 -> M_A = 0.35.
    # Domain B: energy 0.2, force 0.4, virial 1.0: 0.45*0.2 + 0.45*0.4 + 0.1*1.0 = 0.37.
    # M_FF = (0.35 + 0.37) / 2 = 0.36
    m_ff, per_domain = metrics.generalizability_error({
        "A": {"energy": [0.1, 0.4], "force": [0.5]},
        "B": {"energy": [0.2], "force": [0.4], "virial": [1.0]},
    })
    assert per_domain["A"] == pytest.approx(0.35, rel=1e-12)
    assert per_domain["B"] == pytest.approx(0.37, rel=1e-12)
    assert m_ff == pytest.approx(0.36, rel=1e-12)


def test_instability_and_efficiency_scores() -> None:
    # LAMBench: max(0, log10(|drift| / 5e-4)); 5 for a failed run; M_E = 100 / (us/atom)
    assert metrics.instability(5e-3) == pytest.approx(1.0)
    assert metrics.instability(-5e-2) == pytest.approx(2.0)
    assert metrics.instability(1e-4) == 0.0
    assert metrics.instability(None) == 5.0
    assert metrics.instability(float("nan")) == 5.0
    assert metrics.efficiency_score(50.0) == pytest.approx(2.0)


def test_drift_slope_of_a_line() -> None:
    times = np.linspace(0, 0.4, 9)
    # E = -3 + 0.002 t (eV/atom, t in ps) -> slope 2e-3 eV/atom/ps
    assert metrics.drift_slope(times, -3 + 0.002 * times) == pytest.approx(2e-3, rel=1e-9)


def test_delta_against_direct_integration() -> None:
    """Delta = sqrt(mean over V in [0.94 V0, 1.06 V0] of (E1 - E2)^2), with V0 the mean of the
    two volumes (Lejaeghere et al. 2016); integrated here on a fine grid with numpy."""
    from ase.eos import birchmurnaghan
    from ase.units import GPa

    a = (16.5, 76.0, 4.6)  # V0 A^3/atom, B0 GPa, B0' (an Al-like EOS)
    b = (16.2, 80.0, 4.5)
    v_mid = (a[0] + b[0]) / 2
    grid = np.linspace(0.94 * v_mid, 1.06 * v_mid, 20001)
    e_a = birchmurnaghan(grid, 0.0, a[1] * GPa, a[2], a[0])
    e_b = birchmurnaghan(grid, 0.0, b[1] * GPa, b[2], b[0])
    diff = (e_a - e_a.mean()) - (e_b - e_b.mean())  # each curve's E0 aligned on average
    expected = 1000 * np.sqrt(np.trapezoid(diff**2, grid) / (grid[-1] - grid[0]))
    got = metrics.delta_meV_per_atom(*a, *b)
    # 0.5 %: ASE integrates the polynomial form analytically, the test numerically
    assert got == pytest.approx(expected, rel=5e-3)
    assert metrics.delta_meV_per_atom(*a, *a) == pytest.approx(0.0, abs=1e-9)
