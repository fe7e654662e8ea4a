"""Error metrics and scores of a model against reference labels: pure numpy, no I/O.

Conventions follow LAMBench (deepmodeling/LAMBench, lambench/metrics/results/README.md):
- energies are compared after a per-element least-squares shift fitted on the test data
  ("energy-bias term adjustments based on test dataset statistics"), so models with other
  reference energies compare fairly;
- each error is normalised by a dummy model's error (energy from the chemical formula alone,
  zero forces and virials), capped at 1: `min(M / M_dummy, 1)`;
- per domain and prediction type the normalised errors are log-averaged, then weighted
  (E, F: 0.5 each; with virials E, F: 0.45 and V: 0.1), then averaged over domains;
- efficiency score: 100 us/atom / measured us/atom; instability: max(0, log10(drift / 5e-4
  eV/atom/ps)), 5 for a failed run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: LAMBench's drift tolerance, eV/atom/ps, and the penalty of a failed MD run
DRIFT_TOLERANCE_EV_PER_ATOM_PS = 5e-4
FAILED_MD_PENALTY = 5.0
#: LAMBench's efficiency reference, us/atom
EFFICIENCY_REFERENCE_US_PER_ATOM = 100.0
#: weights of the prediction types (LAMBench): without / with virial labels
WEIGHTS_NO_VIRIAL = {"energy": 0.5, "force": 0.5}
WEIGHTS_WITH_VIRIAL = {"energy": 0.45, "force": 0.45, "virial": 0.1}


def rmse(errors: np.ndarray) -> float:
    """Root mean square of all entries of `errors`."""
    errors = np.asarray(errors, dtype=float)
    return float(np.sqrt(np.mean(errors**2)))


def mae(errors: np.ndarray) -> float:
    """Mean absolute value of all entries of `errors`."""
    return float(np.mean(np.abs(np.asarray(errors, dtype=float))))


def element_counts(frames_symbols: Sequence[Sequence[str]], elements: Sequence[str]
                   ) -> np.ndarray:
    """(n_frames, n_elements) matrix: how many atoms of each element every frame holds."""
    index = {el: i for i, el in enumerate(elements)}
    counts = np.zeros((len(frames_symbols), len(elements)))
    for row, symbols in enumerate(frames_symbols):
        for symbol in symbols:
            counts[row, index[symbol]] += 1
    return counts


def fit_element_shift(counts: np.ndarray, energy_difference: np.ndarray) -> np.ndarray:
    """Per-element energies s minimising |energy_difference - counts @ s|^2 (least squares).

    `energy_difference` is E_reference - E_model per frame (total energies); the corrected
    model energy is E_model + counts @ s. Where the counts do not fix every element's shift
    (e.g. a constant composition ratio), the minimum-norm solution is taken: the corrected
    energies are the same for every solution.
    """
    counts = np.asarray(counts, dtype=float)
    shift, *_ = np.linalg.lstsq(counts, np.asarray(energy_difference, dtype=float), rcond=None)
    return shift


def energy_errors_per_atom(e_model: np.ndarray, e_ref: np.ndarray, counts: np.ndarray,
                           shift: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(errors of the energy per atom, the per-element shift applied), eV/atom."""
    e_model = np.asarray(e_model, dtype=float)
    e_ref = np.asarray(e_ref, dtype=float)
    n_atoms = counts.sum(axis=1)
    s = fit_element_shift(counts, e_ref - e_model) if shift else np.zeros(counts.shape[1])
    return (e_model + counts @ s - e_ref) / n_atoms, s


def dummy_errors(e_ref: np.ndarray, counts: np.ndarray, forces_ref: np.ndarray | None,
                 virials_ref: np.ndarray | None) -> dict[str, float]:
    """RMSEs of LAMBench's dummy model: energy from the composition (least squares), zero
    forces, zero virials. Units: eV/atom, eV/A, eV/atom."""
    errors, _ = energy_errors_per_atom(np.zeros(len(e_ref)), e_ref, counts)
    out = {"energy": rmse(errors)}
    if forces_ref is not None:
        out["force"] = rmse(forces_ref)
    if virials_ref is not None:
        out["virial"] = rmse(virials_ref)
    return out


#: a dummy error below this (eV/atom or eV/A) means the data set has nothing to predict for
#: that type (e.g. forces of perfect crystals, the energy of a single frame after the shift)
NOTHING_TO_PREDICT = 1e-6


def normalised_error(error: float, dummy_error: float) -> float | None:
    """LAMBench's min(M / M_dummy, 1); None where the dummy error is ~0 (the data set holds
    nothing to predict for this type: it is left out of the averages)."""
    if dummy_error < NOTHING_TO_PREDICT:
        return None
    return float(min(error / dummy_error, 1.0))


def log_average(values: Sequence[float], floor: float = 1e-12) -> float:
    """exp(mean(log(v))): the geometric mean, with zeros floored so that log is finite."""
    values = np.maximum(np.asarray(values, dtype=float), floor)
    return float(np.exp(np.mean(np.log(values))))


def generalizability_error(normalised: Mapping[str, Mapping[str, Sequence[float]]]
                           ) -> tuple[float, dict[str, float]]:
    """LAMBench's M_FF from {domain: {prediction type: [normalised error per data set]}}.

    Returns (M_FF, {domain: M_k}). The weights are WEIGHTS_WITH_VIRIAL when the domain has
    virial errors, else WEIGHTS_NO_VIRIAL. 0 is a perfect model, 1 the dummy model.
    """
    per_domain: dict[str, float] = {}
    for domain, by_type in normalised.items():
        present = {p: v for p, v in by_type.items() if len(v)}
        weights = WEIGHTS_WITH_VIRIAL if "virial" in present else WEIGHTS_NO_VIRIAL
        total = sum(weights[p] for p in present if p in weights)
        if not total:
            continue
        per_domain[domain] = sum(weights[p] * log_average(v) for p, v in present.items()
                                 if p in weights) / total
    if not per_domain:
        return float("nan"), per_domain
    return float(np.mean(list(per_domain.values()))), per_domain


def efficiency_score(us_per_atom: float) -> float:
    """LAMBench's M_E = 100 us/atom / measured us/atom (higher is faster)."""
    return EFFICIENCY_REFERENCE_US_PER_ATOM / us_per_atom


def drift_slope(times_ps: np.ndarray, energies_per_atom: np.ndarray) -> float:
    """Slope of the least-squares line through (time, total energy per atom), eV/atom/ps."""
    slope, _ = np.polyfit(np.asarray(times_ps, dtype=float),
                          np.asarray(energies_per_atom, dtype=float), 1)
    return float(slope)


def instability(drift_eV_per_atom_ps: float | None) -> float:
    """LAMBench's M_IS of one run: max(0, log10(|drift| / tolerance)); 5 when it failed."""
    if drift_eV_per_atom_ps is None or not np.isfinite(drift_eV_per_atom_ps):
        return FAILED_MD_PENALTY
    ratio = abs(drift_eV_per_atom_ps) / DRIFT_TOLERANCE_EV_PER_ATOM_PS
    return float(max(0.0, np.log10(ratio))) if ratio > 0 else 0.0


def delta_meV_per_atom(v0: float, b0_GPa: float, bp: float, v0_ref: float, b0_ref_GPa: float,
                       bp_ref: float) -> float:
    """The Delta gauge (Lejaeghere et al., Science 351, aad3000 (2016)) between two
    Birch-Murnaghan EOS, in meV/atom, with ASE's implementation (volumes in A^3/atom)."""
    from ase.units import GPa
    from ase.utils.deltacodesdft import delta

    return 1000.0 * float(delta(v0, b0_GPa * GPa, bp, v0_ref, b0_ref_GPa * GPa, bp_ref))
