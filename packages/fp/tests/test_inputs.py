"""Input files each engine writes for a small fixed frame, regression-tested byte for byte
(pytest-regressions file_regression; regenerate with --force-regen after a deliberate change
and review the diff). Machine-dependent paths are replaced by placeholders first."""

from __future__ import annotations

from pathlib import Path

import dpdata
import numpy as np
import pytest
from fp_test_helpers import require_data, si2_frame

from opshelf.core.engine import RelaxOptions, Task, TaskKind
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.fp.abacus import AbacusEngine
from opshelf.fp.cp2k import Cp2kEngine
from opshelf.fp.gaussian import GaussianEngine
from opshelf.fp.qe import QeEngine
from opshelf.fp.vasp import VaspEngine

RELAX_CELL = Task(
    kind=TaskKind.RELAX, relax=RelaxOptions(relax_cell=True, pressure_GPa=1.0, max_steps=50)
)


def tio_frame() -> dpdata.System:
    """3 atoms, triclinic cell, types not grouped (O, Ti, O) to exercise atom ordering."""
    return dpdata.System(
        data={
            "atom_names": ["Ti", "O"],
            "atom_numbs": [1, 2],
            "atom_types": np.array([1, 0, 1]),
            "cells": np.array([[[4.6, 0.0, 0.0], [0.3, 4.5, 0.0], [0.0, 0.2, 3.0]]]),
            "coords": np.array([[[1.4, 1.4, 0.0], [0.0, 0.0, 0.0], [3.2, 3.2, 0.0]]]),
            "orig": np.zeros(3),
            "nopbc": False,
        }
    )


def methane_frame() -> dpdata.System:
    return dpdata.System(
        data={
            "atom_names": ["C", "H"],
            "atom_numbs": [1, 4],
            "atom_types": np.array([0, 1, 1, 1, 1]),
            "cells": np.zeros((1, 3, 3)),
            "coords": np.array(
                [
                    [
                        [0.0, 0.0, 0.0],
                        [0.63, 0.63, 0.63],
                        [-0.63, -0.63, 0.63],
                        [-0.63, 0.63, -0.63],
                        [0.63, -0.63, -0.63],
                    ]
                ]
            ),
            "orig": np.zeros(3),
            "nopbc": True,
        }
    )


def potcar_library(root: Path) -> Path:
    """A POTCAR library laid out like VASP's (<name>/POTCAR). The real ones are licensed
    and not here; each file's text only identifies it, which is all assembly needs."""
    for name in ("Ti_sv", "O"):
        (root / name).mkdir(parents=True)
        (root / name / "POTCAR").write_text(
            f"  PAW_PBE {name} (test library entry)\n End of Dataset\n"
        )
    return root


def test_vasp_inputs(tmp_path: Path, file_regression) -> None:
    lib = potcar_library(tmp_path / "potpaw_PBE")
    engine = VaspEngine(
        {
            "incar": {"ENCUT": 520, "ISMEAR": 0, "SIGMA": 0.05, "LREAL": False},
            "potcar_dir": str(lib),
            "potcar_variants": {"Ti": "Ti_sv"},
            "kspacing_per_A": 0.5,
        }
    )
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    engine.write_inputs(tio_frame(), RELAX_CELL, task_dir)
    text = "".join(
        f"=== {name}\n{(task_dir / name).read_text()}"
        for name in ("INCAR", "KPOINTS", "POSCAR", "POTCAR")
    )
    file_regression.check(text, extension=".txt")


def test_vasp_missing_potcar_names_element(tmp_path: Path) -> None:
    engine = VaspEngine(
        {"potcar_dir": str(potcar_library(tmp_path / "lib"))}
    )  # no Ti_sv variant set
    with pytest.raises(MissingInputError, match=r"element 'Ti'.*lib/Ti/POTCAR"):
        engine.check(["Ti", "O"], Task())


def test_vasp_incar_file_then_dict(tmp_path: Path) -> None:
    (tmp_path / "INCAR").write_text("ENCUT = 400 ! cutoff\nISMEAR = 1; SIGMA = 0.2\n")
    engine = VaspEngine(
        {
            "incar_file": str(tmp_path / "INCAR"),
            "incar": {"encut": 600},
            "potcar_dir": str(tmp_path),
        }
    )
    tags = engine.incar_tags(Task())
    assert (tags["ENCUT"], tags["ISMEAR"], tags["SIGMA"], tags["NSW"], tags["ISIF"]) == (
        600,
        "1",
        "0.2",
        0,
        2,
    )


def test_abacus_inputs(tmp_path: Path, file_regression) -> None:
    pseudo = tmp_path / "pp"
    pseudo.mkdir()
    for name in ("Ti.upf", "O.upf"):
        (pseudo / name).write_text("<UPF/>\n")
    engine = AbacusEngine(
        {
            "pseudopotentials": {"Ti": "Ti.upf", "O": "O.upf"},
            "pseudo_dir": str(pseudo),
            "ecutwfc_Ry": 60,
            "kpoints": [3, 3, 4],
            "smearing_method": "gaussian",
        }
    )
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    engine.write_inputs(tio_frame(), Task(), task_dir)
    text = "".join(
        f"=== {name}\n{(task_dir / name).read_text()}" for name in ("INPUT", "STRU", "KPT")
    )
    file_regression.check(text.replace(str(pseudo), "<PSEUDO_DIR>"), extension=".txt")
    # dpdata's STRU writer groups atoms by type; reading it back gives the same atoms.
    back = dpdata.System(str(task_dir / "STRU"), fmt="abacus/stru")
    assert sorted(back["atom_types"].tolist()) == sorted(tio_frame()["atom_types"].tolist())


def test_abacus_missing_pseudopotential_names_element(tmp_path: Path) -> None:
    engine = AbacusEngine({"pseudopotentials": {"Ti": "Ti.upf"}, "pseudo_dir": str(tmp_path)})
    with pytest.raises(MissingInputError, match="element 'O'"):
        engine._files_for("O")
    with pytest.raises(MissingInputError, match=r"element 'Ti'.*Ti.upf"):
        engine.check(["Ti"], Task())


def test_gaussian_inputs(tmp_path: Path, file_regression) -> None:
    engine = GaussianEngine(
        {"keywords": "b3lyp/6-31g**", "charge": 0, "multiplicity": 1, "nproc": 2}
    )
    engine.write_inputs(methane_frame(), Task(), tmp_path)
    file_regression.check((tmp_path / "input.gjf").read_text(), extension=".gjf")
    relax = Task(kind=TaskKind.RELAX, relax=RelaxOptions(max_steps=30))
    assert engine.route(relax).split()[:2] == ["force", "opt(maxcycles=30)"]


def test_cp2k_input(tmp_path: Path, file_regression) -> None:
    data_dir = require_data(Path("/usr/share/cp2k"), "cp2k-data")
    engine = Cp2kEngine({"cutoff_Ry": 300, "kspacing_per_A": 0.5, "smearing_K": 500})
    engine.write_inputs(si2_frame(), Task(), tmp_path)
    file_regression.check(
        (tmp_path / "input.inp").read_text().replace(str(data_dir), "<CP2K_DATA_DIR>"),
        extension=".inp",
    )


def test_cp2k_reference_cell_is_written_and_validated(tmp_path: Path) -> None:
    """cell_ref_A becomes FORCE_EVAL/SUBSYS/CELL/CELL_REF (A B C rows, Angstrom) inside the
    frame's own &CELL, also through a template's {{CELL}}; a malformed or volume-less
    reference cell is refused when the settings are read, naming the key."""
    require_data(Path("/usr/share/cp2k"), "cp2k-data")
    reference = [[0.0, 2.8, 2.8], [2.8, 0.0, 2.8], [2.8, 2.8, 0.0]]
    engine = Cp2kEngine({"cell_ref_A": reference})
    engine.write_inputs(si2_frame(), Task(), tmp_path)
    text = (tmp_path / "input.inp").read_text()
    cell = text[text.index("    &CELL\n") : text.index("    &END CELL\n")]
    assert "      A 0.0000000000 2.7150000000 2.7150000000\n" in cell  # the frame's own cell
    assert (
        "      &CELL_REF\n        A 0.0000000000 2.8000000000 2.8000000000\n"
        "        B 2.8000000000 0.0000000000 2.8000000000\n"
        "        C 2.8000000000 2.8000000000 0.0000000000\n      &END CELL_REF\n"
    ) in cell
    assert cell.index("&END CELL_REF") < cell.index("PERIODIC XYZ")
    # without the option no CELL_REF (the regression file above pins the rest)
    Cp2kEngine({}).write_inputs(si2_frame(), Task(), tmp_path)
    assert "CELL_REF" not in (tmp_path / "input.inp").read_text()
    for bad, words in (
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "3 rows of 3"),
        ([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], "3 rows of 3"),
        ([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "positive"),  # flat
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]], "positive"),  # left-handed
    ):
        with pytest.raises(ConfigError, match=rf"cell_ref_A.*{words}"):
            Cp2kEngine({"cell_ref_A": bad})


def test_cp2k_basis_rule_matches_valence() -> None:
    """Cu has only the -SR- MOLOPT basis (q11) in BASIS_MOLOPT: the potential follows it."""
    require_data(Path("/usr/share/cp2k/BASIS_MOLOPT"), "cp2k-data")
    from opshelf.fp.cp2k import choose_basis_and_potential

    settings = Cp2kEngine.Settings()
    assert choose_basis_and_potential("Si", settings) == ("DZVP-MOLOPT-GTH", "GTH-PBE-q4")
    assert choose_basis_and_potential("Cu", settings) == ("DZVP-MOLOPT-SR-GTH", "GTH-PBE-q11")


def test_cp2k_template(tmp_path: Path) -> None:
    template = tmp_path / "my.inp"
    template.write_text(
        "&GLOBAL\n  RUN_TYPE ENERGY_FORCE\n&END GLOBAL\n&FORCE_EVAL\n &SUBSYS\n{{CELL}}\n{{COORD}}\n"
        "  &KIND Si\n  &END KIND\n &END SUBSYS\n&END FORCE_EVAL\n"
    )
    engine = Cp2kEngine({"template": str(template)})
    engine.write_inputs(si2_frame(), Task(), tmp_path)
    text = (tmp_path / "input.inp").read_text()
    assert "A 0.0000000000 2.7150000000 2.7150000000" in text and "Si 1.3575000000" in text
    relax = Task(kind=TaskKind.RELAX)
    with pytest.raises(ConfigError, match=r"\{\{RUN_TYPE\}\}"):
        engine.write_inputs(si2_frame(), relax, tmp_path)


def test_qe_input(tmp_path: Path, file_regression) -> None:
    require_data(Path("/usr/share/espresso/pseudo/Si.pz-vbc.UPF"), "quantum-espresso-data")
    engine = QeEngine(
        {
            "pseudopotentials": {"Si": "Si.pz-vbc.UPF"},
            "ecutwfc_Ry": 20,
            "kspacing_per_A": 0.5,
            "smearing": "mv",
        }
    )
    engine.write_inputs(si2_frame(), RELAX_CELL, tmp_path)
    assert (tmp_path / "pseudo" / "Si.pz-vbc.UPF").is_file()
    file_regression.check((tmp_path / "pw.in").read_text(), extension=".in")


def test_qe_pseudo_rule_and_gzipped_examples(tmp_path: Path) -> None:
    """Without an explicit file the first sorted '<El>.<functional>-*' UPF is used;
    gzipped UPFs (Debian's examples) are decompressed into the task dir."""
    import gzip

    lib = tmp_path / "lib"
    lib.mkdir()
    for name in (
        "Si.pbe-rrkj.UPF.gz",
        "Si.pbe-n-kjpaw.UPF.gz",
        "Si.pz-vbc.UPF.gz",
        "Sio.pbe-x.UPF",
    ):
        with gzip.open(lib / name, "wt") if name.endswith(".gz") else open(lib / name, "w") as fh:
            fh.write(f"<UPF {name}/>\n")
    engine = QeEngine({"pseudo_dirs": [str(lib)], "ecutwfc_Ry": 20})
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    engine.write_inputs(si2_frame(), Task(), task_dir)
    assert (
        task_dir / "pseudo" / "Si.pbe-n-kjpaw.UPF"
    ).read_text() == "<UPF Si.pbe-n-kjpaw.UPF.gz/>\n"
    assert "Si.pbe-n-kjpaw.UPF" in (task_dir / "pw.in").read_text()
    with pytest.raises(MissingInputError, match=r"element 'Cu'.*Cu\.pbe-"):
        engine.check(["Si", "Cu"], Task())


def test_unknown_setting_suggests_the_key() -> None:
    with pytest.raises(ConfigError, match="did you mean 'ecutwfc_Ry'"):
        QeEngine({"ecutwfc_ry": 30})
