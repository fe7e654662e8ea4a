"""Score an ensemble of frozen models on labelled data, in one process: per-model errors,
the errors of the ensemble mean, and the ensemble's own spread on the same frames.

`dp test` would start the framework once per model (seconds each); here every model is
loaded once through dpdata's DeePMD driver (`System.predict`) and all systems are predicted
in this process. The spread (model deviation, as DP-GEN defines it: per atom the RMS over
models of the force's distance from the ensemble mean, max over atoms) sits beside the true
error of the mean, so a report can show whether the deviation the loop trusts tracks the
error it stands for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from opshelf.core.errors import MissingInputError
from opshelf.train.data import count_frames, find_systems


class Errors(BaseModel):
    """RMSE of one prediction against the labels (virial: None when the data has none)."""

    energy_rmse_eV_per_atom: float
    force_rmse_eV_per_A: float
    virial_rmse_eV_per_atom: float | None = None


class EnsembleScore(BaseModel):
    """An ensemble on one labelled data set."""

    n_frames: int
    n_systems: int
    models: list[Errors]
    #: the mean over models of each model's RMSE (what one model of the ensemble scores)
    mean_of_models: Errors
    #: the RMSE of the ensemble-mean prediction
    ensemble_mean: Errors
    #: frames' max force deviation (DP-GEN's max_devi_f): median and 90th percentile, eV/A
    devi_f_median_eV_per_A: float | None = None
    devi_f_p90_eV_per_A: float | None = None
    #: frames' max error of the ensemble-mean force, the quantity devi_f estimates
    max_force_error_median_eV_per_A: float


def _rmse(diff: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(diff))))


class _Labels(BaseModel, arbitrary_types_allowed=True):
    """Energies (frame), forces (frame*atom, 3) and virials (frame, 3, 3) of many systems,
    concatenated (systems of different sizes: forces flattened over atoms)."""

    energy: np.ndarray
    forces: np.ndarray
    virial: np.ndarray | None


def _concat(systems: Sequence[object], with_virial: bool) -> _Labels:
    return _Labels(energy=np.concatenate([s["energies"] for s in systems]),  # type: ignore[index]
                   forces=np.concatenate([s["forces"].reshape(-1, 3) for s in systems]),  # type: ignore[index]
                   virial=np.concatenate([s["virials"] for s in systems])  # type: ignore[index]
                   if with_virial else None)


def _errors(pred: _Labels, ref: _Labels, natoms: np.ndarray) -> Errors:
    virial_rmse = None
    if pred.virial is not None and ref.virial is not None:
        virial_rmse = _rmse((pred.virial - ref.virial) / natoms[:, None, None])
    return Errors(energy_rmse_eV_per_atom=_rmse((pred.energy - ref.energy) / natoms),
                  force_rmse_eV_per_A=_rmse(pred.forces - ref.forces),
                  virial_rmse_eV_per_atom=virial_rmse)


def _mean_errors(errors: Sequence[Errors]) -> Errors:
    virials = [e.virial_rmse_eV_per_atom for e in errors]
    return Errors(
        energy_rmse_eV_per_atom=float(np.mean([e.energy_rmse_eV_per_atom for e in errors])),
        force_rmse_eV_per_A=float(np.mean([e.force_rmse_eV_per_A for e in errors])),
        virial_rmse_eV_per_atom=None if None in virials else float(np.mean(virials)))  # type: ignore[arg-type]


def score_ensemble(models: Sequence[Path], data: Sequence[Path]) -> EnsembleScore:
    """Errors of each model, of the ensemble mean, and the ensemble's spread, on every
    deepmd/npy system under `data` (virials scored where the data has them)."""
    import dpdata

    if not models:
        raise MissingInputError("no models to score")
    systems = find_systems(data)
    if not systems or count_frames(systems) == 0:
        raise MissingInputError(f"no labelled frames under {[str(p) for p in data]}")
    labelled = [dpdata.LabeledSystem(str(s), fmt="deepmd/npy") for s in systems]
    with_virial = all("virials" in s.data for s in labelled)
    natoms = np.concatenate([np.full(len(s), s.get_natoms(), float) for s in labelled])
    atom_frame = np.concatenate([np.repeat(np.arange(len(s)), s.get_natoms())
                                 + sum(len(t) for t in labelled[:k])
                                 for k, s in enumerate(labelled)])
    ref = _concat(labelled, with_virial)
    # one driver per model: dpdata's predict(path) loads the graph again for every system
    drivers = [dpdata.driver.Driver.get_driver("dp")(str(m)) for m in models]
    preds = [_concat([s.predict(driver=d) for s in labelled], with_virial) for d in drivers]
    model_errors = [_errors(p, ref, natoms) for p in preds]
    mean = _Labels(energy=np.mean([p.energy for p in preds], axis=0),
                   forces=np.mean([p.forces for p in preds], axis=0),
                   virial=np.mean([p.virial for p in preds], axis=0) if with_virial else None)
    # per atom: RMS over models of the distance to the mean force; per frame: max over atoms
    spread = np.sqrt(np.mean([np.sum((p.forces - mean.forces) ** 2, axis=1) for p in preds],
                             axis=0))
    error = np.linalg.norm(mean.forces - ref.forces, axis=1)
    devi_f = np.zeros(natoms.size)
    max_err = np.zeros(natoms.size)
    np.maximum.at(devi_f, atom_frame, spread)
    np.maximum.at(max_err, atom_frame, error)
    several = len(models) > 1
    return EnsembleScore(
        n_frames=int(natoms.size), n_systems=len(labelled), models=model_errors,
        mean_of_models=_mean_errors(model_errors),
        ensemble_mean=_errors(mean, ref, natoms),
        devi_f_median_eV_per_A=float(np.median(devi_f)) if several else None,
        devi_f_p90_eV_per_A=float(np.percentile(devi_f, 90)) if several else None,
        max_force_error_median_eV_per_A=float(np.median(max_err)))
