"""`opshelf alloy import-apex`: APEX parameter files -> a valid alloy config, with a note
for everything it cannot map and an error where mapping would change the physics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ase.build import bulk

from opshelf.alloy.apex import import_apex
from opshelf.alloy.config import AlloyConfig
from opshelf.core.cli import main
from opshelf.core.config import validate_into
from opshelf.core.errors import ConfigError

RELAX = {"structures": ["confs/std-*"],
         "interaction": {"type": "eam_alloy", "model": "AlCu.eam.alloy",
                         "type_map": {"Al": 0, "Cu": 1}},
         "relaxation": {"cal_setting": {"etol": 0, "ftol": 1e-10, "maxiter": 5000,
                                        "maximal": 500000}}}
PROPS = {"structures": ["confs/std-*"],
         "interaction": RELAX["interaction"],
         "properties": [
             {"type": "eos", "vol_start": 0.9, "vol_end": 1.1, "vol_step": 0.02},
             {"type": "elastic", "norm_deform": 1e-2, "shear_deform": 1e-2},
             {"type": "vacancy", "supercell": [2, 2, 2]},
             {"type": "surface", "min_slab_size": 10, "min_vacuum_size": 11, "max_miller": 2,
              "cal_type": "static"},
             {"type": "gamma", "plane_miller": [1, 1, 1], "slip_direction": [-1, 1, 0],
              "n_steps": 10, "supercell_size": [1, 1, 5]},
             {"type": "phonon", "supercell_size": [3, 3, 3], "band_path": "0 0 0 0.5 0 0.5"},
             {"type": "interstitial", "skip": True},
             {"type": "cohesive", "latt_start": 0.6}]}
GLOBAL = {"run_command": "lmp -in in.lammps", "context_type": "Local", "batch_type": "Shell"}


@pytest.fixture
def apex_dir(tmp_path: Path) -> Path:
    for name, atoms in (("std-fcc", bulk("Al", "fcc", a=4.05, cubic=True)),
                        ("std-l12", bulk("Cu", "fcc", a=3.7, cubic=True))):
        (tmp_path / "confs" / name).mkdir(parents=True)
        atoms.write(tmp_path / "confs" / name / "POSCAR", format="vasp")
    for name, data in (("param_relax.json", RELAX), ("param_props.json", PROPS),
                       ("global.json", GLOBAL)):
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "AlCu.eam.alloy").write_text("placeholder: import-apex only checks it exists\n")
    return tmp_path


def test_apex_files_map_to_a_valid_config(apex_dir: Path) -> None:
    files = [apex_dir / n for n in ("param_relax.json", "param_props.json", "global.json")]
    config, notes = import_apex(files, apex_dir)
    validate_into(AlloyConfig, config)
    assert [s["name"] for s in config["structures"]] == ["std-fcc", "std-l12"]
    assert config["structures"][0]["file"] == "confs/std-fcc/POSCAR"
    assert config["interactions"] == [{"name": "eam-alloy", "lammps": {"potential": {
        "style": "eam/alloy", "file": "AlCu.eam.alloy"}}}]
    assert config["relax"] == {"relax_positions": True, "relax_cell": True,
                               "relax_volume_only": False, "fmax_eV_per_A": 1e-10,
                               "max_steps": 5000}
    props = {p["type"]: p for p in config["properties"]}
    assert list(props) == ["eos", "elastic", "vacancy", "surface", "stacking_fault", "phonon"]
    # APEX 1.2.8 scans vol_start + n * vol_step while <= vol_end: 0.90, 0.92, ..., 1.10
    assert props["eos"]["n_points"] == 11
    assert props["eos"]["volume_ratio_max"] == pytest.approx(1.1, abs=1e-12)
    assert props["surface"] == {"type": "surface", "max_miller_index": 2, "min_slab_size_A": 10.0,
                                "min_vacuum_size_A": 11.0, "relax_ions": False}
    assert props["stacking_fault"]["slip_system"] == "fcc_111_112"
    assert props["phonon"]["supercell"] == [3, 3, 3]
    text = "\n".join(notes)
    for expected in ("type_map", "etol", "maximal", "skip: true", "cohesive", "band_path",
                     "supercell_size", "global (machine) settings"):
        assert expected in text, expected


def test_unmappable_inputs_are_errors_that_say_why(apex_dir: Path) -> None:
    nep = dict(RELAX, interaction={"type": "nep", "model": "nep.txt"})
    (apex_dir / "nep.json").write_text(json.dumps(nep))
    with pytest.raises(ConfigError, match="interaction type 'nep' cannot be mapped"):
        import_apex([apex_dir / "nep.json"], apex_dir)
    absolute = dict(PROPS, properties=[{"type": "eos", "vol_start": 10, "vol_end": 14,
                                        "vol_step": 1, "vol_abs": True}])
    (apex_dir / "abs.json").write_text(json.dumps(absolute))
    with pytest.raises(ConfigError, match="vol_abs"):
        import_apex([apex_dir / "abs.json"], apex_dir)


def test_cli_writes_the_config(apex_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = apex_dir / "out" / "alloy.yaml"
    out.parent.mkdir()
    code = main(["alloy", "import-apex", str(apex_dir / "param_relax.json"),
                 str(apex_dir / "param_props.json"), "-o", str(out)])
    assert code == 0
    config = yaml.safe_load(out.read_text())
    assert config["structures"][0]["file"] == "../confs/std-fcc/POSCAR"
    assert "note: interaction.type_map" in out.read_text()
    assert "opshelf: note:" in capsys.readouterr().err
    # a file that is not there: exit 2 and a message, no traceback
    assert main(["alloy", "import-apex", str(apex_dir / "nope.json")]) == 2


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_cli_refuses_to_write_over_an_input(apex_dir: Path, link: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """-o naming one of the APEX files (or a link to it): exit 2, one line, nothing written."""
    import os

    param = apex_dir / "param_props.json"
    out = {"same": param, "symlink": apex_dir / "sym.json", "hardlink": apex_dir / "hard.json"}[link]
    if link == "symlink":
        out.symlink_to(param)
    elif link == "hardlink":
        os.link(param, out)
    before = param.read_bytes()
    code = main(["alloy", "import-apex", str(apex_dir / "param_relax.json"), str(param),
                 "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"-o/--output {out} " in err[0] and f"the input {param}: refusing" in err[0]
    assert param.read_bytes() == before


def test_a_vasp_interaction_becomes_opshelf_fps_vasp_engine(apex_dir: Path) -> None:
    """APEX's vasp interaction (apex/core/calculator/VASP.py): the INCAR as is, k-points from
    its KSPACING (KGAMMA: Gamma-centred), POTCARs at potcar_prefix/potcars[element]."""
    (apex_dir / "vasp_input").mkdir()
    (apex_dir / "vasp_input" / "INCAR").write_text("ENCUT = 520\nKSPACING = 0.2\n"
                                                   "KGAMMA = .TRUE.  ! comment\n")
    for element in ("Al", "Cu"):
        (apex_dir / "pp" / element).mkdir(parents=True)
        (apex_dir / "pp" / element / "POTCAR").write_text(f"PAW_PBE {element}\n")
    vasp = dict(PROPS, properties=PROPS["properties"][:1],
                interaction={"type": "vasp", "incar": "vasp_input/INCAR",
                             "potcar_prefix": "pp",
                             "potcars": {"Al": "Al/POTCAR", "Cu": "Cu/POTCAR"}})
    (apex_dir / "vasp.json").write_text(json.dumps(vasp))
    config, _ = import_apex([apex_dir / "vasp.json"], apex_dir / "out")
    validate_into(AlloyConfig, config)
    (inter,) = config["interactions"]
    assert inter["engine"] == {"name": "vasp", "settings": {
        "incar_file": str(apex_dir / "vasp_input" / "INCAR"), "kspacing_per_A": 0.2,
        "gamma_centered": True, "potcar_dir": str(apex_dir / "pp")}}
    # the mapped engine writing a task (opshelf-fp, not in this package's venv):
    # tests/test_import_apex_vasp.py
    # per-element files not laid out as a library: one line naming the key
    vasp["interaction"]["potcars"] = {"Al": "Al/POTCAR", "Cu": "Cu/POTCAR.cu"}
    (apex_dir / "pp" / "Cu" / "POTCAR.cu").write_text("PAW_PBE Cu\n")
    (apex_dir / "vasp.json").write_text(json.dumps(vasp))
    with pytest.raises(ConfigError, match="interaction.potcars: opshelf-fp reads"):
        import_apex([apex_dir / "vasp.json"], apex_dir / "out")


def _abacus_files(apex_dir: Path, input_text: str) -> dict:
    """An APEX abacus interaction (apex/core/calculator/ABACUS.py) with its files: the INPUT,
    pseudopotentials and orbitals under potcar_prefix; a STRU beside the POSCAR of std-fcc."""
    import dpdata

    (apex_dir / "abacus").mkdir()
    (apex_dir / "abacus" / "INPUT").write_text(input_text)
    for name in ("Al.upf", "Cu.upf", "Al.orb", "Cu.orb"):
        (apex_dir / "abacus" / name).write_text("placeholder\n")
    stru = bulk("Al", "fcc", a=4.04, cubic=True)
    dpdata.System(stru, fmt="ase/structure").to("abacus/stru", str(apex_dir / "confs" / "std-fcc"
                                                                   / "STRU"))
    return {"type": "abacus", "incar": "abacus/INPUT", "potcar_prefix": "abacus",
            "potcars": {"Al": "Al.upf", "Cu": "Cu.upf"},
            "orb_files": {"Al": "Al.orb", "Cu": "Cu.orb"}, "atom_masses": {"Al": 27.0}}


def test_an_abacus_interaction_becomes_opshelf_fps_abacus_engine(apex_dir: Path) -> None:
    """APEX's abacus interaction: the INPUT's keywords (typed where opshelf-fp types them,
    the rest as given; the per-task ones left to the engine as APEX sets them per task), the
    pseudopotential and orbital folders, kspacing kept for ABACUS to make its mesh, a STRU
    read before the POSCAR."""
    inter = _abacus_files(apex_dir, "INPUT_PARAMETERS  # ABACUS\nbasis_type lcao\n"
                          "ecutwfc 80 # Ry\nscf_thr 1e-8\nsmearing_method mp\n"
                          "smearing_sigma 0.015\nkspacing 0.1\ncalculation scf\n"
                          "// a comment\nmixing_beta 0.4\nmixing_beta 0.3\n")
    joint = dict(PROPS, interaction=inter, relaxation={"cal_setting": {
        "relax_pos": True, "relax_shape": True, "relax_vol": True}},
        properties=PROPS["properties"][:1])
    (apex_dir / "abacus.json").write_text(json.dumps(joint))
    config, notes = import_apex([apex_dir / "abacus.json"], apex_dir / "out")
    validate_into(AlloyConfig, config)
    (interaction,) = config["interactions"]
    lib = str(apex_dir / "abacus")
    assert interaction == {"name": "abacus", "engine": {"name": "abacus", "settings": {
        "pseudo_dir": lib, "pseudopotentials": {"Al": "Al.upf", "Cu": "Cu.upf"},
        "orbital_dir": lib, "orbitals": {"Al": "Al.orb", "Cu": "Cu.orb"},
        "basis_type": "lcao", "ecutwfc_Ry": 80.0, "scf_thr": 1e-8, "scf_nmax": 100,
        "extra": {"smearing_method": "mp", "smearing_sigma": "0.015", "kspacing": "0.1",
                  "mixing_beta": "0.3"}}}}  # ABACUS keeps the last of a repeated keyword
    assert config["structures"][0] == {"name": "std-fcc", "file": "../confs/std-fcc/STRU",
                                       "format": "abacus/stru"}
    assert config["relax"]["relax_cell"] and not config["relax"]["relax_volume_only"]
    assert any("atom_masses" in n for n in notes)


def test_abacus_k_points_and_inputs_per_task_as_apex_reads_them(apex_dir: Path) -> None:
    """No kspacing: every task's cal_setting K_POINTS (APEX stops without one), one mesh for
    all; a property's input_prop other than the interaction's INPUT is refused; ABACUS's own
    defaults (pw: ecutwfc 50 Ry, scf_thr 1e-9) where the INPUT is silent; DeePKS refused."""
    inter = _abacus_files(apex_dir, "INPUT_PARAMETERS\n")
    del inter["orb_files"]
    mesh = {"K_POINTS": [4, 4, 4, 0, 0, 0]}
    joint = dict(PROPS, interaction=inter, relaxation={"cal_setting": dict(mesh)},
                 properties=[dict(PROPS["properties"][0], cal_setting=dict(mesh))])
    (apex_dir / "abacus.json").write_text(json.dumps(joint))
    config, notes = import_apex([apex_dir / "abacus.json"], apex_dir)
    settings = config["interactions"][0]["engine"]["settings"]
    assert (settings["kpoints"], settings["basis_type"]) == ([4, 4, 4], "pw")
    assert (settings["ecutwfc_Ry"], settings["scf_thr"]) == (50.0, 1e-9)
    assert not any("K_POINTS" in n for n in notes)
    for change, match in (
            ({"properties": [PROPS["properties"][0]]}, r"no K_POINTS in properties\[0\]"),
            ({"properties": [dict(PROPS["properties"][0], cal_setting={
                "K_POINTS": [6, 6, 6, 0, 0, 0]})]}, r"K_POINTS: \[\[4, 4, 4, 0, 0, 0\], \[6"),
            ({"properties": [dict(PROPS["properties"][0], cal_setting={
                **mesh, "input_prop": "abacus/INPUT_other"})]}, r"input_prop: .* is not "),
            ({"interaction": {**inter, "deepks_desc": "jle.orb"}}, "deepks_desc: not a key")):
        (apex_dir / "bad.json").write_text(json.dumps({**joint, **change}))
        with pytest.raises(ConfigError, match=match):
            import_apex([apex_dir / "bad.json"], apex_dir)
