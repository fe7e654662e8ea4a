"""Absurd label energies, judged against a reference (issue 19).

The force check (`opshelf.core.ops.labelling.absurd_label_reason`) misses a frame whose
forces vanish by symmetry: a crystal squeezed uniformly (a lattice constant in nm read as Å,
a runaway barostat) has zero forces and an energy several eV/atom above anything the model
should learn. Here each frame's energy is compared with what a reference predicts for its
composition: per-element energies fitted (least squares, E_frame = sum_e n_e mu_e) to
trusted frames, e.g. the initial data of a concurrent-learning run. A frame whose energy
per atom differs from that by more than `max_deviation_eV_per_atom` is absurd.

The fit gives an element its energy only when the reference frames' compositions tell it
apart from the others (its unit composition lies in their span: pure frames of it, or
compositions that vary it); an element they do not identify is left out of the reference,
and a label holding an element the reference lacks is not judged (`absurd_energy_reason`
returns None). Give reference frames of every element the labels hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dpdata
import numpy as np
from pydantic import Field

from opshelf.core.bounds import EnergyEvPerAtom, bounded
from opshelf.core.config import StrictModel
from opshelf.core.errors import ConfigError

#: a reference energy per atom of one element: eV/atom (any sign; 10 keV/atom is no energy)
ElementEnergyEv = bounded(float, -1.0e4, 1.0e4, "eV/atom")


class EnergyReference(StrictModel):
    """Per-element reference energies and how far a label's energy per atom may stray."""

    per_atom_eV: dict[str, ElementEnergyEv] = Field(
        min_length=1, description="element -> fitted energy per atom of that element (eV)")
    max_deviation_eV_per_atom: EnergyEvPerAtom = Field(
        5.0, description="a label whose energy per atom differs from the reference's "
        "prediction for its composition by more than this is absurd (EMT Cu squeezed to "
        "a = 2.7 A, 42 % of its volume: +6.0 eV/atom, zero forces)")


def _counts(system: dpdata.System, elements: Sequence[str]) -> np.ndarray:
    """Atoms of each of `elements` in the system's frames (one row per frame)."""
    names = list(system["atom_names"])
    per_type = np.bincount(system["atom_types"], minlength=len(names))
    row = [int(per_type[names.index(e)]) if e in names else 0 for e in elements]
    return np.tile(np.array(row, dtype=float), (system.get_nframes(), 1))


def fit_reference(systems: Iterable[dpdata.LabeledSystem], *,
                  max_deviation_eV_per_atom: float = 5.0) -> EnergyReference:
    """Per-element energies fitted by least squares to every frame of `systems`."""
    systems = [s for s in systems if s.get_nframes()]
    elements = sorted({name for s in systems for name, n in
                       zip(s["atom_names"], np.bincount(s["atom_types"],
                                                        minlength=len(s["atom_names"])))
                       if n})
    if not elements:
        raise ConfigError("energy reference: no labelled frames to fit it to")
    counts = np.vstack([_counts(s, elements) for s in systems])
    energies = np.concatenate([np.asarray(s["energies"], dtype=float) for s in systems])
    mu, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    rank = np.linalg.matrix_rank(counts)
    identified = {e: float(m) for i, (e, m) in enumerate(zip(elements, mu))
                  if np.linalg.matrix_rank(np.vstack([counts, np.eye(len(elements))[i]])) == rank}
    if not identified:
        raise ConfigError(f"energy reference: the frames' compositions do not tell the energy "
                          f"of any of {elements} apart (give frames of the pure elements)")
    return EnergyReference(per_atom_eV=identified,
                           max_deviation_eV_per_atom=max_deviation_eV_per_atom)


def energy_deviations(system: dpdata.LabeledSystem, reference: EnergyReference) -> np.ndarray:
    """Each frame's energy per atom minus the reference's prediction for its composition."""
    present = [name for name, n in zip(system["atom_names"], np.bincount(
        system["atom_types"], minlength=len(system["atom_names"]))) if n]
    missing = sorted(set(present) - set(reference.per_atom_eV))
    if missing:
        raise ConfigError(f"energy reference: no reference energy for {missing} "
                          f"(it has {sorted(reference.per_atom_eV)})")
    elements = sorted(reference.per_atom_eV)
    mu = np.array([reference.per_atom_eV[e] for e in elements])
    predicted = _counts(system, elements) @ mu
    return (np.asarray(system["energies"], dtype=float) - predicted) / system.get_natoms()


def absurd_energy_reason(system: dpdata.LabeledSystem, reference: EnergyReference) -> str | None:
    """Why a task's labels have an absurd energy (the frame furthest from the reference,
    beyond its max_deviation_eV_per_atom), or None when none has or when the labels hold an
    element the reference has no energy for (not judged)."""
    try:
        deviations = energy_deviations(system, reference)
    except ConfigError:  # an element the reference lacks: nothing to judge the energy by
        return None
    if not len(deviations):
        return None
    frame = int(np.argmax(np.abs(deviations)))
    worst = float(deviations[frame])
    limit = reference.max_deviation_eV_per_atom
    if abs(worst) <= limit:
        return None
    return (f"absurd label: frame {frame} has an energy {worst:+.4g} eV/atom from the "
            f"reference for its composition (accepted: within {limit:g} eV/atom): a "
            "squeezed or exploded cell; not used as a label")
