"""EOS: energy over a range of volumes, fitted by Birch-Murnaghan, Vinet and Murnaghan
(pymatgen's EOS fits)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from opshelf.core.bounds import bounded
from opshelf.core.config import StrictModel
from opshelf.core.engine import RelaxOptions, Task, TaskKind
from opshelf.props.base import (
    EV_PER_A3_TO_GPA,
    Made,
    Outcome,
    Property,
    PropertyContext,
    PropertyFailed,
    PropertyTask,
    cubic_lattice_constant,
    pyplot,
)

if TYPE_CHECKING:
    from ase import Atoms

log = logging.getLogger(__name__)

#: pymatgen EOS names, in the order they are reported; the first is the headline fit
FITS = ("birch_murnaghan", "vinet", "murnaghan")
MIN_POINTS = 5
#: warn when B0 over the inner half of the volume range differs from B0 over the whole range
#: by more than this fraction (EMT Cu +-6 %: 0.1 %, +-15 %: 0.7 %; CHGNet Cu +-15 %: ~9 %)
RANGE_DEPENDENCE_WARNING = 0.03


#: a volume over the given volume (0.5 to 2: beyond that no EOS fit means anything)
VolumeRatio = bounded(float, 0.5, 2.0)


class EosParams(StrictModel):
    """Energy-volume curve around the given structure's volume."""

    type: Literal["eos"] = Field("eos", description="the property type")
    volume_ratio_min: VolumeRatio = Field(0.94, description="smallest V / V_given")
    volume_ratio_max: VolumeRatio = Field(1.06, description="largest V / V_given")
    n_points: int = Field(11, ge=MIN_POINTS, le=101, description="number of volumes")
    relax_positions: bool = Field(
        False, description="relax ions at each volume (needed when they are not fixed by "
        "symmetry)")

    @model_validator(mode="after")
    def _range(self) -> EosParams:
        if not self.volume_ratio_min < 1.0 < self.volume_ratio_max:
            raise ValueError("volume_ratio_min < 1 < volume_ratio_max is needed (the EOS "
                             "brackets the given volume)")
        return self


def eos_task_name(index: int) -> str:
    return f"eos-{index:03d}"


def fit_eos(volumes_A3: np.ndarray, energies_eV: np.ndarray) -> dict[str, dict[str, float]]:
    """Each fit of FITS on (volume, energy) per atom: V0, E0, B0, B0' and the RMS residual."""
    from pymatgen.analysis.eos import EOS

    fits: dict[str, dict[str, float]] = {}
    for name in FITS:
        fit = EOS(name).fit(volumes_A3, energies_eV)
        residual = energies_eV - fit.func(volumes_A3)
        fits[name] = {
            "v0_A3_per_atom": float(fit.v0),
            "e0_eV_per_atom": float(fit.e0),
            "b0_GPa": float(fit.b0) * EV_PER_A3_TO_GPA,
            "b0_prime": float(fit.b1),
            "rms_residual_meV_per_atom": float(np.sqrt(np.mean(residual**2))) * 1000,
        }
    return fits


def inner_range_bulk_modulus(ratios: np.ndarray, volumes_A3: np.ndarray,
                             energies_eV: np.ndarray, params: EosParams) -> float | None:
    """B0 (GPa, the headline fit) from the points in the inner half of the volume range:
    `ratios` (V/V_given of each point) within half the distance of volume_ratio_min/max
    from 1. None when fewer than MIN_POINTS lie there. Differs from the full-range B0 when
    E(V) is not one smooth EOS over the range."""
    low, high = (1 + params.volume_ratio_min) / 2, (1 + params.volume_ratio_max) / 2
    inner = (ratios >= low * (1 - 1e-9)) & (ratios <= high * (1 + 1e-9))
    if inner.sum() < MIN_POINTS:
        return None
    return fit_eos(volumes_A3[inner], energies_eV[inner])[FITS[0]]["b0_GPa"]


class EosContext(PropertyContext):
    type: Literal["eos"] = "eos"
    params: EosParams
    #: V / V_given of each task, in task order
    volume_ratios: list[float]
    #: the given cell is cubic (a lattice constant is reported)
    cubic_cell: bool


class Eos(Property):
    type = "eos"
    Params = EosParams
    Context = EosContext
    headline = ("v0_A3_per_atom", "e0_eV_per_atom", "bulk_modulus_GPa", "lattice_constant_A")

    def make(self, atoms: Atoms, params: EosParams) -> Made:
        ratios = np.linspace(params.volume_ratio_min, params.volume_ratio_max, params.n_points)
        if params.relax_positions:
            task = Task(kind=TaskKind.RELAX, relax=RelaxOptions(fmax_eV_per_A=1e-3))
        else:
            task = Task(kind=TaskKind.SINGLE_POINT)
        tasks = []
        for index, ratio in enumerate(ratios):
            scaled = atoms.copy()
            scaled.set_cell(atoms.cell[:] * ratio ** (1 / 3), scale_atoms=True)
            tasks.append(PropertyTask(eos_task_name(index), scaled, task))
        return Made(tasks, EosContext(params=params, volume_ratios=ratios.tolist(),
                                      cubic_cell=cubic_lattice_constant(atoms) is not None))

    def post(self, context: EosContext, outcomes: Mapping[str, Outcome],
             params: EosParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        ratio_of = dict(zip(context.task_names, context.volume_ratios))
        done = [outcomes[name] for name in context.task_names
                if name in outcomes and outcomes[name].ok]
        if len(done) < MIN_POINTS:
            failed = {n: o.reason for n, o in outcomes.items() if not o.ok}
            raise PropertyFailed(f"eos: {len(done)} points succeeded, {MIN_POINTS} are needed; "
                                 f"failed: {failed}")
        n_atoms = len(done[0].atoms)
        volumes = np.array([o.atoms.get_volume() / n_atoms for o in done])
        energies = np.array([o.energy_eV / n_atoms for o in done])
        fits = fit_eos(volumes, energies)
        best = fits[FITS[0]]
        if not volumes.min() <= best["v0_A3_per_atom"] <= volumes.max():
            raise PropertyFailed(
                f"eos: the fitted V0 {best['v0_A3_per_atom']:.4f} A^3/atom lies outside the "
                f"sampled volumes [{volumes.min():.4f}, {volumes.max():.4f}]: relax the "
                "structure first or widen the volume range")
        inner_b0 = inner_range_bulk_modulus(np.array([ratio_of[o.name] for o in done]),
                                            volumes, energies, params)
        range_dependence = None
        if inner_b0 is not None:
            range_dependence = abs(best["b0_GPa"] - inner_b0) / best["b0_GPa"]
            if range_dependence > RANGE_DEPENDENCE_WARNING:
                log.warning(
                    "eos: B0 %.1f GPa over the whole volume range, %.1f GPa over its inner half: "
                    "the curvature of E(V) changes within the range (anharmonic or non-smooth "
                    "potential energy surface); B0 depends on volume_ratio_min/max",
                    best["b0_GPa"], inner_b0)
        lattice_constant = None
        if context.cubic_cell:
            lattice_constant = (best["v0_A3_per_atom"] * n_atoms) ** (1 / 3)
        plot_eos(volumes, energies, fits, out_dir / "eos.png")
        return {
            "fit": FITS[0],
            "v0_A3_per_atom": best["v0_A3_per_atom"],
            "e0_eV_per_atom": best["e0_eV_per_atom"],
            "bulk_modulus_GPa": best["b0_GPa"],
            "bulk_modulus_derivative": best["b0_prime"],
            "rms_residual_meV_per_atom": best["rms_residual_meV_per_atom"],
            # the same fit over the inner half of the volume range (None: < MIN_POINTS there)
            "bulk_modulus_inner_half_range_GPa": inner_b0,
            "bulk_modulus_range_dependence_relative": range_dependence,
            "lattice_constant_A": lattice_constant,
            "fits": fits,
            "volumes_A3_per_atom": volumes,
            "energies_eV_per_atom": energies,
        }


def plot_eos(volumes: np.ndarray, energies: np.ndarray, fits: dict[str, dict[str, float]],
             path: Path) -> None:
    from pymatgen.analysis.eos import EOS

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(volumes, energies, "ko", label="calculated")
    grid = np.linspace(volumes.min(), volumes.max(), 200)
    for name in FITS:
        fit = EOS(name).fit(volumes, energies)
        f = fits[name]
        ax.plot(grid, fit.func(grid), lw=1.2,
                label=f"{name}: V0 {f['v0_A3_per_atom']:.3f} Å³, B0 {f['b0_GPa']:.1f} GPa")
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
