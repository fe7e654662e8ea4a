"""gamma_surface: the generalized stacking fault energy over the whole fault plane (the
2-D gamma surface, APEX's `gamma_surface`), in J/m^2.

The cell is stacking_fault's: fault plane normal along z, in-plane cell vectors one lattice
repeat each (x: the slip direction, y: normal to it in the plane, for fcc {111} and bcc
{110}; hcp's basal cell has its slip direction along y). The atoms above a plane in the
middle are shifted by fx * a + fy * b (a, b the in-plane repeats) on an n_x x n_y grid of
[0, 1)^2, the c vector tilted by the same shift (wrapped), so the periodic cell holds one
fault and no surface; the cell is then repeated in the plane to min_in_plane_A. Relaxation
as for stacking_fault: along z only, in the fixed cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from opshelf.core.bounds import LengthA
from opshelf.core.engine import Task, TaskKind
from opshelf.core.errors import ConfigError
from opshelf.props.base import (
    EV_PER_A2_TO_J_PER_M2,
    Made,
    Outcome,
    PropertyContext,
    PropertyTask,
    lattice_kind,
    pyplot,
    require,
)
from opshelf.props.stacking_fault import (
    SLIP_SYSTEMS,
    FaultParams,
    SlipSystemName,
    StackingFault,
    fault_energies,
    oriented_cell,
    relax_task,
    split_height,
)

if TYPE_CHECKING:
    from ase import Atoms


class GammaSurfaceParams(FaultParams):
    """The 2-D GSFE surface of one slip plane; 'auto' picks the lattice's standard one."""

    type: Literal["gamma_surface"] = Field("gamma_surface", description="the property type")
    slip_system: SlipSystemName = Field(
        "auto", description="the fault plane (and slip direction of the headline line): fcc "
        "{111}<112>, bcc {110}<111>, hcp basal {0001}<10-10>")
    min_in_plane_A: LengthA = Field(5.0, description="repeat the shifted cell in the plane "
                                    "until both lengths reach this")
    n_points_x: int = Field(12, ge=2, le=60, description="shifts fx = i/n_points_x of the "
                            "first in-plane repeat")
    n_points_y: int = Field(6, ge=2, le=60, description="shifts fy = j/n_points_y of the "
                            "second in-plane repeat")


def shifted_2d(atoms: Atoms, fx: float, fy: float, z_split: float) -> Atoms:
    """`atoms` with the part above z_split shifted by fx*a + fy*b; c tilted by the shift
    wrapped into [-1/2, 1/2) of each repeat."""
    out = atoms.copy()
    a, b = out.cell[0].copy(), out.cell[1].copy()
    out.positions[out.positions[:, 2] > z_split] += fx * a + fy * b
    cell = out.cell[:].copy()
    cell[2] += (fx - round(fx)) * a + (fy - round(fy)) * b
    out.set_cell(cell, scale_atoms=False)
    out.wrap()
    return out


def surface_tasks(atoms: Atoms, params: GammaSurfaceParams, system: str
                  ) -> tuple[list[tuple[float, float, Atoms]], Atoms]:
    """(fx, fy, structure) over the grid, and the unrepeated oriented cell."""
    unit, _ = oriented_cell(atoms, system, params.n_layers, 0.0)
    z_split = split_height(unit)
    repeats = [max(1, int(np.ceil(params.min_in_plane_A / unit.cell.lengths()[i])))
               for i in (0, 1)]
    grid = []
    for i in range(params.n_points_x):
        for j in range(params.n_points_y):
            fx, fy = i / params.n_points_x, j / params.n_points_y
            grid.append((fx, fy, shifted_2d(unit, fx, fy, z_split) * (*repeats, 1)))
    return grid, unit


class GammaSurfaceContext(PropertyContext):
    type: Literal["gamma_surface"] = "gamma_surface"
    params: GammaSurfaceParams
    slip_system: str
    #: the slip direction's in-plane axis (0: x, 1: y)
    slip_axis: int
    lengths_A: list[float]
    area_A2: float
    n_atoms: int


class GammaSurface(StackingFault):
    type = "gamma_surface"
    Params = GammaSurfaceParams
    Context = GammaSurfaceContext
    headline = ("unstable_fault_energy_J_per_m2", "stable_fault_energy_J_per_m2",
                "max_energy_J_per_m2")

    def make(self, atoms: Atoms, params: GammaSurfaceParams) -> Made:  # type: ignore[override]
        kind = lattice_kind(atoms)
        system = params.slip_system
        if system == "auto":
            system = next((n for n, lattice in SLIP_SYSTEMS.items() if lattice == kind), "")
        if SLIP_SYSTEMS.get(system) != kind:
            raise ConfigError(f"gamma_surface: slip systems are defined for elemental fcc, bcc "
                              f"and hcp crystals; {atoms.get_chemical_formula()} is {kind}")
        grid, unit = surface_tasks(atoms, params, system)
        task = relax_task(params) if params.relax else Task(kind=TaskKind.SINGLE_POINT)
        tasks = [PropertyTask(f"gamma-{i:03d}-{j:03d}", structure, task)
                 for (_, _, structure), (i, j) in zip(
                     grid, np.ndindex(params.n_points_x, params.n_points_y))]
        first = grid[0][2]
        return Made(tasks, GammaSurfaceContext(
            params=params, slip_system=system, slip_axis=1 if system.startswith("hcp") else 0,
            lengths_A=unit.cell.lengths()[:2].tolist(),
            area_A2=float(np.linalg.norm(np.cross(first.cell[0], first.cell[1]))),
            n_atoms=len(first)))

    def post(self, context: GammaSurfaceContext, outcomes: Mapping[str, Outcome],  # type: ignore[override]
             params: GammaSurfaceParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        done = require(outcomes, context.task_names, "gamma_surface")
        energies = np.array([o.energy_eV for o in done]).reshape(params.n_points_x,
                                                                 params.n_points_y)
        gamma = (energies - energies[0, 0]) / context.area_A2 * EV_PER_A2_TO_J_PER_M2
        # the slip line through the origin: stacking_fault's curve, same fault energies
        line = gamma[:, 0] if context.slip_axis == 0 else gamma[0, :]
        faults = fault_energies(np.arange(len(line)) / len(line), line)
        plot_surface(gamma, context, out_dir / "gamma_surface.png")
        stable = faults["stable"]
        slip_length = context.lengths_A[context.slip_axis]
        return {
            "slip_system": context.slip_system,
            "shifts_x_A": (np.arange(params.n_points_x) / params.n_points_x
                           * context.lengths_A[0]),
            "shifts_y_A": (np.arange(params.n_points_y) / params.n_points_y
                           * context.lengths_A[1]),
            "gamma_surface_J_per_m2": gamma,
            "max_energy_J_per_m2": float(gamma.max()),
            "unstable_fault_energy_J_per_m2": faults["unstable"]["energy_J_per_m2"],
            "unstable_fault_shift_A": faults["unstable"]["fraction"] * slip_length,
            "stable_fault_energy_J_per_m2": stable and stable["energy_J_per_m2"],
            "stable_fault_shift_A": stable and stable["fraction"] * slip_length,
            "n_atoms": context.n_atoms,
            "relaxed": bool(params.relax),
        }


def plot_surface(gamma: np.ndarray, context: GammaSurfaceContext, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    lx, ly = context.lengths_A
    image = ax.imshow(gamma.T, origin="lower", extent=(0, lx, 0, ly), aspect="auto")
    fig.colorbar(image, ax=ax, label="fault energy (J/m²)")
    ax.set_xlabel("shift along a (Å)")
    ax.set_ylabel("shift along b (Å)")
    ax.set_title(f"gamma surface {context.slip_system}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
