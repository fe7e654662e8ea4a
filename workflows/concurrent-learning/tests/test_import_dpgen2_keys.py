"""`opshelf cl import-dpgen2`, keys that used to be refused, checked by running what the
converted config makes: DPGEN2's `mass_map` (any masses) in a real LAMMPS run, per-element
POTCAR files as opshelf-fp's library, fpop's CP2K `@INCLUDE` convention as opshelf's
placeholders, and engine paths that resolve from any working folder."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import ase.io
import dpdata
import numpy as np
import pytest
import yaml
from ase.build import bulk
from conftest import DATA, opshelf

from opshelf.cl.config import ClConfig
from opshelf.cl.dpgen2 import fpop_cp2k_template, import_dpgen2
from opshelf.core.engine import Task, load_engine, write_task

FIXTURES = DATA / "dpgen2"
EXAMPLES = DATA / "dpgen2-examples"


def cu_input(tmp_path: Path, group: dict[str, Any], mass_map: list[float] | None) -> dict:
    """A one-group DPGEN2 input exploring a 2x2x2 fcc Cu cell (the file conf written here)."""
    ase.io.write(tmp_path / "conf.extxyz", bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2))
    for name in ("cp2k.inp", "train.json"):
        shutil.copy(FIXTURES / name, tmp_path)
    data = json.loads((FIXTURES / "cu-cp2k-new-layout.json").read_text())
    data["inputs"]["type_map"] = ["Cu"]
    if mass_map is not None:
        data["inputs"]["mass_map"] = mass_map
    data["explore"]["configurations"] = [{"type": "file", "files": ["conf.extxyz"]}]
    del data["explore"]["configuration_prefix"]  # the conf is beside the input
    data["explore"]["stages"] = [[{"conf_idx": [0], **group}]]
    return data


def lammps_positions(tmp_path: Path, name: str, mass_map: list[float] | None,
                     dt_ps: float) -> np.ndarray:
    """Positions after 10 NVE steps of the converted group, run by opshelf-md's LAMMPS with
    the EAM Cu potential it ships in place of the DeePMD ensemble."""
    from opshelf.md.explore import ExploreConfig, prepare_explore_tasks, run_explore_tasks
    from opshelf.md.trajectory import read_trajectory_frames

    work = tmp_path / name
    work.mkdir()
    group = {"type": "lmp-md", "ens": "nve", "temps": [600], "nsteps": 10, "dt": dt_ps,
             "trj_freq": 10}
    result = import_dpgen2(cu_input(work, group, mass_map), work, work)
    assert result.errors == []
    config = ClConfig.model_validate(result.config)
    settings = {**config.explore.settings,
                "potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}}}
    explore = ExploreConfig(engine={"name": "lammps", "settings": settings},
                            groups=config.explore.stages[0].groups)
    names, paths, type_map = prepare_explore_tasks([work / "conf.extxyz"], "auto", explore,
                                                   work / "tasks", type_map=config.type_map)
    (report,) = run_explore_tasks(paths, work / "runs")
    assert report["status"] == "succeeded", report
    frames = read_trajectory_frames(work / "runs" / names[0] / "traj.dump", "lammps/dump",
                                    [1], type_map)
    return frames["coords"][0]


@pytest.mark.engine("py:lammps")
def test_mass_map_sets_the_masses_lammps_integrates_with(tmp_path: Path) -> None:
    """Velocity Verlet with masses m/4 and step dt is the run with masses m and step 2*dt
    (velocities from the same seed scale as 1/sqrt(m), accelerations as 1/m): the same
    positions to round-off when mass_map reached LAMMPS, and far apart when it did not."""
    cu = 63.546
    quarter = lammps_positions(tmp_path, "quarter", [cu / 4], 0.001)
    standard_2dt = lammps_positions(tmp_path, "standard", None, 0.002)
    standard_dt = lammps_positions(tmp_path, "control", None, 0.001)
    # 1e-6 A: the dump's %.12g positions and the floating-point order of operations
    assert np.max(np.abs(quarter - standard_2dt)) < 1e-6
    # control: at 600 K the atoms move ~0.01 A per 10 fs more with the lighter mass
    assert np.max(np.abs(quarter - standard_dt)) > 1e-3


def test_chno_mass_map_is_carried_as_lammps_mass_lines() -> None:
    """examples/chno: type_map H C N O, mass_map [4, 12, 14, 16] (heavy hydrogen)."""
    path = EXAMPLES / "chno" / "input.json"
    data = json.loads(path.read_text())
    result = import_dpgen2(data, path.parent, path.parent)
    assert result.config["explore"]["settings"] == {
        "extra_commands": ["mass 1 4", "mass 2 12", "mass 3 14", "mass 4 16"]}
    assert not any("mass_map" in e for e in result.errors)


def test_per_element_potcar_files_become_a_library_of_links(tmp_path: Path) -> None:
    """DPGEN2's pp_files name one POTCAR file per element wherever it lies; opshelf-fp's vasp
    engine reads <potcar_dir>/<element>/POTCAR: the CLI links them so, and the engine writes
    the task's POTCAR from the user's files, in the frame's element order."""
    work = tmp_path / "in"
    shutil.copytree(FIXTURES, work)
    (work / "pp").mkdir()
    (work / "pp" / "POTCAR.Al").write_text("PAW_PBE Al 04Jan2001\n")
    (work / "pp" / "Mg.pot").write_text("PAW_PBE Mg_pv 06Sep2000\n")
    data = json.loads((work / "almg-vasp-old-layout.json").read_text())
    data["fp"]["pp_files"] = {"Al": "pp/POTCAR.Al", "Mg": "pp/Mg.pot"}
    (work / "input.json").write_text(json.dumps(data))
    out = tmp_path / "out" / "config.yaml"
    out.parent.mkdir()
    done = opshelf("cl", "import-dpgen2", str(work / "input.json"), "-o", str(out),
                   runs_dir=tmp_path / "runs", timeout=120)
    assert done.returncode == 0, done.stderr
    config = ClConfig.model_validate(yaml.safe_load(out.read_text()))
    assert config.fp.engine.settings["potcar_dir"] == str(tmp_path / "out" / "dpgen2-potcars")
    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms[0].symbol = "Mg"
    frame = dpdata.System(atoms, fmt="ase/structure")
    write_task(tmp_path / "task", frame, Task(), load_engine(config.fp.engine))
    potcar = (tmp_path / "task" / "POTCAR").read_text()
    order = list(frame["atom_names"])
    expected = {"Al": "PAW_PBE Al 04Jan2001\n", "Mg": "PAW_PBE Mg_pv 06Sep2000\n"}
    assert potcar == "".join(expected[el] for el in order)
    # stdout cannot carry the links: without -o the import refuses, naming -o
    done = opshelf("cl", "import-dpgen2", str(work / "input.json"), runs_dir=tmp_path / "runs",
                   timeout=120)
    assert done.returncode == 2 and "give -o" in done.stderr


FPOP_CP2K = """&FORCE_EVAL
  METHOD QUICKSTEP
  &SUBSYS
    &CELL
      @INCLUDE CELL_PARAMETER
      PERIODIC XYZ
    &END CELL
    &COORD
      @include coord.xyz
    &END COORD
    &KIND Cu
      BASIS_SET SZV-MOLOPT-SR-GTH
      POTENTIAL GTH-PBE-q11
    &END KIND
  &END SUBSYS
&END FORCE_EVAL
"""


def test_fpop_cp2k_includes_become_placeholders_and_the_template_is_found_anywhere(
        tmp_path: Path) -> None:
    """fpop writes CELL_PARAMETER and coord.xyz per task and the input @INCLUDEs them;
    the import writes the same input with {{CELL}}/{{COORD}} next to the config, and the
    cp2k engine, started from another folder, fills them with the frame's cell and atoms."""
    work = tmp_path / "in"
    shutil.copytree(FIXTURES, work)
    (work / "cp2k.inp").write_text(FPOP_CP2K)
    out = tmp_path / "out" / "config.yaml"
    out.parent.mkdir()
    done = opshelf("cl", "import-dpgen2", str(work / "cu-cp2k-new-layout.json"), "-o", str(out),
                   runs_dir=tmp_path / "runs", timeout=120)
    assert done.returncode == 0, done.stderr
    config = ClConfig.model_validate(yaml.safe_load(out.read_text()))
    template = Path(config.fp.engine.settings["template"])
    assert template == tmp_path / "out" / "cp2k.opshelf.inp"
    text = template.read_text()
    assert "{{CELL}}" in text and "{{COORD}}" in text and "@INCLUDE" not in text.upper()
    assert "&KIND Cu" in text  # the rest of the user's input is kept
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    frame = dpdata.System(bulk("Cu", "fcc", a=3.6, cubic=True), fmt="ase/structure")
    cwd = Path.cwd()
    os.chdir(elsewhere)
    try:
        write_task(Path("task"), frame, Task(), load_engine(config.fp.engine))
    finally:
        os.chdir(cwd)
    written = next((elsewhere / "task").glob("*.inp")).read_text()
    assert "3.6000000000" in written and written.count("      Cu ") == 4


@pytest.mark.parametrize("text", [
    FPOP_CP2K.replace("      PERIODIC XYZ\n", "      PERIODIC NONE\n"),  # opshelf writes XYZ
    FPOP_CP2K.replace("      @include coord.xyz\n", ""),                  # no coordinates
    FPOP_CP2K + FPOP_CP2K,                                                  # two &CELL blocks
])
def test_a_cp2k_input_fpop_would_run_otherwise_is_not_converted(text: str) -> None:
    assert fpop_cp2k_template(text) is None


def generated(result: Any, name: str) -> list[Any]:
    return ase.io.read(io.StringIO(result.files[FIXTURES / name]), ":", format="extxyz")


def test_several_compositions_per_alloy_configuration_as_dpgen2_draws_them() -> None:
    """examples/almg/input-v005.json: 30 fcc confs, each with one of the compositions
    [[1, 0], [0.5, 0.5], [0, 1]] drawn at random and each atom's element drawn with its
    weights (dpgen2/conf/alloy_conf.py); the file is the same on every import (seeded)."""
    data = json.loads((EXAMPLES / "almg" / "input-v005.json").read_text())
    del data["model_devi_jobs"][0]["n_sample"]
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert [e for e in result.errors if "pp_files" not in e] == []
    frames = generated(result, "dpgen2-confs/stage-0-conf-0.extxyz")
    assert len(frames) == 30 and {len(f) for f in frames} == {32}  # 2x2x2 conventional fcc
    mg = np.array([f.get_chemical_symbols().count("Mg") / 32 for f in frames])
    pure = (mg == 0) | (mg == 1)
    assert (mg == 0).any() and (mg == 1).any() and (~pure).any()
    # a 50/50 frame: binomial(32, 0.5) Mg atoms, 0.5 +- 0.09 (1 sigma); 4 sigma bound
    assert np.all(np.abs(mg[~pure] - 0.5) < 0.36)
    again = import_dpgen2(json.loads((EXAMPLES / "almg" / "input-v005.json").read_text()),
                          FIXTURES, FIXTURES)
    assert again.files == result.files  # seeded: the same confs every time


def test_no_concentration_is_equal_fractions_and_dpgen2s_unit_cells() -> None:
    """concentration None: DPGEN2 weighs every element equally (not the first element
    alone). hcp: the 2-atom cell with a = the constant; diamond: the primitive cell of
    vectors (0, a, a)...: nearest neighbours at sqrt(3)/2 a."""
    data = json.loads((FIXTURES / "almg-vasp-old-layout.json").read_text())
    data["explore"]["configurations"] = [
        {"lattice": ["fcc", 4.1], "replicate": [2, 2, 2], "numb_confs": 20},
        {"lattice": ["hcp", 3.2], "replicate": [2, 2, 2], "numb_confs": 1},
        {"lattice": ["diamond", 2.0], "replicate": [2, 2, 2], "numb_confs": 1,
         "cell_pert_frac": 0.03}]
    data["explore"]["stages"] = [[{"conf_idx": [0, 1, 2], "temps": [300]},
                                  {"conf_idx": [2], "temps": [600]}]]
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert result.errors == []
    config = ClConfig.model_validate(result.config)
    (stage,) = config.explore.stages
    assert len(stage.confs.files) == 3
    assert [g.confs for g in stage.groups] == [None, [21]]  # conf 2 is the 22nd frame
    fcc = generated(result, stage.confs.files[0])
    mg = sum(f.get_chemical_symbols().count("Mg") for f in fcc) / (20 * 32)
    assert abs(mg - 0.5) < 0.06  # 640 draws: sigma 0.020, 3 sigma
    (hcp,) = generated(result, stage.confs.files[1])
    assert len(hcp) == 16
    assert np.sort(hcp.get_all_distances(mic=True)[0])[1] == pytest.approx(3.2, abs=1e-6)
    (diamond,) = generated(result, stage.confs.files[2])
    assert len(diamond) == 16
    # the cell perturbation (up to 3 %) moves the neighbours off sqrt(3)/2 * 2.0 = 1.732
    nearest = np.sort(diamond.get_all_distances(mic=True)[0])[1]
    assert nearest == pytest.approx(3**0.5, rel=0.06) and nearest != pytest.approx(3**0.5,
                                                                                 abs=1e-9)


def test_step_envs_keep_each_programs_threads_and_environment() -> None:
    """DPGEN2's step_configs.<step>.template_config.envs (dpgen2/utils/step_config.py),
    default_step_config's for a step without its own: OMP_NUM_THREADS -> `threads`, the rest
    -> `env` of dp, the exploration engine and the fp engine."""
    data = json.loads((FIXTURES / "cu-cp2k-new-layout.json").read_text())
    data["default_step_config"] = {"template_config": {"envs": {"OMP_NUM_THREADS": "1"}}}
    data["step_configs"] = {
        "run_train_config": {"template_config": {"envs": {"OMP_NUM_THREADS": "4",
                                                          "CUDA_VISIBLE_DEVICES": "0"}}},
        "run_fp_config": {"template_config": {"envs": {"OMP_NUM_THREADS": 2,
                                                       "CP2K_DATA_DIR": "/opt/cp2k/data"}}}}
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert result.errors == []
    config = ClConfig.model_validate(result.config)
    assert (config.train.dp.threads, config.train.dp.env) == (4, {"CUDA_VISIBLE_DEVICES": "0"})
    assert config.explore.profile == {"command": ["lmp"], "threads": 1}
    assert config.fp.engine.profile.threads == 2
    assert config.fp.engine.profile.env == {"CP2K_DATA_DIR": "/opt/cp2k/data"}
    assert load_engine(config.fp.engine).environment()["OMP_NUM_THREADS"] == "2"
    data["step_configs"]["run_fp_config"]["template_config"]["envs"]["OMP_NUM_THREADS"] = "x"
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert any("run_fp_config.template_config.envs.OMP_NUM_THREADS" in e for e in result.errors)


def test_file_configurations_are_globbed_and_remove_pbc_is_done_at_import(
        tmp_path: Path) -> None:
    """DPGEN2's FileConfGenerator (dpgen2/conf/file_conf.py): `files` one pattern or a list,
    each globbed and sorted; remove_pbc: dpdata's System.remove_pbc (the atoms' extent plus
    its 9 A protect layer, centred), done when DPGEN2 submits; here at import, into a file."""
    from ase.build import molecule

    for name in ("b", "a"):
        ase.io.write(tmp_path / f"conf-{name}.extxyz", bulk("Cu", "fcc", a=3.615, cubic=True))
    data = cu_input(tmp_path, {"type": "lmp-md", "temps": [300]}, None)
    data["explore"]["configurations"] = [{"type": "file", "files": "conf-*.extxyz"}]
    result = import_dpgen2(data, tmp_path, tmp_path)
    assert result.errors == []
    (stage,) = ClConfig.model_validate(result.config).explore.stages
    assert stage.confs.files == ["conf-a.extxyz", "conf-b.extxyz"]
    water = molecule("H2O")
    water.set_cell([20.0, 20.0, 20.0])
    water.pbc = True
    ase.io.write(tmp_path / "water.extxyz", water)
    data["inputs"]["type_map"] = ["H", "O"]
    del data["inputs"]["mass_map"]
    data["explore"]["configurations"] = [{"type": "file", "files": ["water.extxyz"],
                                          "remove_pbc": True}]
    result = import_dpgen2(data, tmp_path, tmp_path)
    assert result.errors == []
    (stage,) = ClConfig.model_validate(result.config).explore.stages
    (name,) = stage.confs.files
    (frame,) = ase.io.read(io.StringIO(result.files[tmp_path / name]), ":", format="extxyz")
    # dpdata: a cubic cell, every atom 9 A or more inside every face, the atoms' centroid at
    # the cell's centre
    length = frame.cell.lengths()[0]
    assert np.allclose(frame.cell.array, np.eye(3) * length)
    assert frame.positions.min() >= 9.0 - 1e-6 and frame.positions.max() <= length - 9.0 + 1e-6
    assert np.allclose(frame.positions.mean(axis=0), length / 2, atol=1e-6)
    assert frame.pbc.all() and any("remove_pbc" in w for w in result.warnings)
    data["explore"]["configurations"][0]["files"] = ["nothing-*.extxyz"]
    result = import_dpgen2(data, tmp_path, tmp_path)
    assert any("'explore.configurations[0].files'" in e for e in result.errors)
