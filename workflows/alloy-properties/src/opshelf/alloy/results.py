"""results.json: every result by structure, interaction and property, with what was run.

    {"workflow": "alloy", "reference_interaction": "eam",
     "structures": {"cu": {"formula": "Cu4", "n_atoms": 4, "source": {...}}},
     "interactions": {"eam": {"engine": "lammps", "settings": {...}}},
     "results": {"cu": {"eam": {"relax": {...}, "eos": {"bulk_modulus_GPa": ...}}}},
     "failures": [{"structure": ..., "interaction": ..., "property": ..., "reason": ...}]}

Units are in the key names of each property's result (opshelf-props). Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opshelf.core.keys import block_glob
from opshelf.core.process import tail

if TYPE_CHECKING:
    from opshelf.alloy.config import AlloyConfig


def assemble_results(config: AlloyConfig, config_dir: Path, structure_files: Mapping[str, Path],
                     found: Mapping[tuple[str, str, str], dict[str, Any]],
                     failures: Sequence[dict[str, Any]]) -> dict[str, Any]:
    import ase.io

    structures = {}
    for spec in config.structures:
        atoms = ase.io.read(structure_files[spec.name])
        structures[spec.name] = {
            "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms),
            "source": spec.generate.model_dump(mode="json", exclude_none=True)
            if spec.generate is not None else {"file": spec.file, "format": spec.format}}
    interactions = {}
    for interaction in config.interactions:
        engine = interaction.engine_spec(config_dir)
        interactions[interaction.name] = {"engine": engine.name, "settings": engine.settings}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for (structure, interaction, block), result in sorted(found.items()):
        results.setdefault(structure, {}).setdefault(interaction, {})[block] = result
    return {"workflow": "alloy", "reference_interaction": config.reference_name(),
            "structures": structures, "interactions": interactions, "results": results,
            "failures": list(failures)}


def failure_reason(workflow_dir: Path, block_key: str, n_lines: int = 8) -> str:
    """Why a block has no result: the log tail of its failed step(s), or 'not run'."""
    reasons = []
    for step_dir in sorted(workflow_dir.glob(block_glob(block_key))):
        phase_file = step_dir / "phase"
        phase = phase_file.read_text().strip() if phase_file.is_file() else "?"
        if phase == "Failed":
            reasons.append(f"step {step_dir.name} failed:\n{tail(step_dir / 'log.txt', n_lines)}")
    return "\n".join(reasons) or "not run (an earlier step failed)"


# -- what the report compares ----------------------------------------------------------------
#: (label, property block, key in its result) of the scalar quantities compared side by side
SCALARS: tuple[tuple[str, str, str], ...] = (
    ("E (eV/atom), relaxed", "relax", "energy_eV_per_atom"),
    ("V (Å³/atom), relaxed", "relax", "volume_A3_per_atom"),
    ("a (Å), relaxed", "relax", "lattice_constant_A"),
    ("a0 (Å), EOS", "eos", "lattice_constant_A"),
    ("E0 (eV/atom), EOS", "eos", "e0_eV_per_atom"),
    ("B (GPa), EOS", "eos", "bulk_modulus_GPa"),
    ("B' , EOS", "eos", "bulk_modulus_derivative"),
    ("B_VRH (GPa)", "elastic", "bulk_modulus_vrh_GPa"),
    ("G_VRH (GPa)", "elastic", "shear_modulus_vrh_GPa"),
    ("Young's modulus (GPa)", "elastic", "youngs_modulus_GPa"),
    ("Poisson's ratio", "elastic", "poisson_ratio"),
    ("vacancy formation (eV)", "vacancy", "formation_energy_eV"),
    ("interstitial formation, lowest (eV)", "interstitial", "formation_energy_eV"),
    ("unstable fault (J/m²)", "stacking-fault", "unstable_fault_energy_J_per_m2"),
    ("stable fault (J/m²)", "stacking-fault", "stable_fault_energy_J_per_m2"),
    ("phonon max frequency (THz)", "phonon", "max_frequency_THz"),
    ("phonon min frequency (THz)", "phonon", "min_frequency_THz"),
)


def scalar_rows(by_interaction: Mapping[str, Mapping[str, dict[str, Any]]]
                ) -> list[tuple[str, dict[str, float | None]]]:
    """(label, {interaction: value}) of every scalar some interaction has, in SCALARS order;
    blocks numbered on repeats ('eos-2') are compared too."""
    blocks = sorted({b for per in by_interaction.values() for b in per})
    rows = []
    for label, block_type, key in SCALARS:
        for block in [b for b in blocks if b == block_type or b.startswith(block_type + "-")
                      and b[len(block_type) + 1:].isdigit()]:
            values = {name: _number(per.get(block, {}).get(key))
                      for name, per in by_interaction.items()}
            if any(v is not None for v in values.values()):
                suffix = "" if block == block_type else f" [{block}]"
                rows.append((label + suffix, values))
    return rows


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def relative_difference(value: float | None, reference: float | None) -> float | None:
    """(value - reference) / |reference|, None when either is missing or reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / abs(reference)
