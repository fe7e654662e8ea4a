"""The shipped CP2K PBE reference set: its provenance matches its files, and its labels are
physically consistent (EOS minimum near PBE's lattice constant, stress = -dE/dV, zero forces
on perfect crystals). No model and no CP2K run: reads the shipped numbers only."""

from __future__ import annotations

import json

import dpdata
import numpy as np
import pytest
from ase.collections import dcdft
from ase.eos import EquationOfState
from ase.units import GPa

from opshelf.lameval.data import REFERENCE_DIR, fingerprint, load_frames, reference_datasets

PROVENANCE = json.loads((REFERENCE_DIR / "provenance.json").read_text())
#: atoms per conventional cubic cell of the EOS series (fcc 4, diamond 8)
ATOMS_PER_CUBIC_CELL = {"Al": 4, "Si": 8, "Cu": 4}


def eos_system(element: str) -> dpdata.LabeledSystem:
    return dpdata.LabeledSystem(str(REFERENCE_DIR / f"{element}-eos"), fmt="deepmd/npy")


def test_every_shipped_set_is_in_the_provenance_with_its_fingerprint() -> None:
    datasets = reference_datasets()
    assert {d.domain for d in datasets} >= {"Al", "Si", "Cu"}
    assert PROVENANCE["code_version"][0].startswith("CP2K version")
    for spec in datasets:
        entry = PROVENANCE["systems"][spec.name]
        # the same hash the leaderboard prints as the data set's fingerprint
        assert entry["sha256"] == fingerprint(spec.path), spec.name
        frames = load_frames(spec.path, spec.fmt)
        assert len(frames.atoms) == entry["n_frames"], spec.name
        assert {s for symbols in frames.symbols for s in symbols} == {entry["element"]}
        assert entry["cp2k_settings"]["xc"] == "PBE"
        # a frame whose CP2K run failed (unconverged SCF, timeout) is listed, never kept
        assert isinstance(entry["failed_frames"], list), spec.name
        assert np.all(np.isfinite(frames.energies))
        assert all(np.all(np.isfinite(f)) for f in frames.forces)
        assert frames.virials is not None, spec.name


@pytest.mark.parametrize("element", ["Al", "Si", "Cu"])
def test_eos_minimum_near_the_pbe_lattice_constant(element: str) -> None:
    """Birch-Murnaghan fit of the shipped 5-point EOS (+-6 % in volume) against the
    all-electron PBE (WIEN2k) equilibrium volume of the Delta project (ase.collections.dcdft:
    a0 Al 4.040, Si 5.469, Cu 3.629 A). Tolerance 1 % in a0: coarse basis, k-mesh and
    cutoff move it; shipped: Al -0.04 %, Si +0.06 %, Cu +0.91 % (2x2x2 k-mesh, B0 115 GPa vs
    WIEN2k's 141). A wrong cell, unit or atom count moves it by more."""
    system = eos_system(element)
    n_atoms = ATOMS_PER_CUBIC_CELL[element]
    assert system.get_natoms() == n_atoms
    volumes = np.abs(np.linalg.det(system["cells"]))
    v0, _, _ = EquationOfState(volumes, system["energies"], eos="birchmurnaghan").fit()
    a0 = v0 ** (1 / 3)  # the cells are cubic conventional cells
    wien2k_a0 = (dcdft.data[element]["wien2k_volume"] * n_atoms) ** (1 / 3)
    assert a0 == pytest.approx(wien2k_a0, rel=0.01)


@pytest.mark.parametrize("element", ["Al", "Si", "Cu"])
def test_eos_virials_equal_minus_dE_dV_and_perfect_crystals_have_no_force(element: str) -> None:
    """The analytical stress CP2K printed agrees with the energies it printed: pressure
    tr(virial)/3V = -dE/dV of a cubic through the 5 EOS points. Shipped: within 0.05 (Al),
    0.10 (Si), 0.12 GPa (Cu) over pressures of -3.7..13.9 GPa; 0.25 GPa allows for the fit and finite-cutoff (Pulay)
    stress. Forces on the perfect crystals vanish by symmetry (a shifted k-mesh that breaks
    it gave 0.27 eV/A on Si)."""
    system = eos_system(element)
    volumes = np.abs(np.linalg.det(system["cells"]))
    cubic = np.polyfit(volumes, system["energies"], 3)
    pressure_from_energy_GPa = -np.polyval(np.polyder(cubic), volumes) / GPa
    pressure_from_virial_GPa = np.trace(system["virials"], axis1=1, axis2=2) / 3 / volumes / GPa
    np.testing.assert_allclose(pressure_from_virial_GPa, pressure_from_energy_GPa, atol=0.25)
    assert np.abs(system["forces"]).max() < 0.01  # eV/A
