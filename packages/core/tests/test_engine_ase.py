"""The `ase` engine against ASE itself: EMT single points, relax, MD, failures."""

from __future__ import annotations

from pathlib import Path

import dpdata
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState

from opshelf.core.engine import Task, TaskFailed, load_engine, read_task, run_task_dir, write_task
from opshelf.core.engines.ase_engine import AseEngine
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.models import load_calculator


def frame_of(atoms: Atoms, type_map: list[str] | None = None) -> dpdata.System:
    system = dpdata.System(atoms, fmt="ase/structure")
    if type_map:
        system.sort_atom_names(type_map=type_map)
    return system


def run_task(tmp_path: Path, frame: dpdata.System, task: Task, **settings: object):
    engine = load_engine({"name": "ase", "settings": settings})
    write_task(tmp_path, frame, task, engine)
    return run_task_dir(tmp_path)


def rattled_cu(seed: int = 1) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True) * (2, 2, 2)
    atoms.rattle(0.08, seed=seed)
    # extxyz stores positions with 8 decimals: put them on that grid so the engine and the
    # direct ASE call below see identical coordinates.
    atoms.positions = np.round(atoms.positions, 8)
    return atoms


def test_single_point_equals_ase_emt(tmp_path: Path) -> None:
    atoms = rattled_cu()
    result = run_task(tmp_path, frame_of(atoms), Task(kind="single_point"))
    reference = atoms.copy()
    reference.calc = EMT()
    system = result.system
    assert system.get_nframes() == 1
    # Tolerance 1e-8 (brief): energies and stress travel as full repr in extxyz, forces with
    # 8 decimals (rounding error <= 5e-9 eV/A).
    assert system["energies"][0] == pytest.approx(reference.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(system["forces"][0], reference.get_forces(), atol=1e-8, rtol=0)
    # virial = -V * stress, dpdata's ASE convention
    virial = -reference.get_volume() * reference.get_stress(voigt=False)
    np.testing.assert_allclose(system["virials"][0], virial, atol=1e-8, rtol=0)
    assert {p.name for p in result.raw_files} >= {"input.extxyz", "output.extxyz"}


def test_atom_names_follow_the_input_frame(tmp_path: Path) -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 4]] = "Ni"
    # a type map that is neither alphabetical nor first-seen, with an absent element
    type_map = ["Ni", "Au", "Cu"]
    result = run_task(tmp_path, frame_of(atoms, type_map), Task())
    system = result.system
    assert system["atom_names"] == type_map
    assert list(system["atom_numbs"]) == [2, 0, 6]
    names = [type_map[t] for t in system["atom_types"]]
    assert names == atoms.get_chemical_symbols()


def emt_lattice_constant_from_eos() -> float:
    """EMT's fcc Cu lattice constant from ASE's own EOS fit (the test's reference)."""
    volumes, energies = [], []
    for a in np.linspace(3.50, 3.70, 9):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.calc = EMT()
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, _, _ = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    return float((v0) ** (1 / 3))  # 4-atom cubic cell: V = a^3


def test_relax_strained_cu_recovers_emt_lattice_constant(tmp_path: Path) -> None:
    a_eos = emt_lattice_constant_from_eos()
    strained = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 2)
    strained.set_cell(strained.cell[:] @ np.diag([1.02, 0.99, 1.0]), scale_atoms=True)
    task = Task(kind="relax", relax={"relax_cell": True, "fmax_eV_per_A": 1e-4,
                                     "max_steps": 500})
    result = run_task(tmp_path, frame_of(strained), task)
    cell = result.system["cells"][-1]
    lengths = np.linalg.norm(cell, axis=1) / 2  # 2x2x2 supercell
    # EOS fit vs relaxed cell: both from EMT; 1e-3 A covers the fit's grid error and fmax.
    np.testing.assert_allclose(lengths, a_eos, atol=1e-3)
    np.testing.assert_allclose(cell - np.diag(np.diag(cell)), 0, atol=1e-3)  # still cubic
    assert result.info["relax_steps"] > 0
    assert (tmp_path / "relax-trajectory.extxyz").is_file()


def test_relax_volume_only_keeps_the_shape(tmp_path: Path) -> None:
    strained = bulk("Cu", "fcc", a=3.5, cubic=True)
    strained.set_cell(strained.cell[:] @ np.diag([1.03, 1.0, 1.0]), scale_atoms=True)
    task = Task(kind="relax", relax={"relax_cell": True, "relax_volume_only": True,
                                     "relax_positions": False, "fmax_eV_per_A": 1e-3})
    result = run_task(tmp_path, frame_of(strained), task)
    cell = result.system["cells"][0]
    ratio = np.diag(cell) / np.diag(strained.cell[:])
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-10)  # isotropic scaling only
    assert ratio[0] > 1.0  # a = 3.5 A is compressed for EMT Cu (a0 ~ 3.59 A)


def test_relax_along_z_only_matches_ase_fixcartesian(tmp_path: Path) -> None:
    from ase.constraints import FixCartesian
    from ase.optimize import BFGS

    atoms = rattled_cu(seed=3)
    task = Task(kind="relax", relax={"move_axes": ["z"], "fmax_eV_per_A": 1e-4})
    result = run_task(tmp_path, frame_of(atoms), task)
    relaxed = result.system["coords"][0]
    # x and y stay where they were; z moved
    np.testing.assert_allclose(relaxed[:, :2], atoms.positions[:, :2], atol=1e-12)
    assert np.abs(relaxed[:, 2] - atoms.positions[:, 2]).max() > 1e-3
    forces = result.system["forces"][0]  # the labels are the true, unconstrained forces
    assert np.abs(forces[:, 2]).max() < 1e-4 < np.abs(forces[:, :2]).max()
    # the same relaxation directly with ASE (same optimizer and threshold): same minimum
    direct = atoms.copy()
    direct.calc = EMT()
    direct.set_constraint(FixCartesian(range(len(direct)), mask=[True, True, False]))
    BFGS(direct, logfile=None).run(fmax=1e-4)
    assert result.system["energies"][0] == pytest.approx(direct.get_potential_energy(),
                                                         abs=1e-6)
    np.testing.assert_allclose(relaxed, direct.positions, atol=1e-5)


def test_move_axes_is_checked_and_needs_an_engine_that_implements_it() -> None:
    from pydantic import ValidationError

    from opshelf.core.config import validate_into
    from opshelf.core.engine import RelaxOptions

    assert RelaxOptions(move_axes=["z", "x"]).fixed_axes() == [1]
    assert RelaxOptions().fixed_axes() == []
    with pytest.raises(ConfigError, match=r"move_axes.*relax_cell: false"):
        validate_into(RelaxOptions, {"move_axes": ["z"], "relax_cell": True}, where="relax")
    for bad in ([], ["z", "z"]):
        with pytest.raises(ValidationError, match=r"distinct axes"):
            RelaxOptions(move_axes=bad)
    with pytest.raises(ValidationError):
        RelaxOptions(move_axes=["w"])
    task = Task(kind="relax", relax={"move_axes": ["z"]})
    assert AseEngine({"calculator": "emt"}).supports(task)

    class WithoutAxes(AseEngine):
        relax_features = frozenset()

    engine = WithoutAxes({"calculator": "emt"})
    assert not engine.supports(task)
    assert "does not implement relax option(s) ['move_axes']" in engine.unsupported_reason(task)
    assert engine.supports(Task(kind="relax"))


def test_relax_not_converged_is_a_task_failure(tmp_path: Path) -> None:
    task = Task(kind="relax", relax={"fmax_eV_per_A": 1e-6, "max_steps": 2})
    with pytest.raises(TaskFailed, match=r"did not converge within max_steps=2"):
        run_task(tmp_path, frame_of(rattled_cu()), task)
    # the trajectory is kept to diagnose it
    assert (tmp_path / "relax-trajectory.extxyz").is_file()


@pytest.mark.parametrize("ensemble", ["nve", "nvt", "npt"])
def test_md_returns_dumped_frames(tmp_path: Path, ensemble: str) -> None:
    task = Task(kind="md", md={"ensemble": ensemble, "n_steps": 20, "dump_every": 5,
                               "temperature_K": 300, "seed": 3})
    result = run_task(tmp_path, frame_of(rattled_cu()), task)
    system = result.system
    assert system.get_nframes() == 5  # steps 0, 5, 10, 15, 20
    assert np.isfinite(system["energies"]).all() and np.isfinite(system["forces"]).all()
    assert not np.allclose(system["coords"][0], system["coords"][-1])  # atoms moved
    if ensemble == "npt":
        assert not np.allclose(system["cells"][0], system["cells"][-1])  # the cell breathes
    else:
        np.testing.assert_allclose(system["cells"][0], system["cells"][-1])


def test_md_is_reproducible_by_seed(tmp_path: Path) -> None:
    task = Task(kind="md", md={"ensemble": "nvt", "n_steps": 10, "dump_every": 10, "seed": 7})
    first = run_task(tmp_path / "a", frame_of(rattled_cu()), task).system
    second = run_task(tmp_path / "b", frame_of(rattled_cu()), task).system
    np.testing.assert_array_equal(first["coords"], second["coords"])


def test_overlapping_atoms_fail_with_a_reason(tmp_path: Path) -> None:
    atoms = rattled_cu()
    atoms.positions[1] = atoms.positions[0]  # EMT divides by the distance: NaN forces
    with pytest.raises(TaskFailed, match=r"non-finite forces"):
        run_task(tmp_path, frame_of(atoms), Task())


def test_task_dir_round_trip(tmp_path: Path) -> None:
    engine = AseEngine({"calculator": "emt"})
    write_task(tmp_path, frame_of(rattled_cu()), Task(kind="md"), engine)
    engine2, task, frame = read_task(tmp_path)
    assert isinstance(engine2, AseEngine) and task.kind.value == "md"
    assert frame.get_natoms() == 32


def test_check_rejects_what_cannot_run() -> None:
    engine = AseEngine({"calculator": "emt"})
    engine.check(["Cu", "Ni"])
    with pytest.raises(MissingInputError, match=r"cannot compute element 'Fe'"):
        engine.check(["Cu", "Fe"])
    with pytest.raises(ConfigError, match=r"nothing to relax"):
        engine.check(["Cu"], Task(kind="relax", relax={"relax_positions": False}))
    with pytest.raises(ConfigError, match=r"unknown model 'emtt'; did you mean 'emt'"):
        AseEngine({"calculator": "emtt"}).check(["Cu"])
    with pytest.raises(ConfigError, match=r"unknown key 'calculater'.*did you mean 'calculator'"):
        AseEngine({"calculater": "emt"})


def test_load_calculator_by_name_and_import_path() -> None:
    assert isinstance(load_calculator("emt"), EMT)
    lj = load_calculator("ase.calculators.lj:LennardJones", sigma=2.3)
    assert lj.parameters["sigma"] == 2.3
    with pytest.raises(MissingInputError, match=r"cannot import module 'no_such_module'"):
        load_calculator("no_such_module:Calc")
    with pytest.raises(ConfigError, match=r"has no attribute 'Nope'"):
        load_calculator("ase.calculators.emt:Nope")
    with pytest.raises(ConfigError, match=r"bad kwargs \['y'\]"):
        load_calculator("math:floor", y=1)  # the signature is checked before the call
    with pytest.raises(ConfigError, match=r"not an ASE calculator"):
        load_calculator("collections:OrderedDict", x=1.5)
