"""Sanity checks of a structure a user gives, before any engine sees it.

A cell of zero volume or two atoms on top of each other makes spglib, pymatgen or the engine
fail deep inside a step (or, worse, return numbers); `check_structure` says what is wrong, with
the file it came from, at the door.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from opshelf.core.errors import ConfigError

if TYPE_CHECKING:
    from ase import Atoms

#: the smallest distance between two atoms a structure may have: Å (H2's bond is 0.74 Å)
MIN_DISTANCE_A = 0.5
#: the smallest volume per atom: Å^3 (the densest solids hold about 5 Å^3 per atom)
MIN_VOLUME_PER_ATOM_A3 = 1.0


def check_structure(atoms: Atoms, where: str) -> None:
    """ConfigError naming `where` when the periodic cell has (almost) no volume or two atoms
    are closer than MIN_DISTANCE_A (periodic images included)."""
    from ase.neighborlist import neighbor_list

    if len(atoms) == 0:
        raise ConfigError(f"{where}: the structure has no atoms")
    volume = abs(float(np.linalg.det(atoms.cell[:])))
    per_atom = volume / len(atoms)
    if not np.isfinite(per_atom) or per_atom < MIN_VOLUME_PER_ATOM_A3:
        raise ConfigError(f"{where}: cell volume {volume:.3g} Å^3 for {len(atoms)} atom(s) "
                          f"({per_atom:.3g} Å^3/atom; accepted: >= {MIN_VOLUME_PER_ATOM_A3} "
                          "Å^3/atom): a zero or collapsed cell vector?")
    first, second, distance = neighbor_list("ijd", atoms, MIN_DISTANCE_A)
    if len(distance):
        k = int(np.argmin(distance))
        raise ConfigError(f"{where}: atoms {first[k]} and {second[k]} are {distance[k]:.3f} Å "
                          f"apart (accepted: >= {MIN_DISTANCE_A} Å): overlapping atoms")
