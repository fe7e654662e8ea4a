"""`opshelf cl import-dpgen2`: DPGEN2 inputs (fixtures in both DPGEN2 layouts, written after
the dpgen2 repository's examples/almg, examples/ch4 and examples/chno) -> a cl config that
validates; every unmappable key named, an error only when the config would be wrong."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from conftest import DATA, opshelf

from opshelf.cl.config import ClConfig
from opshelf.cl.dpgen2 import Dpgen2Import, import_dpgen2

FIXTURES = DATA / "dpgen2"


def imported(name: str, out_dir: Path = FIXTURES, **changes: object) -> Dpgen2Import:
    data = json.loads((FIXTURES / name).read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return import_dpgen2(data, FIXTURES, out_dir)


def test_old_layout_alloy_npt_vasp_maps_with_units() -> None:
    result = imported("almg-vasp-old-layout.json")
    assert result.errors == []
    config = ClConfig.model_validate(result.config)
    assert config.type_map == ["Al", "Mg"]
    assert [d.path for d in config.init_data] == ["init/al", "init/mg"]
    assert config.train.numb_models == 3
    assert config.train.init_model.policy == "old_data_larger_than:100"
    assert config.train.init_model.numb_steps == 500
    (stage,) = config.explore.stages
    # DPGEN2 generates its alloy confs at submission: the import does, into a file
    assert stage.confs.files == ["dpgen2-confs/stage-0-conf-0.extxyz"]
    frames = ase.io.read(io.StringIO(result.files[FIXTURES / stage.confs.files[0]]), ":",
                         format="extxyz")
    assert len(frames) == 5 and {len(f) for f in frames} == {32}  # 2x2x2 conventional fcc
    assert np.allclose([f.cell.lengths() for f in frames], 8.2)
    assert set().union(*(f.get_chemical_symbols() for f in frames)) == {"Al", "Mg"}
    (group,) = stage.groups
    # units: 1 bar = 1e-4 GPa; DPGEN2's dt and tau_t are in ps (LAMMPS metal units)
    assert group.pressures_GPa == pytest.approx([1e-4, 0.1], rel=1e-12)
    assert group.timestep_fs == pytest.approx(2.0) and group.thermostat_tau_fs == 50.0
    assert (group.ensemble, group.temperatures_K, group.n_steps, group.dump_every) == (
        "npt", [300.0, 600.0], 500, 20)
    assert config.select.trust.f_lo == 0.08 and config.select.trust.f_hi == 0.40
    assert config.select.max_select == 30  # fp.task_max
    assert stage.convergence.min_accurate_ratio == 0.95
    assert stage.convergence.max_iterations == 4 and not stage.convergence.fatal_at_max
    engine = config.fp.engine
    assert engine.name == "vasp"
    # engine settings are read in the task folder: written absolute, resolved as DPGEN2
    # resolves them (against the input's folder)
    assert engine.settings == {"incar_file": str(FIXTURES / "INCAR"), "kspacing_per_A": 0.25,
                               "gamma_centered": True, "potcar_dir": str(FIXTURES / "potcars"),
                               "potcar_variants": {"Mg": "Mg_pv"}}
    assert engine.profile.mpi_prefix == ["mpirun", "-np", "8"]
    assert engine.profile.command == ["vasp_std"]
    assert config.explore.profile == {"command": ["lmp"]}
    assert any("'dflow_config'" in w for w in result.warnings)
    # n_sample 5 covers the stage's 5 generated confs: DPGEN2 explores them all, as opshelf
    assert not any("n_sample" in w for w in result.warnings + result.errors)


def test_new_layout_files_adaptive_lower_cp2k_maps_conf_indices() -> None:
    result = imported("cu-cp2k-new-layout.json")
    assert result.errors == []
    config = ClConfig.model_validate(result.config)
    first, second = config.explore.stages
    assert first.confs.files == ["confs/fcc.xyz", "confs/hot.xyz"]
    # fcc.xyz holds 1 frame, hot.xyz 2: conf_idx [1] -> the stage's confs 1 and 2
    assert [g.confs for g in first.groups] == [[0], [1, 2]]
    assert [g.ensemble for g in first.groups] == ["nvt", "nve"]
    (template,) = second.groups
    assert template.kind == "lmp-template" and template.confs is None
    assert template.template == str(FIXTURES / "in.lammps") and template.revisions["V_TEMP"] == [1200, 1500]
    trust = config.select.trust
    assert (trust.style, trust.f_hi, trust.numb_candi_f, trust.rate_candi_f) == (
        "adaptive-lower", 0.6, 50, 0.02)
    assert first.convergence.style == "adaptive-lower"
    assert first.convergence.level_tolerance == 0.01 and first.convergence.n_checked == 3
    assert first.convergence.fatal_at_max and config.max_iterations == 6
    assert config.train.template == "train.json" and config.train.init_model.policy == "yes"
    assert config.fp.engine.name == "cp2k"
    assert config.fp.engine.settings == {"template": str(FIXTURES / "cp2k.inp")}
    assert config.fp.engine.profile.command == ["cp2k.psmp"]
    assert config.select.max_select == 6
    assert {"'bohrium_config'", "'step_configs'"} <= {w.split()[2].rstrip(':') for w in result.warnings}


def test_paths_are_relative_to_the_written_config(tmp_path: Path) -> None:
    result = imported("cu-cp2k-new-layout.json", out_dir=tmp_path / "out")
    config = ClConfig.model_validate(result.config)
    resolved = (tmp_path / "out" / config.train.template).resolve()  # type: ignore[operator]
    assert resolved == (FIXTURES / "train.json").resolve()


@pytest.mark.parametrize(("changes", "key"), [
    ({"explore__stages__0__0__ensemble": "npt-a"}, "explore.stages[0][0].ens"),
    ({"explore__stages__0__0__n_sample": 0}, "explore.stages[0][0].n_sample"),
    ({"explore__stages__0__0__type": "calypso"}, "explore.stages[0][0].type"),
    ({"explore__stages__0__0__pka_e": 5.0}, "explore.stages[0][0].pka_e"),
    ({"train__type": "dp-dist"}, "train.type"),
    ({"fp__type": "deepmd"}, "fp.type"),
    ({"fp__pp_files": {"Al": "potcars/Al/POTCAR"}}, "fp.inputs_config.pp_files"),
    ({"fp__pp_files": {"Al": "Al.pot", "Mg": "Mg.pot"}}, "fp.inputs_config.pp_files"),
    ({"inputs__mass_map": [27.0]}, "inputs.mass_map"),
    ({"inputs__mass_map": [27.0, -1]}, "inputs.mass_map"),
    ({"explore__configurations__0__concentration": [[1, 0, 0]]},
     "explore.configurations[0].concentration"),
    ({"explore__configurations__0__lattice": ["fcc"]}, "explore.configurations[0].lattice"),
])
def test_what_would_be_wrong_is_an_error_naming_the_key(changes: dict, key: str) -> None:
    result = imported("almg-vasp-old-layout.json", **changes)
    assert any(f"dpgen2 key {key!r}" in e for e in result.errors), result.errors


def test_gaussian_and_abacus_inputs(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "almg-vasp-old-layout.json").read_text())
    data["fp"] = {"type": "gaussian", "inputs_config": {
        "keywords": "#force b3lyp/6-31g* nosymm", "multiplicity": 1, "nproc": 4}}
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert result.errors == []
    assert ClConfig.model_validate(result.config).fp.engine.settings == {
        "keywords": "b3lyp/6-31g* nosymm", "multiplicity": 1, "nproc": 4}
    (tmp_path / "pp").mkdir()
    (tmp_path / "INPUT").write_text("INPUT_PARAMETERS\ncalculation scf\necutwfc 60\n"
                                    "scf_thr 1e-7\nsmearing_method mp\nsmearing_sigma 0.015\n"
                                    "mixing_beta 0.4\n")
    (tmp_path / "KPT").write_text("K_POINTS\n0\nGamma\n4 4 4 0 0 0\n")
    data["fp"] = {"type": "fpop_abacus", "inputs_config": {
        "input_file": "INPUT", "kpt_file": "KPT",
        "pp_files": {"Al": "pp/Al_ONCV_PBE-1.0.upf", "Mg": "pp/Mg_ONCV_PBE-1.0.upf"}}}
    result = import_dpgen2(data, tmp_path, tmp_path)
    assert result.errors == []
    settings = ClConfig.model_validate(result.config).fp.engine.settings
    assert settings == {"pseudo_dir": str(tmp_path / "pp"),
                        "pseudopotentials": {"Al": "Al_ONCV_PBE-1.0.upf",
                                             "Mg": "Mg_ONCV_PBE-1.0.upf"},
                        "kpoints": [4, 4, 4], "ecutwfc_Ry": 60.0, "scf_thr": 1e-7,
                        "smearing_method": "mp", "smearing_sigma_Ry": 0.015,
                        "extra": {"mixing_beta": "0.4"}}


def test_cli_writes_a_config_that_loads_and_refuses_a_cp2k_input_without_placeholders(
        tmp_path: Path) -> None:
    work = tmp_path / "in"
    shutil.copytree(FIXTURES, work)
    out = tmp_path / "out" / "config.yaml"
    out.parent.mkdir()
    done = opshelf("cl", "import-dpgen2", str(work / "cu-cp2k-new-layout.json"), "-o", str(out),
                   runs_dir=tmp_path / "runs", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "warning: dpgen2 key 'bohrium_config'" in done.stderr
    # the warnings are in the converted config too, as comments above the keys
    assert "\n# warning: dpgen2 key 'bohrium_config'" in out.read_text()
    config = ClConfig.model_validate(yaml.safe_load(out.read_text()))
    assert config.fp.engine.settings["template"] == str(work / "cp2k.inp")
    (work / "cp2k.inp").write_text("&FORCE_EVAL\n  &SUBSYS\n  &END SUBSYS\n&END FORCE_EVAL\n")
    out.unlink()
    done = opshelf("cl", "import-dpgen2", str(work / "cu-cp2k-new-layout.json"), "-o", str(out),
                   runs_dir=tmp_path / "runs", timeout=120)
    assert done.returncode == 2
    assert "dpgen2 key 'fp.inputs_config.inp_file'" in done.stderr
    assert "{{CELL}}" in done.stderr and not out.exists()


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_cli_refuses_to_write_over_its_input(tmp_path: Path, link: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`import-dpgen2 in.json -o in.json` (or -o a link to it): exit 2, one line, the input
    untouched."""
    import os

    from opshelf.core.cli import main

    source = tmp_path / "in.json"
    shutil.copy(FIXTURES / "cu-cp2k-new-layout.json", source)
    out = {"same": source, "symlink": tmp_path / "sym.json", "hardlink": tmp_path / "hard.json"}[link]
    if link == "symlink":
        out.symlink_to(source)
    elif link == "hardlink":
        os.link(source, out)
    before = source.read_bytes()
    code = main(["cl", "import-dpgen2", str(source), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"-o/--output {out} " in err[0] and f"the input {source}: refusing" in err[0]
    assert source.read_bytes() == before
