"""relax: positions, and the cell's shape and volume when asked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from opshelf.core.bounds import ForceThresholdEvA, PressureGPa, StepCount
from opshelf.core.config import StrictModel
from opshelf.core.engine import RelaxOptions, Task, TaskKind
from opshelf.props.base import (
    Made,
    Outcome,
    Property,
    PropertyContext,
    PropertyTask,
    cubic_lattice_constant,
    require,
)

if TYPE_CHECKING:
    from ase import Atoms

#: The relaxed structure, written next to relax.json.
RELAXED_FILE = "relaxed.extxyz"


class RelaxParams(StrictModel):
    """Relax the structure every other property starts from."""

    type: Literal["relax"] = Field("relax", description="the property type")
    relax_positions: bool = Field(True, description="relax the atomic positions")
    relax_cell: bool = Field(True, description="relax the cell (shape and volume)")
    relax_volume_only: bool = Field(False, description="with relax_cell: keep the shape")
    pressure_GPa: PressureGPa = Field(0.0, description="target pressure of the cell relaxation")
    fmax_eV_per_A: ForceThresholdEvA = Field(1e-3, description="force (and stress) convergence")
    max_steps: StepCount = Field(1000, description="at most this many optimiser steps")


class RelaxContext(PropertyContext):
    type: Literal["relax"] = "relax"
    params: RelaxParams


class Relax(Property):
    type = "relax"
    Params = RelaxParams
    Context = RelaxContext
    headline = ("energy_eV_per_atom", "volume_A3_per_atom", "lattice_constant_A")

    def make(self, atoms: Atoms, params: RelaxParams) -> Made:
        options = RelaxOptions(
            fmax_eV_per_A=params.fmax_eV_per_A, max_steps=params.max_steps,
            relax_positions=params.relax_positions, relax_cell=params.relax_cell,
            relax_volume_only=params.relax_volume_only, pressure_GPa=params.pressure_GPa)
        task = Task(kind=TaskKind.RELAX, relax=options)
        return Made([PropertyTask("relax", atoms.copy(), task)], RelaxContext(params=params))

    def post(self, context: RelaxContext, outcomes: Mapping[str, Outcome],
             params: RelaxParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        import ase.io

        (outcome,) = require(outcomes, ["relax"], "relax")
        atoms = outcome.atoms
        assert atoms is not None and outcome.energy_eV is not None
        ase.io.write(out_dir / RELAXED_FILE, atoms, format="extxyz")
        n_atoms = len(atoms)
        result: dict[str, Any] = {
            "n_atoms": n_atoms,
            "energy_eV_per_atom": outcome.energy_eV / n_atoms,
            "volume_A3_per_atom": atoms.get_volume() / n_atoms,
            "cell_lengths_A": atoms.cell.lengths(),
            "cell_angles_deg": atoms.cell.angles(),
            "lattice_constant_A": cubic_lattice_constant(atoms),
            "formula": atoms.get_chemical_formula(),
        }
        if outcome.stress_GPa is not None:
            result["residual_stress_GPa"] = outcome.stress_GPa
            result["pressure_GPa"] = -float(outcome.stress_GPa.trace()) / 3
        return result
