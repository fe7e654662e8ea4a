"""vacancy and interstitial formation energies in a supercell (ions relaxed, fixed cell).

    E_f(vacancy)      = E(N-1 atoms) - (N-1)/N E(N atoms, perfect)
    E_f(interstitial) = E(N+1 atoms) - (N+1)/N E(N atoms, perfect)

The perfect supercell's energy per atom is the chemical potential: exact for an element,
a convention for a compound (say so when you report one).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from opshelf.core.bounds import ForceThresholdEvA, Supercell
from opshelf.core.config import StrictModel
from opshelf.core.engine import RelaxOptions, Task, TaskKind
from opshelf.core.errors import ConfigError
from opshelf.props.base import (
    Made,
    Outcome,
    Property,
    PropertyContext,
    PropertyTask,
    as_pymatgen,
    conventional_cell,
    lattice_kind,
    pyplot,
    require,
)

if TYPE_CHECKING:
    from ase import Atoms

BULK_TASK = "bulk"

#: Interstitial sites in the conventional cell, fractional coordinates (before the
#: supercell). A dumbbell replaces the atom at `replaces` by two atoms at +-`offset`
#: (fractional, of the conventional cell) about its site.
SITES: dict[str, dict[str, dict[str, Any]]] = {
    "fcc": {
        "octahedral": {"at": (0.5, 0.5, 0.5)},
        "tetrahedral": {"at": (0.25, 0.25, 0.25)},
        "dumbbell_100": {"replaces": (0.0, 0.0, 0.0), "offset": (0.2, 0.0, 0.0)},
    },
    "bcc": {
        "octahedral": {"at": (0.5, 0.5, 0.0)},
        "tetrahedral": {"at": (0.5, 0.25, 0.0)},
        "dumbbell_110": {"replaces": (0.0, 0.0, 0.0), "offset": (0.15, 0.15, 0.0)},
        "dumbbell_111": {"replaces": (0.0, 0.0, 0.0), "offset": (0.12, 0.12, 0.12)},
    },
    # pymatgen's conventional hcp cell: atoms at (1/3, 2/3, 1/4) and (2/3, 1/3, 3/4)
    "hcp": {
        "octahedral": {"at": (0.0, 0.0, 0.0)},
        "tetrahedral": {"at": (1 / 3, 2 / 3, 5 / 8)},
        "dumbbell_c": {"replaces": (1 / 3, 2 / 3, 0.25), "offset": (0.0, 0.0, 0.18)},
    },
}


class VacancyParams(StrictModel):
    """One vacancy per symmetry-inequivalent site of the given cell."""

    type: Literal["vacancy"] = Field("vacancy", description="the property type")
    supercell: Supercell = Field((3, 3, 3), description="repeats of the given cell")
    relax_ions: bool = Field(True, description="relax the ions around the defect (fixed cell)")
    fmax_eV_per_A: ForceThresholdEvA = Field(5e-3, description="relaxation: force convergence")


class InterstitialParams(StrictModel):
    """Self-interstitials at the standard sites of an fcc, bcc or hcp element."""

    type: Literal["interstitial"] = Field("interstitial", description="the property type")
    supercell: Supercell = Field(
        (3, 3, 3), description="repeats of the conventional cell (cubic; hexagonal for hcp)")
    sites: list[str] | None = Field(None, description="site names; all of the lattice when unset")
    relax_ions: bool = Field(True, description="relax the ions around the defect (fixed cell)")
    fmax_eV_per_A: ForceThresholdEvA = Field(5e-3, description="relaxation: force convergence")


def _relax_task(relax_ions: bool, fmax: float) -> Task:
    if relax_ions:
        return Task(kind=TaskKind.RELAX, relax=RelaxOptions(fmax_eV_per_A=fmax, max_steps=1000))
    return Task(kind=TaskKind.SINGLE_POINT)


def _check_supercell(supercell: Supercell) -> None:
    if min(supercell) < 1:
        raise ConfigError(f"supercell {supercell}: every repeat must be >= 1")


def inequivalent_sites(atoms: Atoms) -> list[int]:
    """The first index of each set of symmetry-equivalent atoms."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    symmetrized = SpacegroupAnalyzer(as_pymatgen(atoms)).get_symmetrized_structure()
    return sorted(indices[0] for indices in symmetrized.equivalent_indices)


def formation_energy(e_defect: float, n_defect: int, e_bulk: float, n_bulk: int) -> float:
    return e_defect - n_defect / n_bulk * e_bulk


class VacancySite(BaseModel):
    """One inequivalent site emptied by a vacancy task."""

    model_config = ConfigDict(extra="forbid")

    task: str
    site_index: int
    element: str


class VacancyContext(PropertyContext):
    type: Literal["vacancy"] = "vacancy"
    params: VacancyParams
    sites: list[VacancySite]


class InterstitialContext(PropertyContext):
    type: Literal["interstitial"] = "interstitial"
    params: InterstitialParams
    #: site names, one task `interstitial-<site>` each
    sites: list[str]
    #: 'fcc', 'bcc' or 'hcp'
    lattice: str


class Vacancy(Property):
    type = "vacancy"
    Params = VacancyParams
    Context = VacancyContext
    headline = ("formation_energy_eV",)

    def make(self, atoms: Atoms, params: VacancyParams) -> Made:
        _check_supercell(params.supercell)
        bulk = atoms * params.supercell
        tasks = [PropertyTask(BULK_TASK, bulk, Task(kind=TaskKind.SINGLE_POINT))]
        sites = []
        for index in inequivalent_sites(atoms):
            defect = bulk.copy()
            symbol = defect[index].symbol
            del defect[index]
            name = f"vacancy-{index:03d}-{symbol}"
            tasks.append(PropertyTask(name, defect,
                                      _relax_task(params.relax_ions, params.fmax_eV_per_A)))
            sites.append(VacancySite(task=name, site_index=index, element=symbol))
        return Made(tasks, VacancyContext(params=params, sites=sites))

    def post(self, context: VacancyContext, outcomes: Mapping[str, Outcome],
             params: VacancyParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        done = require(outcomes, context.task_names, "vacancy")
        bulk = done[0]
        n_bulk = len(bulk.atoms)
        sites = []
        for site, outcome in zip(context.sites, done[1:]):
            sites.append({**site.model_dump(), "formation_energy_eV": formation_energy(
                outcome.energy_eV, len(outcome.atoms), bulk.energy_eV, n_bulk)})
        plot_bars([s["task"] for s in sites], [s["formation_energy_eV"] for s in sites],
                  "vacancy formation energy (eV)", out_dir / "vacancy.png")
        return {"formation_energy_eV": min(s["formation_energy_eV"] for s in sites),
                "n_atoms_bulk": n_bulk, "bulk_energy_eV_per_atom": bulk.energy_eV / n_bulk,
                "sites": sites}


#: Atoms of the conventional cell with the origin the SITES assume.
CANONICAL: dict[str, list[tuple[float, float, float]]] = {
    "fcc": [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)],
    "bcc": [(0, 0, 0), (0.5, 0.5, 0.5)],
    "hcp": [(1 / 3, 2 / 3, 0.25), (2 / 3, 1 / 3, 0.75)],
}


def canonical_origin(conventional: Atoms, kind: str) -> Atoms:
    """`conventional` translated so that its atoms sit where SITES expects them (spglib may
    put the origin on any equivalent point)."""
    canonical = np.array(CANONICAL[kind])
    scaled = conventional.get_scaled_positions()
    for position in scaled:
        moved = (scaled - position + canonical[0]) % 1.0
        delta = (moved[:, None, :] - canonical[None, :, :] + 0.5) % 1.0 - 0.5
        if np.all(np.abs(delta).max(axis=2).min(axis=1) < 1e-3):
            out = conventional.copy()
            out.set_scaled_positions(moved)
            return out
    raise ConfigError(f"interstitial: the {kind} conventional cell does not have the expected "
                      "atom positions")


def interstitial_structures(atoms: Atoms, params: InterstitialParams
                            ) -> tuple[Atoms, dict[str, Atoms]]:
    """The perfect supercell (of the conventional cell) and one structure per site."""
    kind = lattice_kind(atoms)
    if kind not in SITES:
        raise ConfigError("interstitial: standard sites are defined for elemental fcc, bcc and "
                          f"hcp crystals; this structure ({atoms.get_chemical_formula()}) is "
                          "none of them")
    available = SITES[kind]
    names = params.sites or list(available)
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise ConfigError(f"interstitial.sites: unknown {kind} sites {unknown}; "
                          f"known: {sorted(available)}")
    conventional = canonical_origin(conventional_cell(atoms), kind)
    element = conventional[0].symbol
    bulk = conventional * params.supercell
    repeats = np.array(params.supercell, dtype=float)
    structures = {}
    for name in names:
        site = available[name]
        defect = bulk.copy()
        if "at" in site:
            defect.append(element)
            defect.positions[-1] = (np.array(site["at"]) / repeats) @ bulk.cell[:]
        else:
            scaled = defect.get_scaled_positions() * repeats
            target = np.array(site["replaces"])
            distance = np.linalg.norm((scaled - target + 0.5) % 1.0 - 0.5, axis=1)
            index = int(np.argmin(distance))
            if distance[index] > 1e-3:
                raise ConfigError(f"interstitial {name}: no atom at {site['replaces']} of the "
                                  "conventional cell")
            centre = defect.positions[index].copy()
            offset = np.array(site["offset"]) @ conventional.cell[:]
            del defect[index]
            for sign in (1.0, -1.0):
                defect.append(element)
                defect.positions[-1] = centre + sign * offset
        defect.wrap()
        structures[name] = defect
    return bulk, structures


class Interstitial(Property):
    type = "interstitial"
    Params = InterstitialParams
    Context = InterstitialContext
    headline = ("formation_energy_eV", "lowest_energy_site")

    def make(self, atoms: Atoms, params: InterstitialParams) -> Made:
        _check_supercell(params.supercell)
        bulk, structures = interstitial_structures(atoms, params)
        tasks = [PropertyTask(BULK_TASK, bulk, Task(kind=TaskKind.SINGLE_POINT))]
        for name, defect in structures.items():
            tasks.append(PropertyTask(f"interstitial-{name}", defect,
                                      _relax_task(params.relax_ions, params.fmax_eV_per_A)))
        return Made(tasks, InterstitialContext(params=params, sites=list(structures),
                                               lattice=lattice_kind(atoms)))

    def post(self, context: InterstitialContext, outcomes: Mapping[str, Outcome],
             params: InterstitialParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        bulk = require(outcomes, [BULK_TASK], "interstitial")[0]
        n_bulk = len(bulk.atoms)
        energies: dict[str, float | None] = {}
        for site in context.sites:
            outcome = outcomes.get(f"interstitial-{site}")
            energies[site] = None if outcome is None or not outcome.ok else formation_energy(
                outcome.energy_eV, len(outcome.atoms), bulk.energy_eV, n_bulk)
        found = {k: v for k, v in energies.items() if v is not None}
        if not found:
            require(outcomes, [f"interstitial-{s}" for s in context.sites], "interstitial")
        plot_bars(list(found), list(found.values()), "interstitial formation energy (eV)",
                  out_dir / "interstitial.png")
        lowest = min(found, key=found.__getitem__)
        return {"lattice": context.lattice, "formation_energy_eV": found[lowest],
                "lowest_energy_site": lowest, "n_atoms_bulk": n_bulk,
                "formation_energies_eV": energies,
                "note": "each site relaxes freely: a site that is unstable for this engine "
                        "relaxes into another configuration and reports that one's energy"}


def plot_bars(labels: list[str], values: list[float], ylabel: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(labels) + 2), 4))
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(values)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    for x, v in enumerate(values):
        ax.annotate(f"{v:.3f}", (x, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
