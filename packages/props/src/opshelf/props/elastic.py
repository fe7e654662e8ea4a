"""elastic: the full 6x6 elastic tensor from a least-squares stress-strain fit
(pymatgen's ElasticTensor.from_independent_strains), ions relaxed at each strain."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from ase.stress import full_3x3_to_voigt_6_stress
from pydantic import BaseModel, ConfigDict, Field

from opshelf.core.bounds import ForceThresholdEvA
from opshelf.core.config import StrictModel
from opshelf.core.engine import RelaxOptions, Task, TaskKind
from opshelf.props.base import (
    Made,
    Outcome,
    Property,
    PropertyContext,
    PropertyTask,
    pyplot,
    require,
)

if TYPE_CHECKING:
    from ase import Atoms

log = logging.getLogger(__name__)

VOIGT_LABELS = ("xx", "yy", "zz", "yz", "xz", "xy")
#: warn when Cij from the +-m/2 strains and from all strains differ by more than this fraction
#: of the largest |Cij|. Measured on fcc Cu: EMT 0.01 % at m = 0.005, 0.17 % at m = 0.02;
#: CHGNet 0.9 % at m = 0.005, 4.8 % at m = 0.01, 6.5 % at m = 0.02 (its E(V) curvature
#: oscillates with strain)
STRAIN_DEPENDENCE_WARNING = 0.02
REFERENCE_TASK = "elastic-reference"


class ElasticParams(StrictModel):
    """Independent strains: each Voigt component at -m, -m/2, +m/2, +m."""

    type: Literal["elastic"] = Field("elastic", description="the property type")
    normal_strain: float = Field(
        0.005, gt=0, lt=0.1, description="largest normal strain m; the result's "
        "strain_dependence_relative says how much Cij change between +-m/2 and +-m")
    shear_strain: float = Field(
        0.005, gt=0, lt=0.1, description="largest shear strain m (engineering, 2*eps_ij)")
    relax_ions: bool = Field(True, description="relax ions at each strain (fixed cell)")
    fmax_eV_per_A: ForceThresholdEvA = Field(1e-3, description="ion relaxation: force convergence")


def strain_task_name(component: int, magnitude: float) -> str:
    return f"elastic-{VOIGT_LABELS[component]}-{magnitude:+.5f}"


def strain_set(params: ElasticParams) -> list[tuple[int, float]]:
    """(Voigt component, engineering strain) for every strained task."""
    out = []
    for component in range(6):
        m = params.normal_strain if component < 3 else params.shear_strain
        out.extend((component, s) for s in (-m, -m / 2, m / 2, m))
    return out


def deformation_matrix(component: int, value: float) -> np.ndarray:
    """F whose Green-Lagrange strain has one Voigt component `value` (pymatgen's rule)."""
    from pymatgen.analysis.elasticity import Strain

    voigt = np.zeros(6)
    voigt[component] = value
    return np.asarray(Strain.from_voigt(voigt).get_deformation_matrix())


def deform(atoms: Atoms, deformation: np.ndarray) -> Atoms:
    """Apply F to the cell (ASE cells are row vectors: cell' = cell F^T), atoms follow."""
    out = atoms.copy()
    out.set_cell(atoms.cell[:] @ deformation.T, scale_atoms=True)
    return out


class AppliedStrain(BaseModel):
    """One strained task: its Voigt component, engineering strain and deformation F."""

    model_config = ConfigDict(extra="forbid")

    component: int
    value: float
    deformation: list[list[float]]


class ElasticContext(PropertyContext):
    type: Literal["elastic"] = "elastic"
    params: ElasticParams
    #: the strained tasks, in task order after the reference
    strains: list[AppliedStrain]


class Elastic(Property):
    type = "elastic"
    Params = ElasticParams
    Context = ElasticContext
    headline = ("c11_GPa", "c12_GPa", "c44_GPa", "bulk_modulus_vrh_GPa",
                "shear_modulus_vrh_GPa", "youngs_modulus_GPa", "poisson_ratio")

    def make(self, atoms: Atoms, params: ElasticParams) -> Made:
        if params.relax_ions:
            task = Task(kind=TaskKind.RELAX, relax=RelaxOptions(
                fmax_eV_per_A=params.fmax_eV_per_A, max_steps=500))
        else:
            task = Task(kind=TaskKind.SINGLE_POINT)
        tasks = [PropertyTask(REFERENCE_TASK, atoms.copy(), task)]
        strains = []
        for component, value in strain_set(params):
            deformation = deformation_matrix(component, value)
            tasks.append(PropertyTask(strain_task_name(component, value),
                                      deform(atoms, deformation), task))
            strains.append(AppliedStrain(component=component, value=value,
                                         deformation=deformation.tolist()))
        return Made(tasks, ElasticContext(params=params, strains=strains))

    def count_tasks(self, atoms: Atoms, params: ElasticParams) -> int:
        return 1 + len(strain_set(params))  # the reference and every strain; no pymatgen

    def post(self, context: ElasticContext, outcomes: Mapping[str, Outcome],
             params: ElasticParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        names = context.task_names
        done = require(outcomes, names, "elastic")
        if any(o.stress_GPa is None for o in done):
            raise ValueError("elastic: the engine gave no stress (virial); elastic constants "
                             "need one")
        strains = [s.model_dump() for s in context.strains]  # as the fit helpers take them
        stresses = [o.stress_GPa for o in done[1:]]
        tensor = fit_elastic_tensor(strains, stresses, done[0].stress_GPa)
        cij = np.asarray(tensor.voigt)
        # the same fit on the +-m/2 strains alone: how much Cij depend on the strain magnitude
        small = [i for i, s in enumerate(strains) if abs(s["value"]) <= 0.5 * (1 + 1e-9) * (
            params.normal_strain if s["component"] < 3 else params.shear_strain)]
        cij_half = np.asarray(fit_elastic_tensor([strains[i] for i in small],
                                                 [stresses[i] for i in small],
                                                 done[0].stress_GPa).voigt)
        strain_dependence = float(np.abs(cij - cij_half).max())
        relative_dependence = strain_dependence / float(np.abs(cij).max())
        if relative_dependence > STRAIN_DEPENDENCE_WARNING:
            log.warning(
                "elastic: Cij from the +-m/2 and the +-m strains differ by up to %.1f GPa "
                "(%.1f %%): the stress-strain response is not linear at this strain scale (an "
                "anharmonic or non-smooth potential energy surface); the values depend on "
                "normal_strain/shear_strain", strain_dependence, 100 * relative_dependence)
        plot_stress_strain(strains, [s - done[0].stress_GPa for s in stresses], cij,
                           out_dir / "elastic.png")
        result: dict[str, Any] = {
            "elastic_tensor_voigt_GPa": cij,
            **{f"c{i + 1}{j + 1}_GPa": cij[i, j] for i in range(6) for j in range(i, 6)},
            "bulk_modulus_voigt_GPa": tensor.k_voigt,
            "bulk_modulus_reuss_GPa": tensor.k_reuss,
            "bulk_modulus_vrh_GPa": tensor.k_vrh,
            "shear_modulus_voigt_GPa": tensor.g_voigt,
            "shear_modulus_reuss_GPa": tensor.g_reuss,
            "shear_modulus_vrh_GPa": tensor.g_vrh,
            # pymatgen's y_mod is in Pa when the tensor is in GPa (it multiplies by 1e9)
            "youngs_modulus_GPa": 9 * tensor.k_vrh * tensor.g_vrh
            / (3 * tensor.k_vrh + tensor.g_vrh),
            "poisson_ratio": tensor.homogeneous_poisson,
            "reference_stress_GPa": done[0].stress_GPa,
            # linearity checks of the fit (see fit_elastic_tensor and linear_fit_residuals)
            "elastic_tensor_half_strain_voigt_GPa": cij_half,
            "strain_dependence_GPa": strain_dependence,
            "strain_dependence_relative": relative_dependence,
            "stress_fit_max_residual_GPa": linear_fit_residuals(strains, stresses,
                                                                done[0].stress_GPa),
            "strain_convention": "Green-Lagrange; shear components engineering (2*eps_ij)",
        }
        return result


def fit_elastic_tensor(strains: list[dict[str, Any]], stresses: list[np.ndarray],
                       reference_stress: np.ndarray) -> Any:
    """pymatgen's least-squares ElasticTensor: per strained Voigt component, a straight line
    through its stresses and the reference (zero strain) stress. `strains` as in the context
    (component, value, deformation); stresses 3x3, GPa, positive in tension."""
    from pymatgen.analysis.elasticity import Deformation, ElasticTensor, Stress

    return ElasticTensor.from_independent_strains(
        [Deformation(s["deformation"]).green_lagrange_strain for s in strains],
        [Stress(s) for s in stresses], eq_stress=Stress(reference_stress))


def linear_fit_residuals(strains: list[dict[str, Any]], stresses: list[np.ndarray],
                         reference_stress: np.ndarray) -> np.ndarray:
    """Per strained Voigt component, the largest |residual| (GPa) of the straight-line fits of
    the six stress components against the strain (reference point included): ~0 for a linear
    response; ~|C3| m^2 / 2 for a stress quadratic in the strain (third-order constants C3)."""
    out = np.zeros(6)
    for component in range(6):
        rows = [(s["value"], full_3x3_to_voigt_6_stress(st)) for s, st in zip(strains, stresses)
                if s["component"] == component]
        x = np.array([0.0] + [value for value, _ in rows])
        y = np.array([full_3x3_to_voigt_6_stress(reference_stress)]
                     + [stress for _, stress in rows])
        fitted = np.vander(x, 2) @ np.polyfit(x, y, 1)
        out[component] = float(np.abs(y - fitted).max())
    return out


def plot_stress_strain(strains: list[dict[str, Any]], stresses: list[np.ndarray],
                       cij: np.ndarray, path: Path) -> None:
    """One panel per strained component: the six stress components against the strain."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.5))
    for component, ax in enumerate(axes.flat):
        rows = [(s["value"], stress) for s, stress in zip(strains, stresses)
                if s["component"] == component]
        x = np.array([r[0] for r in rows])
        voigt_stress = np.array([full_3x3_to_voigt_6_stress(st) for _, st in rows])
        grid = np.linspace(x.min(), x.max(), 2)
        for j in range(6):
            line = ax.plot(x * 100, voigt_stress[:, j], "o", ms=4, label=f"σ{VOIGT_LABELS[j]}")
            ax.plot(grid * 100, cij[j, component] * grid, "-", lw=0.8,
                    color=line[0].get_color())
        ax.set_title(f"strain {VOIGT_LABELS[component]}")
        ax.set_xlabel("strain (%)")
        ax.set_ylabel("stress - reference (GPa)")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
