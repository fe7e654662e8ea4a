"""phonon: finite displacements through phonopy; band structure along the standard path
(ASE's bandpath of the primitive cell), DOS, thermal properties and an imaginary-mode flag."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from opshelf.core.bounds import Supercell, TemperatureOrZeroK, bounded
from opshelf.core.config import StrictModel
from opshelf.core.engine import Task
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

PHONOPY_FILE = "phonopy_disp.yaml"
BAND_FILE = "band.yaml"


#: q points along one reciprocal axis
QMesh = bounded(int, 1, 200)
#: the step of a temperature grid: K
TemperatureStepK = bounded(float, 0.0, 2.0e4, "K", low_open=True)


class PhononParams(StrictModel):
    """Harmonic phonons by finite displacements (phonopy)."""

    type: Literal["phonon"] = Field("phonon", description="the property type")
    supercell: Supercell = Field((3, 3, 3), description="repeats of the given cell")
    displacement_A: float = Field(0.01, gt=0, lt=0.2,
                                  description="finite displacement of one atom (phonopy)")
    band_points_per_segment: int = Field(51, ge=2, le=10000, description="q-points on each segment "
                                         "of the band-structure path")
    mesh: tuple[QMesh, QMesh, QMesh] = Field((20, 20, 20), description="q mesh for DOS and thermal")
    temperatures_K: tuple[TemperatureOrZeroK, TemperatureOrZeroK, TemperatureStepK] = Field(
        (0.0, 1000.0, 100.0), description="(min, max, step) of the thermal properties: "
        "0 <= min < max, step > 0")
    imaginary_tolerance_THz: float = Field(
        0.05, ge=0, le=10, description="a frequency below -tolerance counts as an imaginary mode")

    @field_validator("temperatures_K")
    @classmethod
    def _temperature_range(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        low, high, _step = value
        if high <= low:
            raise ValueError(f"(min, max, step) = {tuple(value)}: max must be above min "
                             "(accepted: 0 <= min < max <= 20000 K, step > 0)")
        return value


def to_phonopy_atoms(atoms: Atoms) -> Any:
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:],
                        scaled_positions=atoms.get_scaled_positions())


def to_ase(cell: Any) -> Atoms:
    from ase import Atoms

    return Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions,
                 pbc=True)


def band_path(primitive_cell: np.ndarray, points_per_segment: int
              ) -> tuple[list[np.ndarray], list[str]]:
    """q-point segments (fractional, of the primitive reciprocal cell) along ASE's standard
    path, and the labels of the segment ends (phonopy's format)."""
    from ase.cell import Cell

    path = Cell(primitive_cell).bandpath(npoints=0)
    special = path.special_points
    segments, labels = [], []
    for branch in path.path.split(","):
        names = _split_labels(branch)
        for start, end in zip(names[:-1], names[1:]):
            segments.append(np.linspace(special[start], special[end], points_per_segment))
            labels.extend([start, end])
    return segments, labels


def _split_labels(branch: str) -> list[str]:
    """'GXW1K' -> ['G', 'X', 'W1', 'K'] (a digit belongs to the letter before it)."""
    names: list[str] = []
    for char in branch:
        if char.isdigit() and names:
            names[-1] += char
        else:
            names.append(char)
    return names


class PhononContext(PropertyContext):
    type: Literal["phonon"] = "phonon"
    params: PhononParams


class Phonon(Property):
    type = "phonon"
    Params = PhononParams
    Context = PhononContext
    headline = ("min_frequency_THz", "has_imaginary_modes")

    def make(self, atoms: Atoms, params: PhononParams) -> Made:
        from phonopy import Phonopy

        with warnings.catch_warnings():  # phonopy >= 4 warns that "auto" is its default
            warnings.simplefilter("ignore")
            phonon = Phonopy(to_phonopy_atoms(atoms),
                             supercell_matrix=np.diag(params.supercell), primitive_matrix="auto")
        phonon.generate_displacements(distance=params.displacement_A)
        tasks = [PropertyTask(f"phonon-disp-{i:03d}", to_ase(cell), Task())
                 for i, cell in enumerate(phonon.supercells_with_displacements)]

        return Made(tasks, PhononContext(params=params),
                    files={PHONOPY_FILE: _phonopy_yaml(phonon)})

    def post(self, context: PhononContext, outcomes: Mapping[str, Outcome],
             params: PhononParams, context_dir: Path, out_dir: Path) -> dict[str, Any]:
        import phonopy

        done = require(outcomes, context.task_names, "phonon")
        phonon = phonopy.load(str(context_dir / PHONOPY_FILE), produce_fc=False,
                              log_level=0)
        phonon.forces = np.array([o.forces_eV_per_A for o in done])
        phonon.produce_force_constants()
        phonon.symmetrize_force_constants()
        segments, labels = band_path(phonon.primitive.cell, params.band_points_per_segment)
        phonon.run_band_structure(segments, labels=labels)
        bands = phonon.get_band_structure_dict()
        phonon.write_yaml_band_structure(filename=str(out_dir / BAND_FILE))
        phonon.run_mesh(list(params.mesh), is_gamma_center=True)
        mesh_freqs = phonon.get_mesh_dict()["frequencies"]
        phonon.run_total_dos()
        dos = phonon.get_total_dos_dict()
        t_min, t_max, t_step = params.temperatures_K
        phonon.run_thermal_properties(t_min=t_min, t_max=t_max, t_step=t_step)
        thermal = phonon.get_thermal_properties_dict()
        band_min = min(float(np.min(f)) for f in bands["frequencies"])
        min_freq = min(band_min, float(np.min(mesh_freqs)))
        plot_phonons(bands, labels, dos, out_dir / "phonon.png")
        special: dict[str, list[float]] = {}
        for i, freqs in enumerate(bands["frequencies"]):
            special.setdefault(labels[2 * i], sorted(freqs[0]))
            special.setdefault(labels[2 * i + 1], sorted(freqs[-1]))
        return {
            "min_frequency_THz": min_freq,
            "max_frequency_THz": max(float(np.max(f)) for f in bands["frequencies"]),
            "has_imaginary_modes": bool(min_freq < -params.imaginary_tolerance_THz),
            "imaginary_tolerance_THz": params.imaginary_tolerance_THz,
            "band_path": labels,
            "special_point_frequencies_THz": special,
            "band_file": BAND_FILE,
            "n_displacements": len(done),
            "dos": {"frequency_THz": dos["frequency_points"], "states_per_THz": dos["total_dos"]},
            "thermal": {
                "temperature_K": thermal["temperatures"],
                "free_energy_kJ_per_mol": thermal["free_energy"],
                "entropy_J_per_K_mol": thermal["entropy"],
                "heat_capacity_J_per_K_mol": thermal["heat_capacity"],
            },
        }


def _phonopy_yaml(phonon: Any) -> str:
    """phonopy's own phonopy_disp.yaml (structure, supercell matrix, displacements)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PHONOPY_FILE
        phonon.save(filename=str(path))
        return path.read_text()


def plot_phonons(bands: dict[str, Any], labels: list[str], dos: dict[str, Any], path: Path
                 ) -> None:
    plt = pyplot()
    fig, (ax_b, ax_d) = plt.subplots(1, 2, figsize=(9, 4.5), sharey=True,
                                     gridspec_kw={"width_ratios": [3, 1]})
    ticks, tick_labels = [], []
    for i, (distance, freqs) in enumerate(zip(bands["distances"], bands["frequencies"])):
        ax_b.plot(distance, freqs, color="tab:blue", lw=1)
        start = labels[2 * i]
        if not ticks or not np.isclose(ticks[-1], distance[0]):
            ticks.append(distance[0])
            tick_labels.append(start)
        elif tick_labels[-1] != start:
            tick_labels[-1] = f"{tick_labels[-1]}|{start}"
        ticks.append(distance[-1])
        tick_labels.append(labels[2 * i + 1])
    ax_b.set_xticks(ticks, [t.replace("G", "Γ") for t in tick_labels])
    for tick in ticks:
        ax_b.axvline(tick, color="grey", lw=0.5)
    ax_b.axhline(0, color="k", lw=0.5)
    ax_b.set_xlim(ticks[0], ticks[-1])
    ax_b.set_ylabel("frequency (THz)")
    ax_d.plot(dos["total_dos"], dos["frequency_points"], color="tab:blue")
    ax_d.set_xlabel("DOS (states/THz)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
