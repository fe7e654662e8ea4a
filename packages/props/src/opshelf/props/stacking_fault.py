"""stacking_fault: the generalized stacking fault energy (GSFE) curve along a standard slip
system, in J/m^2, with the unstable and stable fault energies.

The crystal is oriented with the fault plane normal along z and the slip direction along a
cell vector of length L (one lattice repeat). The atoms above a plane in the middle are
shifted by f*L and the c vector is tilted by the same shift (wrapped into [-L/2, L/2)), so
the periodic cell holds exactly one fault and no surface.

Relaxed (the standard GSFE, as APEX and atomate compute it): at each shift the atoms relax
along z only (core's `RelaxOptions.move_axes=["z"]`), in the fixed cell; a free relaxation
would slide the fault back to the perfect crystal. Rigid: the shifted structures as made.
`relax: null` (the default) relaxes when the engine implements `move_axes`, else computes
the rigid curve and says so (`relaxed: false` in the result).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from opshelf.core.bounds import ForceThresholdEvA, LengthA, StepCount
from opshelf.core.config import StrictModel
from opshelf.core.engine import Engine, RelaxOptions, Task, TaskKind
from opshelf.core.errors import ConfigError
from opshelf.props.base import (
    EV_PER_A2_TO_J_PER_M2,
    Made,
    Outcome,
    Property,
    PropertyContext,
    PropertyTask,
    conventional_cell,
    lattice_kind,
    pyplot,
    require,
)

if TYPE_CHECKING:
    from ase import Atoms

log = logging.getLogger(__name__)

#: slip system name -> lattice it belongs to
SLIP_SYSTEMS = {"fcc_111_112": "fcc", "bcc_110_111": "bcc", "hcp_0001_1010": "hcp"}


#: the slip systems a fault is put on ('auto': the lattice's standard one)
SlipSystemName = Literal["auto", "fcc_111_112", "bcc_110_111", "hcp_0001_1010"]


class FaultParams(StrictModel):
    """What stacking_fault and gamma_surface share: the slip system, the oriented cell
    around the fault and the relaxation normal to the fault plane at each shift. Each
    subclass fixes `type` (declared here, as props' contexts do, so that it stays the
    first key) and adds its grid of shifts."""

    type: str = Field(description="the property type")
    slip_system: SlipSystemName = Field(
        "auto", description="fcc {111}<112>, bcc {110}<111>, hcp basal {0001}<10-10>")
    n_layers: int = Field(12, ge=4, le=200, description="atomic planes normal to the fault (about)")
    min_in_plane_A: LengthA = Field(
        5.0, description="repeat the cell in the plane until both lengths reach this")
    relax: bool | None = Field(
        None, description="relax atoms normal to the fault plane at each shift. null: when "
        "the engine implements per-axis relaxation (RelaxOptions.move_axes), else rigid; "
        "true: relaxed or an error naming the engine; false: rigid shifts")
    fmax_eV_per_A: ForceThresholdEvA = Field(1e-3, description="relaxation: force convergence")
    max_steps: StepCount = Field(500, description="relaxation: at most this many steps")


class StackingFaultParams(FaultParams):
    """GSFE along one slip system; 'auto' picks the standard one of the lattice."""

    type: Literal["stacking_fault"] = Field("stacking_fault", description="the property type")
    n_points: int = Field(12, ge=4, le=60,
                          description="shifts f = i/n_points of the repeat L, i = 0..n-1")


def relax_task(params: FaultParams) -> Task:
    """Relax along z (the fault normal) only, in the fixed cell: the shift stays imposed."""
    return Task(kind=TaskKind.RELAX, relax=RelaxOptions(
        fmax_eV_per_A=params.fmax_eV_per_A, max_steps=params.max_steps, move_axes=["z"]))


def oriented_cell(atoms: Atoms, slip_system: str, n_layers: int, min_in_plane_A: float
                  ) -> tuple[Atoms, int]:
    """A periodic orthogonal cell: fault plane normal along z. Returns (cell, slip axis),
    the slip axis being 0 (x) or 1 (y); its cell vector is one lattice repeat."""
    from ase.build import hcp0001
    from ase.lattice.cubic import BodyCenteredCubic, FaceCenteredCubic

    conventional = conventional_cell(atoms)
    element = conventional[0].symbol
    lengths = conventional.cell.lengths()
    if slip_system == "fcc_111_112":
        unit = FaceCenteredCubic(element, directions=[[1, 1, -2], [-1, 1, 0], [1, 1, 1]],
                                 latticeconstant=lengths[0])
        layers_per_unit, axis = 3, 0
    elif slip_system == "bcc_110_111":
        unit = BodyCenteredCubic(element, directions=[[1, -1, 1], [1, -1, -2], [1, 1, 0]],
                                 latticeconstant=lengths[0])
        layers_per_unit, axis = 2, 0
    else:
        unit = hcp0001(element, size=(1, 2, 2), a=lengths[0], c=lengths[2], orthogonal=True,
                       periodic=True)
        layers_per_unit, axis = 2, 1
    in_plane = [max(1, int(np.ceil(min_in_plane_A / unit.cell.lengths()[i]))) for i in (0, 1)]
    in_plane[axis] = 1  # the slip vector stays one lattice repeat
    repeats_z = max(1, int(round(n_layers / layers_per_unit)))
    cell = unit * (in_plane[0], in_plane[1], repeats_z)
    return cell, axis


def split_height(atoms: Atoms) -> float:
    """A z between two atomic planes, nearest the middle of the cell."""
    z = np.unique(np.round(atoms.positions[:, 2] % atoms.cell[2, 2], 4))
    gaps = (z[:-1] + z[1:]) / 2
    return float(gaps[np.argmin(np.abs(gaps - atoms.cell[2, 2] / 2))])


def shifted(atoms: Atoms, axis: int, fraction: float, z_split: float) -> Atoms:
    """`atoms` with the part above z_split shifted by fraction*L along the slip axis."""
    length = atoms.cell.lengths()[axis]
    direction = atoms.cell[axis] / length
    out = atoms.copy()
    upper = out.positions[:, 2] > z_split
    out.positions[upper] += fraction * length * direction
    tilt = (fraction - round(fraction)) * length
    cell = out.cell[:].copy()
    cell[2] = cell[2] + tilt * direction
    out.set_cell(cell, scale_atoms=False)
    out.wrap()
    return out


def fault_energies(fractions: np.ndarray, gamma: np.ndarray) -> dict[str, Any]:
    """Unstable and stable fault energies from a GSFE curve sampled on [0, 1) of a period.

    The stable fault is the first sampled interior local minimum (None when there is
    none), the unstable fault the largest sample before it (before the middle of the
    period when there is no minimum). Each is then refined on a periodic cubic spline
    through the samples, between the neighbouring samples.
    """
    from scipy.interpolate import CubicSpline

    n = len(gamma)
    x = np.append(fractions, 1.0)
    spline = CubicSpline(x, np.append(gamma, gamma[0]), bc_type="periodic")

    def refine(index: int, pick: Any) -> dict[str, float]:
        grid = np.linspace(x[max(index - 1, 0)], x[min(index + 1, n)], 401)
        values = spline(grid)
        best = int(pick(values))
        return {"fraction": float(grid[best]), "energy_J_per_m2": float(values[best])}

    minima = [i for i in range(1, n) if gamma[i] < gamma[i - 1] and gamma[i] <= gamma[(i + 1) % n]]
    stable = refine(minima[0], np.argmin) if minima else None
    end = minima[0] if minima else n // 2
    peak = int(np.argmax(gamma[: end + 1]))
    return {"unstable": refine(peak, np.argmax), "stable": stable}


class StackingFaultContext(PropertyContext):
    type: Literal["stacking_fault"] = "stacking_fault"
    params: StackingFaultParams
    slip_system: str
    #: shift of each task, a fraction of the slip length
    fractions: list[float]
    #: area of the fault plane in the cell
    area_A2: float
    slip_length_A: float
    n_atoms: int


class StackingFault(Property):
    type = "stacking_fault"
    Params = StackingFaultParams
    Context = StackingFaultContext
    headline = ("unstable_fault_energy_J_per_m2", "stable_fault_energy_J_per_m2")

    def for_engine(self, params: FaultParams, engine: Engine) -> FaultParams:
        reason = engine.unsupported_reason(relax_task(params))
        if params.relax is None:
            if reason is not None:
                log.warning("%s: rigid shifts, the engine cannot relax along z only: %s",
                            params.type, reason)
            return params.model_copy(update={"relax": reason is None})
        if params.relax and reason is not None:
            raise ConfigError(f"{params.type}.relax: true relaxes atoms normal to the fault "
                              f"only (RelaxOptions.move_axes), and {reason}; set relax: false "
                              "for the rigid curve")
        return params

    def make(self, atoms: Atoms, params: StackingFaultParams) -> Made:
        kind = lattice_kind(atoms)
        system = params.slip_system
        if system == "auto":
            matches = [name for name, lattice in SLIP_SYSTEMS.items() if lattice == kind]
            if not matches:
                raise ConfigError("stacking_fault: slip systems are defined for elemental fcc, "
                                  f"bcc and hcp crystals; {atoms.get_chemical_formula()} is "
                                  "none of them")
            system = matches[0]
        elif SLIP_SYSTEMS[system] != kind:
            raise ConfigError(f"stacking_fault.slip_system {system!r} needs a "
                              f"{SLIP_SYSTEMS[system]} crystal; this one is {kind}")
        cell, axis = oriented_cell(atoms, system, params.n_layers, params.min_in_plane_A)
        z_split = split_height(cell)
        fractions = np.arange(params.n_points) / params.n_points
        task = relax_task(params) if params.relax else Task(kind=TaskKind.SINGLE_POINT)
        tasks = [PropertyTask(f"gsfe-{i:03d}", shifted(cell, axis, f, z_split), task)
                 for i, f in enumerate(fractions)]
        area = float(np.linalg.norm(np.cross(cell.cell[0], cell.cell[1])))
        return Made(tasks, StackingFaultContext(
            params=params, slip_system=system, fractions=fractions.tolist(), area_A2=area,
            slip_length_A=float(cell.cell.lengths()[axis]), n_atoms=len(cell)))

    def post(self, context: StackingFaultContext, outcomes: Mapping[str, Outcome],
             params: StackingFaultParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        done = require(outcomes, context.task_names, "stacking_fault")
        energies = np.array([o.energy_eV for o in done])
        gamma = (energies - energies[0]) / context.area_A2 * EV_PER_A2_TO_J_PER_M2
        fractions = np.array(context.fractions)
        faults = fault_energies(fractions, gamma)
        plot_gsfe(fractions * context.slip_length_A, gamma, faults, context,
                  bool(params.relax), out_dir / "stacking_fault.png")
        stable = faults["stable"]
        return {
            "slip_system": context.slip_system,
            "unstable_fault_energy_J_per_m2": faults["unstable"]["energy_J_per_m2"],
            "unstable_fault_shift_A": faults["unstable"]["fraction"] * context.slip_length_A,
            "stable_fault_energy_J_per_m2": stable and stable["energy_J_per_m2"],
            "stable_fault_shift_A": stable and stable["fraction"] * context.slip_length_A,
            "slip_length_A": context.slip_length_A,
            "shifts_A": fractions * context.slip_length_A,
            "gsfe_J_per_m2": gamma,
            "n_atoms": context.n_atoms,
            "relaxed": bool(params.relax),
        }


def plot_gsfe(shifts: np.ndarray, gamma: np.ndarray, faults: dict[str, Any],
              context: StackingFaultContext, relaxed: bool, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    length = context.slip_length_A
    ax.plot(np.append(shifts, length), np.append(gamma, gamma[0]), "o-")
    for key, marker in (("unstable", "^"), ("stable", "v")):
        if faults[key] is not None:
            ax.plot(faults[key]["fraction"] * length, faults[key]["energy_J_per_m2"], marker,
                    ms=10, label=f"{key}: {faults[key]['energy_J_per_m2']:.3f} J/m²")
    ax.set_xlabel("shift (Å)")
    ax.set_ylabel("fault energy (J/m²)")
    how = "relaxed normal to the plane" if relaxed else "rigid shifts"
    ax.set_title(f"GSFE {context.slip_system} ({how})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
