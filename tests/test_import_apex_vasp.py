"""APEX's vasp interaction, converted by `opshelf alloy import-apex`, drives opshelf-fp's vasp
engine: the mapped engine writes a task's INCAR and POTCAR from the user's files. Here, not in
alloy's own tests: alloy's venv holds core, props and alloy only (opshelf-fp provides the
engine through its entry point)."""

from __future__ import annotations

import json
from pathlib import Path

import dpdata
from ase.build import bulk

from opshelf.alloy.apex import import_apex
from opshelf.core.engine import Task, load_engine, write_task

PROPS = {"structures": ["confs/std-fcc"],
         "interaction": {"type": "vasp", "incar": "vasp_input/INCAR", "potcar_prefix": "pp",
                         "potcars": {"Al": "Al/POTCAR", "Cu": "Cu/POTCAR"}},
         "properties": [{"type": "eos", "vol_start": 0.9, "vol_end": 1.1, "vol_step": 0.02}]}


def test_the_mapped_vasp_engine_writes_the_users_incar_and_potcar(tmp_path: Path) -> None:
    (tmp_path / "confs" / "std-fcc").mkdir(parents=True)
    bulk("Al", "fcc", a=4.05, cubic=True).write(tmp_path / "confs" / "std-fcc" / "POSCAR",
                                                format="vasp")
    (tmp_path / "vasp_input").mkdir()
    (tmp_path / "vasp_input" / "INCAR").write_text("ENCUT = 520\nKSPACING = 0.2\n"
                                                  "KGAMMA = .TRUE.  ! comment\n")
    for element in ("Al", "Cu"):
        (tmp_path / "pp" / element).mkdir(parents=True)
        (tmp_path / "pp" / element / "POTCAR").write_text(f"PAW_PBE {element}\n")
    (tmp_path / "vasp.json").write_text(json.dumps(PROPS))
    config, _ = import_apex([tmp_path / "vasp.json"], tmp_path / "out")
    (inter,) = config["interactions"]
    frame = dpdata.System(bulk("Al", "fcc", a=4.05, cubic=True), fmt="ase/structure")
    write_task(tmp_path / "task", frame, Task(), load_engine(inter["engine"]))
    assert (tmp_path / "task" / "POTCAR").read_text() == "PAW_PBE Al\n"
    assert "ENCUT = 520" in (tmp_path / "task" / "INCAR").read_text()
