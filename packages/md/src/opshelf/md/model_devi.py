"""Model deviation of an ensemble of models: DeePMD-kit's definitions and file format.

For n_models predictions of one frame (deepmd-kit, deepmd/infer/model_devi.py, and LAMMPS'
`pair_style deepmd ... out_file`):

- force: per atom, the norm of the standard deviation (over models, ddof=0) of the force
  vector, sqrt(sum_xyz var(F_i,xyz)); max/min/avg over atoms.
- virial: the virial per atom (virial / n_atoms, eV); the standard deviation over models of
  each of its 9 components; max and min over the components, and avg = norm of the 9
  standard deviations / 3.

`model_devi.out` as LAMMPS writes it: a '#' header, then one row per output step with
step, max_devi_v, min_devi_v, avg_devi_v, max_devi_f, min_devi_f, avg_devi_f.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

COLUMNS = ("step", "max_devi_v", "min_devi_v", "avg_devi_v",
           "max_devi_f", "min_devi_f", "avg_devi_f")
#: Columns of the model-deviation table, by name.
COL = {name: index for index, name in enumerate(COLUMNS)}
HEADER = "#" + "".join(f"{name:>19s}" if i else f"{name:>11s}" for i, name in enumerate(COLUMNS))


def force_deviation(forces: np.ndarray) -> tuple[float, float, float]:
    """(max, min, avg) over atoms of the force deviation; `forces`: n_models x n_atoms x 3."""
    per_atom = np.linalg.norm(np.std(np.asarray(forces, dtype=float), axis=0), axis=-1)
    return float(per_atom.max()), float(per_atom.min()), float(per_atom.mean())


def virial_deviation(virials_per_atom: np.ndarray) -> tuple[float, float, float]:
    """(max, min, avg) of the virial deviation; `virials_per_atom`: n_models x 9 (eV/atom)."""
    per_component = np.std(np.asarray(virials_per_atom, dtype=float).reshape(-1, 9), axis=0)
    return (float(per_component.max()), float(per_component.min()),
            float(np.linalg.norm(per_component) / 3.0))


def deviation_row(step: int, forces: np.ndarray, virials_per_atom: np.ndarray | None
                  ) -> list[float]:
    """One model_devi.out row; virial columns are 0 when the models give no virial (as
    LAMMPS writes for a non-periodic system)."""
    v = virial_deviation(virials_per_atom) if virials_per_atom is not None else (0.0, 0.0, 0.0)
    return [float(step), *v, *force_deviation(forces)]


def write_model_devi(path: Path, rows: Sequence[Sequence[float]]) -> None:
    """Write rows (step + 6 deviations) in LAMMPS' format."""
    with open(path, "w") as fh:
        fh.write(HEADER + "\n")
        for row in rows:
            fh.write(f"{int(row[0]):12d}" + "".join(f"{x:19.6e}" for x in row[1:7]) + "\n")


def read_model_devi(path: Path) -> np.ndarray:
    """The rows of a model_devi.out as an (n, 7) float array.

    A row that is cut short (a run killed while writing) or holds 'nan'/'inf' keeps NaN in
    the missing places, so selection classifies it as failed. Extra columns (deepmd-kit's
    `dp model-devi` adds devi_e) are dropped.
    """
    rows: list[list[float]] = []
    with open(path) as fh:
        for line in fh:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split()[: len(COLUMNS)]
            values = []
            for text in fields:
                try:
                    values.append(float(text))
                except ValueError:
                    values.append(np.nan)
            values += [np.nan] * (len(COLUMNS) - len(values))
            rows.append(values)
    if not rows:
        return np.empty((0, len(COLUMNS)))
    return np.asarray(rows, dtype=float)
