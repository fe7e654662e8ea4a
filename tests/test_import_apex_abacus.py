"""APEX's abacus interaction, converted by `opshelf alloy import-apex`, drives opshelf-fp's
abacus engine: the mapped engine writes a task's INPUT (the user's keywords, kspacing kept so
ABACUS makes its mesh as in APEX's run), STRU (the user's pseudopotential and orbital files)
and KPT. Here, not in alloy's own tests: alloy's venv holds core, props and alloy only. No
ABACUS run: abacus is not installed on the machines these tests run on (checked with
`which abacus`); opshelf-fp's own tests replay recorded ABACUS outputs."""

from __future__ import annotations

import json
from pathlib import Path

import dpdata
from ase.build import bulk

from opshelf.alloy.apex import import_apex
from opshelf.core.engine import Task, load_engine, write_task

PARAM = {"structures": ["confs/std-fcc"],
         "interaction": {"type": "abacus", "incar": "abacus_input/INPUT",
                         "potcar_prefix": "abacus_input", "potcars": {"Al": "Al_ONCV.upf"},
                         "orb_files": {"Al": "Al_gga_9au.orb"}},
         "relaxation": {"cal_setting": {"relax_pos": True, "relax_shape": True,
                                        "relax_vol": True}},
         "properties": [{"type": "eos", "vol_start": 0.9, "vol_end": 1.1, "vol_step": 0.02}]}


def test_the_mapped_abacus_engine_writes_the_users_input_stru_and_kpt(tmp_path: Path) -> None:
    (tmp_path / "confs" / "std-fcc").mkdir(parents=True)
    dpdata.System(bulk("Al", "fcc", a=4.04, cubic=True), fmt="ase/structure").to(
        "abacus/stru", str(tmp_path / "confs" / "std-fcc" / "STRU"))
    (tmp_path / "abacus_input").mkdir()
    (tmp_path / "abacus_input" / "INPUT").write_text(
        "INPUT_PARAMETERS\nbasis_type lcao\necutwfc 100\nscf_thr 1e-7\nkspacing 0.12\n"
        "mixing_beta 0.4\ncalculation scf\n")
    for name in ("Al_ONCV.upf", "Al_gga_9au.orb"):
        (tmp_path / "abacus_input" / name).write_text("placeholder\n")
    (tmp_path / "param.json").write_text(json.dumps(PARAM))
    config, _ = import_apex([tmp_path / "param.json"], tmp_path / "out")
    (inter,) = config["interactions"]
    frame = dpdata.System(str(tmp_path / "confs" / "std-fcc" / "STRU"), fmt="abacus/stru")
    write_task(tmp_path / "task", frame, Task(), load_engine(inter["engine"]))
    words = dict(line.split(maxsplit=1) for line in
                 (tmp_path / "task" / "INPUT").read_text().splitlines()[1:])
    assert (words["basis_type"], words["ecutwfc"], words["kspacing"]) == ("lcao", "100.0",
                                                                         "0.12")
    assert (words["mixing_beta"], words["calculation"]) == ("0.4", "scf")
    assert words["pseudo_dir"] == str(tmp_path / "abacus_input")
    stru = (tmp_path / "task" / "STRU").read_text()
    assert "Al_ONCV.upf" in stru and "Al_gga_9au.orb" in stru
    assert (tmp_path / "task" / "KPT").is_file()
