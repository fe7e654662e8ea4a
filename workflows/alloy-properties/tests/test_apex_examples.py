"""`opshelf alloy import-apex` on APEX's own example parameter files (tests/data/apex-examples,
copied from github.com/deepmodeling/APEX examples/, MIT; see PROVENANCE.md there).

Each file is converted as a user would: the file in its own folder with the structures and
the model/potential files it names (made here: POSCARs by ASE, empty model files, because
the importer only resolves and checks them), written to a config in another folder. What
each should give is read from the APEX file by hand: the EOS volumes are APEX 1.2.8's
(`while vol_start + vol_step * n <= vol_end`, apex/core/property/EOS.py), a file whose only
property opshelf lacks is refused, and so is a file that is not JSON.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from ase.build import bulk

from opshelf.core.cli import main

DATA = Path(__file__).parent / "data" / "apex-examples"
EXAMPLES = sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.json"))

#: APEX EOS 0.6..1.4 (relative volumes) by 0.05, 0.1 and 0.4: vol_end included (1.2.8)
EOS_005 = {"type": "eos", "volume_ratio_min": 0.6, "volume_ratio_max": 1.4, "n_points": 17}
EOS_01 = dict(EOS_005, n_points=9)
#: 0.6..1.4 by 0.4 is 3 volumes in APEX; opshelf-props fits an EOS to 5 or more: refused
EOS_04 = "eos: vol_start 0.6, vol_end 1.4, vol_step 0.4 give 3 volume(s)"
ELASTIC = {"type": "elastic", "normal_strain": 0.01, "shear_strain": 0.01, "fmax_eV_per_A": 1e-10}
#: file -> the opshelf properties it converts to, or the text of its exit-2 refusal
EXPECTED: dict[str, list[dict] | str] = {
    # APEX's ABACUS demo: the relaxation then EOS 0.6..1.4 by 0.05 (the rest skipped)
    "abacus_demo/param_joint.json": [EOS_005],
    # its phonon alone, k-points from the phonon's cal_setting K_POINTS [6, 6, 6, 0, 0, 0]
    "abacus_demo/param_props.json": [{"type": "phonon", "supercell": [1, 1, 1]}],
    "annealing/param_joint.json": "properties[0] (annealing): no such property",
    "gamma/param_props_gammaline.json": [{"type": "stacking_fault", "slip_system": "bcc_110_111",
                                          "n_points": 20}],
    # plane (110) of bcc Mo, 20 x 20 shifts
    "gamma/param_props_gammasurface.json": [{"type": "gamma_surface", "slip_system":
                                             "bcc_110_111", "n_points_x": 20,
                                             "n_points_y": 20}],
    "lammps/finite_t_elastic_fcc_Al/param_joint.json":
        "properties[0] (finite_t_elastic): no such property",
    "lammps/lammps_tutorial1_quick_start/lammps_example1.1_Mo/param_joint.json":
        "param_joint.json",  # no opening brace: not JSON
    "lammps/lammps_tutorial2_submission_methods/lammps_example2.1_bohrium/param_props.json":
        [EOS_01, ELASTIC],
    "lammps/lammps_tutorial2_submission_methods/lammps_example2.2_local/param_joint.json":
        [ELASTIC],
    "lammps/lammps_tutorial2_submission_methods/lammps_example2.2_local/param_props.json":
        [ELASTIC],
    "lammps/lammps_tutorial2_submission_methods/lammps_example2.3_debug/param_joint.json":
        "param_joint.json",  # no comma after "relaxation": not JSON
    "lammps/lammps_tutorial2_submission_methods/lammps_example2.3_slurm/param_props.json":
        EOS_04,
    "lammps/lammps_tutorial3_potentials_and_properties/lammps_example3.1_potentials_and_"
    "properties/param_props_meam.json": EOS_04,
    "lammps/lammps_tutorial3_potentials_and_properties/lammps_example3.2_properties/"
    "param_props.json": EOS_04,
    "lammps_demo/param_joint.json": [EOS_005, {"type": "phonon", "supercell": [4, 4, 4]}],
    "lammps_demo/param_props.json": [EOS_01, ELASTIC],
    "rss/HEA/param_joint.json": [EOS_005, ELASTIC],
}
#: the structure folders each APEX `structures` pattern is given here (a glob gets one)
CONF = {"confs/std-*": "confs/std-x", "confs/*": "confs/x", "RSS_HEA/conf_*": "RSS_HEA/conf_0"}


#: the ABACUS INPUT files made for APEX's abacus_demo (APEX's own are not in its repository
#: snapshot copied here): INPUT with kspacing (1/Bohr), INPUT_phonon without (K_POINTS used)
ABACUS_INPUTS = {"INPUT": "INPUT_PARAMETERS\nbasis_type lcao\necutwfc 100\nscf_thr 1e-7\n"
                          "smearing_method mp\nsmearing_sigma 0.015\nkspacing 0.1\n",
                 "INPUT_phonon": "INPUT_PARAMETERS\nbasis_type lcao\necutwfc 100\n"
                                 "scf_thr 1e-8\n"}


def _abacus_inputs_beside(param: Path, data: dict) -> None:
    """APEX's abacus_demo folder: its STRU (copied) and the INPUT, pseudopotential and
    orbital files its interaction names (made here)."""
    shutil.copytree(DATA / "abacus_demo" / "confs", param.parent / "confs", dirs_exist_ok=True)
    prefix = param.parent / data["interaction"]["potcar_prefix"]
    prefix.mkdir(exist_ok=True)
    for name, text in ABACUS_INPUTS.items():
        (prefix / name).write_text(text)
    for files in (data["interaction"]["potcars"], data["interaction"]["orb_files"]):
        for name in files.values():
            (prefix / name).write_text("placeholder: import-apex only checks it exists\n")


def _inputs_beside(param: Path) -> None:
    """Structures and the model files `param` names, in its folder."""
    import json

    data = json.loads(param.read_text())
    if data["interaction"]["type"] == "abacus":
        _abacus_inputs_beside(param, data)
        return
    elements = list(data["interaction"]["type_map"])
    atoms = bulk(elements[0], "bcc" if elements[0] == "Mo" else "fcc", a=3.16 if
                 elements[0] == "Mo" else 4.05, cubic=True)
    atoms.set_chemical_symbols([elements[i % len(elements)] for i in range(len(atoms))])
    for pattern in data["structures"]:
        folder = param.parent / CONF.get(pattern, pattern)
        folder.mkdir(parents=True, exist_ok=True)
        atoms.write(folder / "POSCAR", format="vasp")
    models = data["interaction"]["model"]
    for name in [models] if isinstance(models, str) else models:
        (param.parent / name).write_text("placeholder: import-apex only checks it exists\n")


def test_every_copied_example_has_an_expectation() -> None:
    assert sorted(EXPECTED) == EXAMPLES and len(EXAMPLES) == 17


@pytest.mark.parametrize("name", EXAMPLES)
def test_apex_example(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    param = tmp_path / "apex" / name
    param.parent.mkdir(parents=True)
    shutil.copy(DATA / name, param)
    expected = EXPECTED[name]
    if not isinstance(expected, str) or "param_" not in expected:
        _inputs_beside(param)
    out = tmp_path / "elsewhere" / "alloy.yaml"
    out.parent.mkdir()
    code = main(["alloy", "import-apex", str(param), "-o", str(out)])
    err = capsys.readouterr().err
    if isinstance(expected, str):
        errors = [line for line in err.splitlines() if line.startswith("opshelf: error:")]
        assert code == 2 and len(errors) == 1 and expected in errors[0], err
        assert not out.exists()
        return
    assert code == 0, err
    config = yaml.safe_load(out.read_text())
    assert config["properties"] == expected
    interaction = config["interactions"][0]
    folder = param.parent.resolve()
    if "engine" in interaction:  # abacus: absolute paths under potcar_prefix
        settings = interaction["engine"]["settings"]
        files = [str(Path(settings[d]) / f) for d, names in (
            ("pseudo_dir", settings["pseudopotentials"]), ("orbital_dir", settings["orbitals"]))
            for f in names.values()]
        folder = folder / "abacus_input"
    else:
        files = [interaction["deepmd"]] if "deepmd" in interaction else [
            v for k, v in interaction["lammps"]["potential"].items() if k != "style"]
    for file in files:  # resolved against the APEX file's folder, written relative to -o's
        assert (out.parent / file).resolve().parent == folder, file
    for structure in config["structures"]:
        assert (out.parent / structure["file"]).is_file()


def test_apex_version_decides_the_eos_end(tmp_path: Path) -> None:
    """APEX before 1.2.8 looped `< vol_end`: 0.6 + 8 * 0.1 = 1.4000000000000001 is left out."""
    name = ("lammps/lammps_tutorial2_submission_methods/lammps_example2.1_bohrium/"
            "param_props.json")
    param = tmp_path / "param_props.json"
    shutil.copy(DATA / name, param)
    _inputs_beside(param)
    for version, n_points, last in (("1.2.8", 9, 1.4), ("1.2.7", 8, 1.3)):
        out = tmp_path / f"{version}.yaml"
        assert main(["alloy", "import-apex", str(param), "--apex-version", version,
                     "-o", str(out)]) == 0
        eos = yaml.safe_load(out.read_text())["properties"][0]
        assert eos["n_points"] == n_points
        assert eos["volume_ratio_max"] == pytest.approx(last, abs=1e-12)
    assert main(["alloy", "import-apex", str(param), "--apex-version", "latest"]) == 2


def test_a_missing_model_file_is_refused_naming_it(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    name = "lammps_demo/param_props.json"
    param = tmp_path / "apex" / "param_props.json"
    param.parent.mkdir()
    shutil.copy(DATA / name, param)
    _inputs_beside(param)
    (param.parent / "frozen_model.pb").unlink()
    assert main(["alloy", "import-apex", str(param), "-o", str(tmp_path / "a.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "interaction.model: 'frozen_model.pb' not found" in err
    assert str(param.parent / "frozen_model.pb") in err


def test_a_converted_example_computes_its_properties_with_emt_substituted(
        tmp_path: Path) -> None:
    """APEX's lammps_example2.1 (Al, EOS 0.6..1.4 by 0.1 and elastic) converted, its EAM
    interaction replaced by EMT (no LAMMPS or potential file needed), run end to end in local
    mode: both properties, the EOS over APEX 1.2.8's 9 volumes from 0.6 to 1.4 x V0.
    (Measured: ~60 s at load ~5 on 2 shared cores.)"""
    import json

    name = ("lammps/lammps_tutorial2_submission_methods/lammps_example2.1_bohrium/"
            "param_props.json")
    param = tmp_path / "apex" / "param_props.json"
    param.parent.mkdir()
    shutil.copy(DATA / name, param)
    _inputs_beside(param)
    config_file = tmp_path / "alloy.yaml"
    assert main(["alloy", "import-apex", str(param), "-o", str(config_file)]) == 0
    config = yaml.safe_load(config_file.read_text())
    config["interactions"] = [{"name": "emt", "calculator": "emt"}]
    config_file.write_text(yaml.safe_dump(config))
    assert main(["run", "alloy", str(config_file), "--runs-dir", str(tmp_path / "runs"),
                 "--name", "apex", "--no-progress"]) == 0
    results = json.loads((tmp_path / "runs" / "apex" / "results" / "results.json").read_text())
    computed = results["results"]["std-x"]["emt"]
    volumes = computed["eos"]["volumes_A3_per_atom"]
    assert len(volumes) == 9
    # the relaxed volume is inside the scan; its ends are 0.6 and 1.4 x it (1e-6 relative)
    v0 = computed["eos"]["v0_A3_per_atom"]
    assert volumes[0] < v0 < volumes[-1]
    assert volumes[-1] / volumes[0] == pytest.approx(1.4 / 0.6, rel=1e-6)
    assert computed["elastic"]["c11_GPa"] > computed["elastic"]["c12_GPa"] > 0


#: the examples that convert, run: APEX's own elements where EMT has them, else an EMT metal
#: in the same lattice (the structures are made by these tests anyway, not APEX's)
EMT_ELEMENTS = {"Al": "Al", "Mo": "Cu", "Co": "Cu", "Cr": "Ni", "Fe": "Pd", "Mn": "Ag",
                "Ni": "Au"}
#: lammps_example2.1 runs in test_a_converted_example_computes_its_properties_with_emt_...
RUN_BELOW = ("lammps/lammps_tutorial2_submission_methods/lammps_example2.1_bohrium/"
             "param_props.json")
RUNNABLE = sorted(name for name, expected in EXPECTED.items()
                  if isinstance(expected, list) and name != RUN_BELOW)


def _emt_structure(path: Path, fmt: str | None) -> None:
    """The structure file rewritten with EMT's elements, the lattice kept (bcc Mo becomes bcc
    Cu at EMT's bcc volume, a = 2.87 A; fcc cells are scaled to a = 3.9 A)."""
    import ase.io
    import dpdata

    if fmt == "abacus/stru":  # APEX's fcc Al STRU: EMT has Al
        return
    atoms = ase.io.read(path)
    symbols = [EMT_ELEMENTS[s] for s in atoms.get_chemical_symbols()]
    bcc = len(atoms) == 2
    atoms.set_cell(atoms.cell * ((2.87 if bcc else 3.9) / atoms.cell.lengths()[0]),
                   scale_atoms=True)
    atoms.set_chemical_symbols(symbols)
    dpdata.System(atoms, fmt="ase/structure").to("vasp/poscar", str(path))


def _capped(config: dict) -> dict:
    """EMT for the interaction; phonon supercells 2x2x2, GSFE lines of 5 points and 3x3
    surfaces, relaxations to 1e-4 eV/A in 300 steps (APEX's examples ask 1e-10 of a
    DeePMD model; EMT's forces are noise below ~1e-6): everything else as converted."""
    config["interactions"] = [{"name": "emt", "calculator": "emt"}]
    config["relax"] = {**config["relax"], "max_steps": 300,
                       "fmax_eV_per_A": max(config["relax"].get("fmax_eV_per_A", 1e-4), 1e-4)}
    caps = {"phonon": {"supercell": [2, 2, 2]}, "stacking_fault": {"n_points": 5},
            "gamma_surface": {"n_points_x": 3, "n_points_y": 3}}
    for prop in config["properties"]:
        prop.update(caps.get(prop["type"], {}))
        if "fmax_eV_per_A" in prop:
            prop["fmax_eV_per_A"] = max(prop["fmax_eV_per_A"], 1e-4)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNABLE)
def test_every_converted_example_computes_its_properties_with_emt(name: str,
                                                                  tmp_path: Path) -> None:
    """Each APEX example that converts, its interaction replaced by EMT (a DFT or DeePMD
    engine is not here) and capped (see _capped), run end to end in local mode: every
    property it converted to has a finite result for every structure, with no failure."""
    import json
    import math

    param = tmp_path / "apex" / name
    param.parent.mkdir(parents=True)
    shutil.copy(DATA / name, param)
    _inputs_beside(param)
    config_file = tmp_path / "alloy.yaml"
    assert main(["alloy", "import-apex", str(param), "-o", str(config_file)]) == 0
    config = yaml.safe_load(config_file.read_text())
    for structure in config["structures"]:
        _emt_structure(tmp_path / structure["file"], structure.get("format"))
    config_file.write_text(yaml.safe_dump(_capped(config)))
    assert main(["run", "alloy", str(config_file), "--runs-dir", str(tmp_path / "runs"),
                 "--name", "apex", "--no-progress"]) == 0
    results = json.loads((tmp_path / "runs" / "apex" / "results" / "results.json").read_text())
    assert results["failures"] == []
    blocks = {p["type"].replace("_", "-") for p in config["properties"]}
    for structure in config["structures"]:
        computed = results["results"][structure["name"]]["emt"]
        assert blocks | {"relax"} == set(computed), computed.keys()
        numbers = [v for block in computed.values() for v in _numbers(block)]
        assert numbers and all(math.isfinite(v) for v in numbers)
    if "eos" in blocks:  # the relaxed volume inside APEX's scan (0.6 .. 1.4 x V0)
        eos = computed["eos"]
        assert eos["volumes_A3_per_atom"][0] < eos["v0_A3_per_atom"] < \
            eos["volumes_A3_per_atom"][-1]


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []
