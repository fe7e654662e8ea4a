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
    # every element has all four groups (rattled, strained, vacancy, EOS)
    assert {d.name for d in datasets} >= {f"{element}-{kind}" for element in ("Al", "Si", "Cu")
                                          for kind in ("rattled", "strained", "vacancy", "eos")}
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


#: relative tolerance of the EOS a0 against WIEN2k's: coarse basis, k-mesh and cutoff move it.
#: Shipped: Al -0.04 %, Si +0.06 %, Cu +0.53 % (k 4x4x4, 500/60 Ry, one FFT grid; before the
#: reference cell +0.48 %; Cu's earlier sets: 2x2x2 +0.91 %, 3x3x3 +1.87 %, 4x4x4 at 300/40 Ry
#: +0.92 %). Cu's 0.75 % keeps a 0.22 % margin.
A0_TOLERANCE = {"Al": 0.01, "Si": 0.01, "Cu": 0.0075}


def test_cu_groups_share_one_setting_and_one_reference_cell() -> None:
    """Every Cu group is labelled with one CP2K setting and a reference cell (&CELL_REF), so
    every frame keeps one FFT grid: the 4-atom groups share the cubic cell, the vacancy group
    the 2x1x1 cell scaled alike (without it the most compressed EOS cell got 48^3 points, the
    others 54^3: a 14 meV/cell energy step)."""
    entries = {kind: PROVENANCE["systems"][f"Cu-{kind}"]
               for kind in ("rattled", "strained", "vacancy", "eos")}
    settings = {kind: dict(entry["cp2k_settings"]) for kind, entry in entries.items()}
    references = {kind: np.array(s.pop("cell_ref_A")) for kind, s in settings.items()}
    assert all(s == settings["eos"] for s in settings.values())
    cube = references["eos"]
    np.testing.assert_allclose(references["rattled"], cube)
    np.testing.assert_allclose(references["strained"], cube)
    np.testing.assert_allclose(references["vacancy"], cube * [[2], [1], [1]])
    # at least as wide as every 4-atom frame across each cell direction (plane spacing
    # 1/|b_i|): every frame then gets the requested cutoff or more
    reference_spacing = 1 / np.linalg.norm(np.linalg.inv(cube), axis=0)
    for kind in ("rattled", "strained", "eos"):
        system = dpdata.LabeledSystem(str(REFERENCE_DIR / f"Cu-{kind}"), fmt="deepmd/npy")
        for cell in system["cells"]:
            spacing = 1 / np.linalg.norm(np.linalg.inv(cell), axis=0)
            assert np.all(spacing <= reference_spacing + 1e-9), kind


@pytest.mark.parametrize("element", ["Al", "Si", "Cu"])
def test_eos_minimum_near_the_pbe_lattice_constant(element: str) -> None:
    """Birch-Murnaghan fit of the shipped 5-point EOS (+-6 % in volume) against the
    all-electron PBE (WIEN2k) equilibrium volume of the Delta project (ase.collections.dcdft:
    a0 Al 4.040, Si 5.469, Cu 3.629 A), within A0_TOLERANCE. A wrong cell, unit or atom count
    moves it by more."""
    system = eos_system(element)
    n_atoms = ATOMS_PER_CUBIC_CELL[element]
    assert system.get_natoms() == n_atoms
    volumes = np.abs(np.linalg.det(system["cells"]))
    v0, _, b0 = EquationOfState(volumes, system["energies"], eos="birchmurnaghan").fit()
    a0 = v0 ** (1 / 3)  # the cells are cubic conventional cells
    wien2k_a0 = (dcdft.data[element]["wien2k_volume"] * n_atoms) ** (1 / 3)
    assert a0 == pytest.approx(wien2k_a0, rel=A0_TOLERANCE[element])
    if element == "Cu":
        # B0 136.6 GPa vs WIEN2k's 141.3 (-3.3 %; 138.7 before one FFT grid moved the most
        # compressed frame by 14 meV, 115 on the 2x2x2 set): 5 % keeps a 1.7 % margin
        assert b0 / GPa == pytest.approx(dcdft.data["Cu"]["wien2k_B"], rel=0.05)


@pytest.mark.parametrize("element", ["Al", "Si", "Cu"])
def test_eos_virials_equal_minus_dE_dV_and_perfect_crystals_have_no_force(element: str) -> None:
    """The analytical stress CP2K printed agrees with the energies it printed: pressure
    tr(virial)/3V = -dE/dV of a cubic through the EOS points. Shipped: within 0.05 (Al), 0.10
    (Si), 0.13 GPa (Cu) over pressures of -5.2..12.9 GPa; 0.25 GPa allows for the fit and
    finite-cutoff (Pulay) stress. Each energy step between neighbouring frames matches the
    trapezoid integral of the printed pressure: shipped Al <= 0.5, Si <= 2.9 (8-atom cells),
    Cu <= 1.0 meV/cell (one FFT grid via &CELL_REF; with a 48^3 grid on the most compressed
    cell and 54^3 on the others it was 14 meV); 5 meV allowed (the trapezoid rule's own
    error is ~1 meV here). Forces on the
    perfect crystals vanish by symmetry (a shifted k-mesh that breaks it gave 0.27 eV/A on
    Si)."""
    system = eos_system(element)
    volumes = np.abs(np.linalg.det(system["cells"]))
    energies = system["energies"]
    pressure_from_virial_GPa = np.trace(system["virials"], axis1=1, axis2=2) / 3 / volumes / GPa
    cubic = np.polyfit(volumes, energies, 3)
    pressure_from_energy_GPa = -np.polyval(np.polyder(cubic), volumes) / GPa
    np.testing.assert_allclose(pressure_from_virial_GPa, pressure_from_energy_GPa, atol=0.25)
    # energy step between neighbouring frames vs the trapezoid integral of -P dV (eV/cell)
    mean_pressure_GPa = (pressure_from_virial_GPa[1:] + pressure_from_virial_GPa[:-1]) / 2
    work_eV = -np.diff(volumes) * mean_pressure_GPa * GPa
    assert np.abs(np.diff(energies) - work_eV).max() < 0.005
    assert np.abs(system["forces"]).max() < 0.01  # eV/A


def test_cu_vacancy_formation_energy_is_physical() -> None:
    """E_vac = E(7 atoms) - 7/8 E(8 atoms) from the shipped vacancy frame and the perfect
    2x1x1 cell it was cut from (labelled by the script with the same settings and cell, so
    the same 2x4x4 k-mesh; its energy is in provenance.json). PBE literature ~1.0-1.1 eV
    (relaxed, large cells); this one is unrelaxed, its ions keep a 0.03 A rattle and its cell
    is tiny, so only a bound: 0.8-1.6 eV. Shipped: 1.18 eV. A wrong energy unit or atom
    count is eVs off. The host's zero force catches a grid that breaks the crystal's
    symmetry: at 300/40 Ry its 75 FFT points along 2a gave 0.93 eV/A (and E_vac 1.25 eV)."""
    entry = PROVENANCE["systems"]["Cu-vacancy"]
    host = entry["perfect_host"]
    assert host["n_atoms"] == 8
    assert entry["kmeshes"] == [host["kmesh"]]  # one k-mesh: the energies compare
    assert host["max_abs_force_eV_per_A"] < 0.01  # a perfect crystal: no force by symmetry
    vacancies = dpdata.LabeledSystem(str(REFERENCE_DIR / "Cu-vacancy"), fmt="deepmd/npy")
    assert vacancies.get_natoms() == 7
    formation_eV = vacancies["energies"] - 7 / 8 * host["energy_eV"]
    np.testing.assert_allclose(formation_eV, host["vacancy_formation_eV"], atol=1e-9)
    assert np.all((formation_eV > 0.8) & (formation_eV < 1.6)), formation_eV
