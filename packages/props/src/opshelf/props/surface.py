"""surface: energies of every symmetrically distinct Miller index up to a maximum
(pymatgen's SlabGenerator), in J/m^2:  gamma = (E_slab - N E_bulk/atom) / (2 A)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from opshelf.core.bounds import ForceThresholdEvA, MillerComponent
from opshelf.core.config import StrictModel
from opshelf.core.engine import RelaxOptions, Task, TaskKind
from opshelf.core.errors import ConfigError
from opshelf.props.base import (
    EV_PER_A2_TO_J_PER_M2,
    Made,
    Outcome,
    Property,
    PropertyContext,
    PropertyTask,
    as_ase,
    as_pymatgen,
    pyplot,
    require,
)
from opshelf.props.defects import BULK_TASK

if TYPE_CHECKING:
    from ase import Atoms

MillerIndex = tuple[MillerComponent, MillerComponent, MillerComponent]


class SurfaceParams(StrictModel):
    """Slabs of the conventional cell, symmetric and stoichiometric terminations."""

    type: Literal["surface"] = Field("surface", description="the property type")
    max_miller_index: int = Field(1, ge=1, le=4, description="every distinct Miller index "
                                  "(hkl) with max(|h|, |k|, |l|) up to this")
    miller_indices: list[MillerIndex] | None = Field(
        None, description="these indices only, instead of all up to max_miller_index")
    min_slab_size_A: float = Field(10.0, gt=0, le=200, description="minimum slab thickness")
    min_vacuum_size_A: float = Field(10.0, gt=0, le=200, description="minimum vacuum thickness")
    relax_ions: bool = Field(True, description="relax the slab's ions (fixed cell)")
    fmax_eV_per_A: ForceThresholdEvA = Field(5e-3, description="relaxation: force convergence")


def miller_label(hkl: MillerIndex) -> str:
    return "".join(f"m{-i}" if i < 0 else str(i) for i in hkl)


def miller_indices(conventional: Any, params: SurfaceParams) -> list[MillerIndex]:
    """The indices asked for, or every symmetrically distinct one up to the maximum."""
    from pymatgen.core.surface import get_symmetrically_distinct_miller_indices

    if params.miller_indices:
        return [tuple(int(i) for i in hkl) for hkl in params.miller_indices]
    return [tuple(hkl) for hkl in
            get_symmetrically_distinct_miller_indices(conventional, params.max_miller_index)]


def make_slabs(atoms: Atoms, params: SurfaceParams) -> dict[MillerIndex, Any]:
    """One pymatgen Slab per Miller index: the first termination that is symmetric and
    stoichiometric, with c made perpendicular to the surface."""
    from pymatgen.core.surface import SlabGenerator
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    conventional = SpacegroupAnalyzer(as_pymatgen(atoms)).get_conventional_standard_structure()
    slabs = {}
    for hkl in miller_indices(conventional, params):
        if hkl == (0, 0, 0):
            raise ConfigError("surface.miller_indices: (0, 0, 0) is no plane")
        # center_slab=False: pymatgen centres through neighbour lists (~60 % of this
        # function's time at max index 2); `centred` does the same from the c coordinates
        generator = SlabGenerator(conventional, hkl, params.min_slab_size_A,
                                  params.min_vacuum_size_A, center_slab=False, primitive=True,
                                  max_normal_search=max(abs(i) for i in hkl))
        candidates = generator.get_slabs()
        good = [s for s in candidates if s.is_symmetric()
                and s.composition.reduced_formula == conventional.composition.reduced_formula]
        if not good:
            raise ConfigError(f"surface {hkl}: no symmetric, stoichiometric termination among "
                              f"{len(candidates)} slabs")
        slabs[hkl] = centred(good[0]).get_orthogonal_c_slab()
    return slabs


def centred(slab: Any) -> Any:
    """`slab` translated along c so that its atoms sit in the middle of the cell: the
    largest gap between fractional c coordinates (periodic) is the vacuum."""
    import numpy as np

    c = np.sort(np.mod(slab.frac_coords[:, 2], 1.0))
    gaps = np.diff(np.append(c, c[0] + 1.0))
    top = int(np.argmax(gaps))  # the vacuum lies above c[top]
    bottom = c[(top + 1) % len(c)]
    middle = bottom + (1.0 - gaps[top]) / 2
    out = slab.copy()
    out.translate_sites(list(range(len(out))), [0.0, 0.0, 0.5 - middle], frac_coords=True,
                        to_unit_cell=True)
    return out


class Slab(BaseModel):
    """One slab task: its Miller index, surface area and size."""

    model_config = ConfigDict(extra="forbid")

    task: str
    miller_index: list[int]
    area_A2: float
    n_atoms: int


class SurfaceContext(PropertyContext):
    type: Literal["surface"] = "surface"
    params: SurfaceParams
    #: the slab tasks, in task order after the bulk
    surfaces: list[Slab]


class Surface(Property):
    type = "surface"
    Params = SurfaceParams
    Context = SurfaceContext
    headline = ("surface_energies_J_per_m2",)

    def make(self, atoms: Atoms, params: SurfaceParams) -> Made:
        if params.relax_ions:
            slab_task = Task(kind=TaskKind.RELAX, relax=RelaxOptions(
                fmax_eV_per_A=params.fmax_eV_per_A, max_steps=1000))
        else:
            slab_task = Task(kind=TaskKind.SINGLE_POINT)
        tasks = [PropertyTask(BULK_TASK, atoms.copy(), Task(kind=TaskKind.SINGLE_POINT))]
        surfaces = []
        for hkl, slab in make_slabs(atoms, params).items():
            name = f"surface-{miller_label(hkl)}"
            tasks.append(PropertyTask(name, as_ase(slab), slab_task))
            surfaces.append(Slab(task=name, miller_index=list(hkl),
                                 area_A2=float(slab.surface_area), n_atoms=len(slab)))
        return Made(tasks, SurfaceContext(params=params, surfaces=surfaces))

    def count_tasks(self, atoms: Atoms, params: SurfaceParams) -> int:
        # the bulk and one slab per index, without building the slabs (seconds at index 2)
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        analyzer = SpacegroupAnalyzer(as_pymatgen(atoms))
        return 1 + len(miller_indices(analyzer.get_conventional_standard_structure(), params))

    def post(self, context: SurfaceContext, outcomes: Mapping[str, Outcome],
             params: SurfaceParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        done = require(outcomes, context.task_names, "surface")
        bulk = done[0]
        e_bulk = bulk.energy_eV / len(bulk.atoms)
        rows = []
        for surface, outcome in zip(context.surfaces, done[1:]):
            gamma = (outcome.energy_eV - len(outcome.atoms) * e_bulk) / (2 * surface.area_A2)
            rows.append({**surface.model_dump(), "surface_energy_J_per_m2": gamma * EV_PER_A2_TO_J_PER_M2})
        plot_surfaces(rows, out_dir / "surface.png")
        return {
            "surface_energies_J_per_m2": {miller_label(r["miller_index"]):
                                          r["surface_energy_J_per_m2"] for r in rows},
            "lowest_energy_surface": min(rows, key=lambda r: r["surface_energy_J_per_m2"]
                                         )["miller_index"],
            "bulk_energy_eV_per_atom": e_bulk,
            "surfaces": rows,
        }


def plot_surfaces(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(rows) + 2), 4))
    labels = ["(" + " ".join(str(i) for i in r["miller_index"]) + ")" for r in rows]
    values = [r["surface_energy_J_per_m2"] for r in rows]
    ax.bar(range(len(rows)), values, color="tab:green")
    ax.set_xticks(range(len(rows)), labels)
    ax.set_ylabel("surface energy (J/m²)")
    for x, v in enumerate(values):
        ax.annotate(f"{v:.3f}", (x, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
