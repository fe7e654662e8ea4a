"""Real engine outputs parse to what tests/data/engine-outputs/README.md lists.

Every expected number below is copied from the tables of that README.md (values checked there
with dpdata 1.1.0); energies are compared to 1e-6 relative. Where the engine's own
`read_results` applies to the file layout, it is exercised too (unit checks, type map,
virial)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dpdata
import numpy as np
import pytest

from opshelf.core.engine import Task
from opshelf.fp.cp2k import Cp2kEngine
from opshelf.fp.gaussian import GaussianEngine
from opshelf.fp.qe import QeEngine
from opshelf.fp.vasp import VaspEngine

REL = 1e-6  # energies: relative tolerance asked for the parser tests

# (case id, path(s) under engine-outputs, dpdata fmt, frames, atoms, {name: count},
#  has virial, first energy eV, last energy eV or None)  -- from README.md tables
# fmt: off
CASES = [
    ("vasp-scf-outcar", "vasp/scf-Ti-O-Ti-v6/OUTCAR", "vasp/outcar", 1, 8, {"Ti": 6, "O": 2}, True, -57.48343729, None),
    ("vasp-scf-xml", "vasp/scf-Ti-O-Ti-v6/vasprun.xml", "vasp/xml", 1, 8, {"Ti": 6, "O": 2}, True, -57.48343729, None),
    ("vasp-md-h2o-outcar", "vasp/md-h2o/OUTCAR.h2o.md.10", "vasp/outcar", 10, 6, {"O": 2, "H": 4}, True, -28.38622624, -28.39848822),
    ("vasp-md-h2o-xml", "vasp/md-h2o/vasprun.h2o.md.10.xml", "vasp/xml", 10, 6, {"O": 2, "H": 4}, True, -28.38622624, -28.39848822),
    ("vasp-md-ti-nwrite0-outcar", "vasp/md-Ti-nwrite0/OUTCAR", "vasp/outcar", 2, 32, {"Ti": 32}, True, -253.15557734, -252.38626263),
    ("vasp-md-ti-nwrite0-xml", "vasp/md-Ti-nwrite0/vasprun.xml", "vasp/xml", 10, 32, {"Ti": 32}, True, -253.15557734, -252.38626263),
    ("abacus-md-sn", "abacus/md-Sn", "abacus/md", 11, 64, {"Sn": 64}, True, -6162.4375373, -6162.22860931),
    ("abacus-relax-gaas", "abacus/relax-GaAs", "abacus/relax", 3, 8, {"Ga": 4, "As": 4}, True, -9144.9106309, -9144.91986454924),
    ("gaussian-sp-methane", "gaussian/sp-methane/methane.gaussianlog", "gaussian/log", 1, 5, {"C": 1, "H": 4}, False, -1102.7145898692427, None),
    ("gaussian-aimd-ch4", "gaussian/aimd-ch4/aimd_gaussian_CH4_output", "gaussian/md", 22, 5, {"C": 1, "H": 4}, False, -1102.3244271655208, -1100.7154704664724),
    ("gaussian-sp-h2-pbc", "gaussian/sp-h2-pbc/h2pbc.gaussianlog", "gaussian/log", 1, 2, {"H": 2}, False, -28.970312262937025, None),
    ("cp2k-scf-feo", "cp2k/scf-FeO/cp2k_output", "cp2k/output", 1, 30, {"Fe1": 6, "Fe2": 6, "O": 18}, True, -48061.44846401638, None),
    ("cp2k-scf-alcoho", "cp2k/scf-AlCoHO/cp2k_output_element_replace", "cp2k/output", 1, 601, {"Al": 40, "Co": 40, "H": 294, "O": 227}, True, -420369.39069353545, None),
    ("cp2k-aimd-ch4-stress", "cp2k/aimd-ch4-stress", "cp2k/aimd_output", 1, 5, {"H": 4, "C": 1}, True, -219.65547237786944, None),
    ("qe-scf-ch4", ["qe/scf-ch4/01.in", "qe/scf-ch4/01.out"], "qe/pw/scf", 1, 5, {"H": 4, "C": 1}, True, -219.74426130639802, None),
    ("qe-scf-al", ["qe/scf-Al/Al.in", "qe/scf-Al/Al.out"], "qe/pw/scf", 1, 4, {"Al": 4}, True, -296.0837931375058, None),
    ("qe-scf-ch4-v71", ["qe/scf-ch4-v71/03.in", "qe/scf-ch4-v71/03.out"], "qe/pw/scf", 1, 5, {"H": 4, "C": 1}, False, -219.71537097762067, None),
]
# fmt: on


def counts(system: dpdata.System) -> dict[str, int]:
    return {n: int(c) for n, c in zip(system["atom_names"], system["atom_numbs"]) if c > 0}


@pytest.mark.parametrize(
    "case,rel,fmt,frames,atoms,names,virial,first,last", CASES, ids=[c[0] for c in CASES]
)
def test_output_parses_as_listed(
    engine_outputs: Path,
    case: str,
    rel: str | list[str],
    fmt: str,
    frames: int,
    atoms: int,
    names: dict[str, int],
    virial: bool,
    first: float,
    last: float | None,
) -> None:
    path = (
        [str(engine_outputs / r) for r in rel]
        if isinstance(rel, list)
        else str(engine_outputs / rel)
    )
    system = dpdata.LabeledSystem(path, fmt=fmt)
    assert system.get_nframes() == frames
    assert system.get_natoms() == atoms
    assert counts(system) == names
    assert system.has_virial() is virial
    assert system["energies"][0] == pytest.approx(first, rel=REL)
    assert system["energies"][-1] == pytest.approx(last if last is not None else first, rel=REL)
    assert np.all(np.isfinite(system["forces"]))


def test_abacus_scf_ch4(engine_outputs: Path, tmp_path: Path) -> None:
    """README.md: copy INPUT.ok to INPUT first (as dpdata's own test does);
    1 frame, 5 atoms C(1) H(4), virial, -219.649914042766 eV."""
    case = tmp_path / "scf-ch4"
    shutil.copytree(engine_outputs / "abacus" / "scf-ch4", case)
    shutil.copy(case / "INPUT.ok", case / "INPUT")
    system = dpdata.LabeledSystem(str(case), fmt="abacus/scf")
    assert (system.get_nframes(), system.get_natoms()) == (1, 5)
    assert counts(system) == {"C": 1, "H": 4}
    assert system.has_virial()
    assert system["energies"][0] == pytest.approx(-219.649914042766, rel=REL)


def _unlabelled(system: dpdata.LabeledSystem) -> dpdata.System:
    return dpdata.System(
        data={
            k: system.data[k]
            for k in ("atom_names", "atom_numbs", "atom_types", "cells", "coords", "orig", "nopbc")
            if k in system.data
        }
    )


# -- the engines' own readers on the same real files --------------------------------------


def test_cp2k_engine_reads_real_output(engine_outputs: Path, tmp_path: Path) -> None:
    """cp2k/output of CP2K 7.1 (README.md: 601 atoms, virial, -420369.39069353545 eV)."""
    shutil.copy(
        engine_outputs / "cp2k/scf-AlCoHO/cp2k_output_element_replace", tmp_path / "cp2k.out"
    )
    frame = _unlabelled(dpdata.LabeledSystem(str(tmp_path / "cp2k.out"), fmt="cp2k/output"))
    result = Cp2kEngine().read_results(tmp_path, Task(), frame)
    assert result.system["energies"][0] == pytest.approx(-420369.39069353545, rel=REL)
    assert result.system.has_virial()
    assert result.system["atom_names"] == frame["atom_names"]


def test_qe_engine_reads_real_output_in_frame_orientation(
    engine_outputs: Path, tmp_path: Path
) -> None:
    """qe/pw/scf rotates cells to lower-triangular form; the engine rotates back so that
    labels sit on the frame as given. README.md: Al(4), virial, -296.0837931375058 eV."""
    shutil.copy(engine_outputs / "qe/scf-Al/Al.in", tmp_path / "pw.in")
    shutil.copy(engine_outputs / "qe/scf-Al/Al.out", tmp_path / "qe.out")
    parsed = dpdata.LabeledSystem(
        [str(tmp_path / "pw.in"), str(tmp_path / "qe.out")], fmt="qe/pw/scf"
    )
    frame = _unlabelled(parsed)
    result = QeEngine().read_results(tmp_path, Task(), frame)
    assert result.system["energies"][0] == pytest.approx(-296.0837931375058, rel=REL)
    np.testing.assert_allclose(result.system["cells"], frame["cells"], atol=1e-10)
    # A rotation keeps the virial's invariants (trace) and the force norms.
    np.testing.assert_allclose(
        np.trace(result.system["virials"][0]), np.trace(parsed["virials"][0]), rtol=1e-10
    )
    np.testing.assert_allclose(
        np.linalg.norm(result.system["forces"], axis=-1),
        np.linalg.norm(parsed["forces"], axis=-1),
        rtol=1e-8,
        atol=1e-12,
    )


def test_vasp_engine_reads_last_frame(engine_outputs: Path, tmp_path: Path) -> None:
    """A relax/MD OUTCAR gives the engine its last frame (README.md md-h2o: last -28.39848822 eV)."""
    shutil.copy(engine_outputs / "vasp/md-h2o/OUTCAR.h2o.md.10", tmp_path / "OUTCAR")
    parsed = dpdata.LabeledSystem(str(tmp_path / "OUTCAR"), fmt="vasp/outcar")
    frame = _unlabelled(parsed[9])
    result = VaspEngine({"potcar_dir": str(tmp_path)}).read_results(tmp_path, Task(), frame)
    assert result.system.get_nframes() == 1
    assert result.system["energies"][0] == pytest.approx(-28.39848822, rel=REL)


def test_gaussian_engine_reads_real_log(engine_outputs: Path, tmp_path: Path) -> None:
    """README.md sp-methane: C(1) H(4), no virial, -1102.7145898692427 eV."""
    shutil.copy(engine_outputs / "gaussian/sp-methane/methane.gaussianlog", tmp_path / "input.log")
    frame = _unlabelled(dpdata.LabeledSystem(str(tmp_path / "input.log"), fmt="gaussian/log"))
    result = GaussianEngine().read_results(tmp_path, Task(), frame)
    assert result.system["energies"][0] == pytest.approx(-1102.7145898692427, rel=REL)
    assert not result.system.has_virial()
