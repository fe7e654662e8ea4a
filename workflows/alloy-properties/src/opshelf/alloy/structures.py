"""Structures of an alloy-properties run: read from files, or generated from a prototype.

Prototypes: fcc, bcc, hcp, diamond (one element) and L1_2 (A3B, Cu3Au type), B2 (AB, CsCl
type). The lattice constant, when not given, comes from the elements' reference volumes
per atom (`ase.data.reference_states`, composition-weighted: Vegard's law on volumes).
Substitutions replace a fraction of the host's atoms at random, or SQS-like: a seeded
Monte Carlo search for the arrangement whose pair correlations on the first neighbour
shells are closest to those of the ideal random alloy.

Pure functions (no dflow): `build_structure` is used when a run is checked and built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from opshelf.core.bounds import LatticeConstantA, Seed, SiteFractions, Supercell
from opshelf.core.config import StrictModel
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.structure_checks import check_structure

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms

Prototype = Literal["fcc", "bcc", "hcp", "diamond", "L1_2", "B2"]
#: how many elements each prototype takes (A3B for L1_2: `elements: [A, B]`)
N_ELEMENTS = {"fcc": 1, "bcc": 1, "hcp": 1, "diamond": 1, "L1_2": 2, "B2": 2}
#: atoms per conventional cell (hcp: the 2-atom hexagonal cell)
ATOMS_PER_CELL = {"fcc": 4, "bcc": 2, "hcp": 2, "diamond": 8, "L1_2": 4, "B2": 2}
IDEAL_C_OVER_A = math.sqrt(8.0 / 3.0)


class Substitution(StrictModel):
    """Replace a fraction of the atoms of one element by others."""

    host: str | None = Field(None, description="element replaced (default: the first element)")
    fractions: SiteFractions = Field(
        description="new element -> fraction of the host's sites, e.g. {Cu: 0.25}")
    method: Literal["random", "sqs"] = Field(
        "sqs", description="'random': a seeded random pick; 'sqs': special-quasirandom-like "
        "(pair correlations of the first shells closest to the random alloy's)")
    n_shells: int = Field(3, ge=1, le=6, description="neighbour shells matched by 'sqs'")
    n_trials: int = Field(3000, ge=0, le=10**7, description="Monte Carlo swap trials of 'sqs'")
    seed: Seed = Field(0, description="seed of the random pick or of the 'sqs' search")

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("give at least one element and its fraction")
        if any(not 0 < f < 1 for f in value.values()) or sum(value.values()) >= 1:
            raise ValueError("each fraction is in (0, 1) and they sum to less than 1")
        return value


class GenerateStructure(StrictModel):
    """A crystal built from a prototype (conventional cell), optionally repeated and
    substituted."""

    element: str | None = Field(None, description="one element (fcc, bcc, hcp, diamond)")
    elements: list[str] | None = Field(
        None, description="[A, B] for L1_2 (A3B) and B2 (AB); or [A] like `element`")
    prototype: Prototype = Field("fcc", description="crystal prototype; L1_2 and B2 take two "
                                 "elements")
    lattice_constant_A: LatticeConstantA | None = Field(
        None, description="a; from reference volumes per atom when unset")
    c_over_a: float | None = Field(None, gt=0.5, le=10, description="hcp only; ideal sqrt(8/3) when unset")
    supercell: Supercell = Field((1, 1, 1), description="repetitions of the "
                                            "conventional cell along a, b, c")
    substitution: Substitution | None = Field(
        None, description="replace a fraction of one element's sites (solid solutions)")

    @model_validator(mode="after")
    def _elements(self) -> GenerateStructure:
        if (self.element is None) == (self.elements is None):
            raise ValueError("give exactly one of 'element' and 'elements'")
        need = N_ELEMENTS[self.prototype]
        if len(self.symbols()) != need:
            raise ValueError(f"prototype {self.prototype} takes {need} element(s), "
                             f"got {self.symbols()}")
        if min(self.supercell) < 1:
            raise ValueError("supercell repeats must be >= 1")
        return self

    def symbols(self) -> list[str]:
        return [self.element] if self.element is not None else list(self.elements or [])


def reference_volume_per_atom(element: str) -> float:
    """Volume per atom (A^3) of an element's reference crystal (ase.data.reference_states)."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    number = atomic_numbers.get(element)
    if number is None:
        raise ConfigError(f"unknown chemical element {element!r}")
    state = reference_states[number]
    if state is None or state.get("symmetry") not in ("fcc", "bcc", "hcp", "diamond", "sc"):
        raise ConfigError(f"no reference crystal for {element!r} in ase.data.reference_states; "
                          "give lattice_constant_A")
    atoms = bulk(element)
    return atoms.get_volume() / len(atoms)


def guess_lattice_constant(prototype: str, composition: dict[str, float],
                           c_over_a: float = IDEAL_C_OVER_A) -> float:
    """a from the composition-weighted reference volume per atom (Vegard's law on volumes)."""
    volume = sum(x * reference_volume_per_atom(e) for e, x in composition.items())
    cell_volume = volume * ATOMS_PER_CELL[prototype]
    if prototype == "hcp":  # V = sqrt(3)/2 a^2 c
        return (cell_volume / (math.sqrt(3) / 2 * c_over_a)) ** (1 / 3)
    return cell_volume ** (1 / 3)


def prototype_cell(spec: GenerateStructure) -> Atoms:
    """The conventional cell of the prototype, before repeats and substitutions."""
    from ase import Atoms
    from ase.build import bulk

    symbols = spec.symbols()
    c_over_a = spec.c_over_a or IDEAL_C_OVER_A
    counts = {"L1_2": (3, 1), "B2": (1, 1)}.get(spec.prototype, (1,))
    total = sum(counts)
    composition = {e: n / total for e, n in zip(symbols, counts)}
    a = spec.lattice_constant_A or guess_lattice_constant(spec.prototype, composition, c_over_a)
    if spec.prototype == "L1_2":  # A on the face centres, B on the corners (Cu3Au type)
        a_, b_ = symbols
        return Atoms(f"{b_}{a_}3", cell=[a, a, a], pbc=True,
                     scaled_positions=[(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)])
    if spec.prototype == "B2":
        return Atoms("".join(symbols), cell=[a, a, a], pbc=True,
                     scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)])
    try:
        if spec.prototype == "hcp":
            return bulk(symbols[0], "hcp", a=a, c=a * c_over_a)
        return bulk(symbols[0], spec.prototype, a=a, cubic=True)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"cannot build {spec.prototype} {symbols[0]}: {exc}") from None


def substitution_counts(n_host: int, fractions: dict[str, float]) -> dict[str, int]:
    """Whole numbers of atoms per new element; ConfigError when a fraction rounds to 0."""
    counts = {e: int(round(f * n_host)) for e, f in fractions.items()}
    for element, count in counts.items():
        if count == 0:
            raise ConfigError(f"substitution: {fractions[element]} of {n_host} host atoms rounds "
                              f"to no {element} atom; use a larger supercell")
    return counts


def neighbour_shells(atoms: Atoms, n_shells: int, tol_A: float = 0.05
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs (i, j) of each of the first `n_shells` neighbour shells (periodic images
    included, each pair counted from both ends)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff=_shell_cutoff(atoms, n_shells, tol_A))
    distances = np.sort(np.unique(np.round(d / tol_A) * tol_A))
    shells = []
    for radius in distances[:n_shells]:
        mask = np.abs(d - radius) <= tol_A
        shells.append((i[mask], j[mask]))
    return shells


def _shell_cutoff(atoms: Atoms, n_shells: int, tol_A: float) -> float:
    volume_per_atom = atoms.get_volume() / len(atoms)
    # the n-th shell of a close-packed crystal lies within ~ (n+1) nearest-neighbour radii
    return (volume_per_atom ** (1 / 3)) * (1.0 + 0.6 * n_shells) + tol_A


def correlation_error(spins: np.ndarray, shells: Sequence[tuple[np.ndarray, np.ndarray]],
                      target: float) -> float:
    """Sum over shells of (<s_i s_j> - target)^2: 0 for a perfectly random binary alloy."""
    return float(sum((np.mean(spins[i] * spins[j]) - target) ** 2 for i, j in shells))


def substitute(atoms: Atoms, sub: Substitution) -> Atoms:
    """`atoms` with a fraction of the host's sites given to other elements (seeded)."""
    atoms = atoms.copy()
    symbols = atoms.get_chemical_symbols()
    host = sub.host or symbols[0]
    host_sites = np.array([k for k, s in enumerate(symbols) if s == host])
    if host_sites.size == 0:
        raise ConfigError(f"substitution: host {host!r} is not in {atoms.get_chemical_formula()}")
    counts = substitution_counts(host_sites.size, sub.fractions)
    rng = np.random.default_rng(sub.seed)
    order = rng.permutation(host_sites)
    labels = np.array(symbols, dtype=object)
    start = 0
    for element, count in counts.items():
        labels[order[start:start + count]] = element
        start += count
    if sub.method == "sqs" and len(counts) == 1 and sub.n_trials:
        labels = _sqs_search(atoms, labels, host_sites, host, next(iter(counts)), sub, rng)
    atoms.set_chemical_symbols(list(labels))
    return atoms


def _sqs_search(atoms: Atoms, labels: np.ndarray, sites: np.ndarray, host: str, guest: str,
                sub: Substitution, rng: np.random.Generator) -> np.ndarray:
    """Swap host/guest pairs on the host sublattice, keeping swaps that bring the pair
    correlations closer to the random alloy's (a zero-temperature Monte Carlo)."""
    sublattice = atoms[sites]
    shells = neighbour_shells(sublattice, sub.n_shells)
    spins = np.where(labels[sites] == guest, -1.0, 1.0)
    x = float(np.mean(spins == -1.0))
    target = (1 - 2 * x) ** 2  # <s_i s_j> of a random alloy with spins +-1
    error = correlation_error(spins, shells, target)
    for _ in range(sub.n_trials):
        a = rng.choice(np.flatnonzero(spins > 0))
        b = rng.choice(np.flatnonzero(spins < 0))
        spins[a], spins[b] = spins[b], spins[a]
        trial = correlation_error(spins, shells, target)
        if trial <= error:
            error = trial
        else:
            spins[a], spins[b] = spins[b], spins[a]
        if error < 1e-12:
            break
    labels = labels.copy()
    labels[sites] = np.where(spins < 0, guest, host)
    return labels


def build_structure(spec: GenerateStructure) -> Atoms:
    atoms = prototype_cell(spec) * spec.supercell
    if spec.substitution is not None:
        atoms = substitute(atoms, spec.substitution)
    return atoms


def read_structure_file(path: Path, fmt: str = "auto") -> Atoms:
    """The last frame of a structure file: any format dpdata reads (`fmt`, e.g. 'vasp/poscar',
    'deepmd/npy') or, with 'auto', any file ASE reads."""
    if not path.exists():
        raise MissingInputError(f"structure file not found: {path}")
    if fmt == "auto" and not path.is_dir():
        import ase.io

        try:
            atoms = ase.io.read(path, index=-1)
        except Exception as exc:  # ase raises many types for unreadable files
            raise ConfigError(f"cannot read a structure from {path}: {exc}") from None
    else:
        import dpdata

        try:
            system = dpdata.System(str(path), fmt="deepmd/npy" if fmt == "auto" else fmt)
        except Exception as exc:  # dpdata raises many types for unreadable files
            raise ConfigError(f"cannot read {path} as {fmt!r} with dpdata: {exc}") from None
        atoms = system.sub_system([system.get_nframes() - 1]).to("ase/structure")[0]
    if not atoms.pbc.all():
        raise ConfigError(f"{path}: properties need a periodic crystal (pbc on all axes)")
    check_structure(atoms, str(path))
    return atoms
