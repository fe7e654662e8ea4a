"""Labels with absurd energies are flagged against a reference (issue 19).

A real engine (ASE's EMT, Cu). The reference is fitted to "initial data": four fcc cells at
a = 3.6 A rattled by 0.05 A. Two labelling tasks: a rattled cell (fine) and a cell squeezed
uniformly to a = 2.6 A. The squeezed cell's forces vanish by symmetry, so the force check
(100 eV/A) passes it, but EMT gives it +8.13 eV/atom against -0.007 eV/atom at 3.6 A
(measured, ase 3.x EMT); above the default 5 eV/atom it is a failed task, not collected.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import dpdata
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from opshelf.core.energy_reference import (
    EnergyReference,
    absurd_energy_reason,
    energy_deviations,
    fit_reference,
)
from opshelf.core.engine import Task, load_engine
from opshelf.core.errors import ConfigError
from opshelf.core.ops.labelling import collect_labels, prepare_engine_tasks, run_engine_task


def _emt_labelled(atoms_list: list) -> dpdata.LabeledSystem:
    out = None
    for atoms in atoms_list:
        atoms.calc = EMT()
        system = dpdata.LabeledSystem(atoms, fmt="ase/structure")
        out = system if out is None else out + system
    return out


def _rattled(seed: int, a: float = 3.6) -> object:
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_the_fit_recovers_per_element_energies() -> None:
    """Two elements with compositions that tell them apart: EMT Cu and Al bulk and a
    Cu3Al-like cell; the fit predicts every frame to within EMT's mixing energy."""
    cu = _emt_labelled([_rattled(s) for s in range(3)])
    al = _emt_labelled([bulk("Al", "fcc", a=4.05, cubic=True)])
    mixed = bulk("Cu", "fcc", a=3.7, cubic=True)
    mixed[0].symbol = "Al"
    mix = _emt_labelled([mixed])
    reference = fit_reference([cu, al, mix])
    assert set(reference.per_atom_eV) == {"Al", "Cu"}
    # 5 frames, 2 unknowns: residuals are EMT's mixing energy and the rattle, measured
    # 0.065 eV/atom at most (the Cu3Al-like cell); 0.1 eV/atom leaves room for ase versions
    for system in (cu, al, mix):
        assert np.abs(energy_deviations(system, reference)).max() < 0.1
    with pytest.raises(ConfigError, match="no reference energy for \\['Ni'\\]"):
        energy_deviations(_emt_labelled([bulk("Ni", "fcc", a=3.52, cubic=True)]), reference)


def test_a_squeezed_cell_with_zero_forces_is_a_failed_task_and_not_collected(
        tmp_path: Path) -> None:
    reference = fit_reference([_emt_labelled([_rattled(s) for s in range(4)])])
    # EMT Cu at a = 3.6 A rattled by 0.05 A: +0.033 eV/atom (measured; ideal cell -0.007)
    assert reference.per_atom_eV["Cu"] == pytest.approx(0.033, abs=0.02)
    squeezed = bulk("Cu", "fcc", a=2.6, cubic=True)
    frames = tmp_path / "frames.extxyz"
    ase.io.write(frames, [_rattled(7), squeezed], format="extxyz")
    engine = load_engine({"name": "ase", "settings": {"calculator": "emt"}})
    names, paths, type_map = prepare_engine_tasks([frames], "auto", engine, Task(),
                                                  tmp_path / "tasks")
    reports = [run_engine_task(p, tmp_path / "run" / n, tmp_path / "lab" / n, n)
               for n, p in zip(names, paths)]
    # the force check alone lets the squeezed cell through: its forces vanish by symmetry
    assert [r["status"] for r in reports] == ["succeeded", "succeeded"]
    assert reports[1]["max_force_eV_per_A"][0] < 1e-6
    # EMT at a = 2.6 A: +8.13 eV/atom (measured), 8.1 above the reference
    assert reports[1]["energy_eV_per_atom"][0] == pytest.approx(8.13, abs=0.01)
    labelled = sorted((tmp_path / "lab").iterdir())
    system = dpdata.LabeledSystem(str(labelled[1]), fmt="deepmd/npy")
    assert "+8.0" in (absurd_energy_reason(system, reference) or "")
    summary = collect_labels(labelled, tmp_path / "out", type_map=type_map,
                             min_success_ratio=0.5, energy_reference=reference)
    assert summary["n_frames"] == 1 and summary["n_failed"] == 1
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert failures[0]["task"] == names[1] and "absurd label" in failures[0]["reason"]
    assert "eV/atom from the reference" in failures[0]["reason"]
    data = dpdata.MultiSystems.from_file(str(tmp_path / "out" / "data"), fmt="deepmd/npy")
    assert data.get_nframes() == 1
    # the control: without the reference both frames are collected
    plain = collect_labels(labelled, tmp_path / "plain", type_map=type_map)
    assert plain["n_frames"] == 2 and plain["n_failed"] == 0


def test_the_accepted_deviation_is_bounded_and_configurable() -> None:
    loose = EnergyReference(per_atom_eV={"Cu": 0.0}, max_deviation_eV_per_atom=10.0)
    squeezed = _emt_labelled([bulk("Cu", "fcc", a=2.6, cubic=True)])
    assert absurd_energy_reason(squeezed, loose) is None  # +8.1 eV/atom, within 10
    tight = loose.model_copy(update={"max_deviation_eV_per_atom": 5.0})
    assert absurd_energy_reason(squeezed, tight) is not None
    for bad in (-1.0, 1.0e6, float("nan")):
        with pytest.raises(ValueError, match="max_deviation_eV_per_atom"):
            EnergyReference(per_atom_eV={"Cu": 0.0}, max_deviation_eV_per_atom=bad)


def test_an_element_the_reference_cannot_tell_apart_is_not_judged() -> None:
    """Reference frames all Cu3Al-like: neither element's energy is identified (a fit would
    split the energy arbitrarily), so the fit refuses; with pure Cu frames added, Cu is
    identified and Al is not, and an Al-holding label is not judged."""
    mixed = bulk("Cu", "fcc", a=3.7, cubic=True)
    mixed[0].symbol = "Al"
    with pytest.raises(ConfigError, match="do not tell"):
        fit_reference([_emt_labelled([mixed.copy(), mixed.copy()])])
    reference = fit_reference([_emt_labelled([mixed.copy()]), _emt_labelled([_rattled(1)])])
    assert sorted(reference.per_atom_eV) == ["Al", "Cu"]  # two compositions, two unknowns
    only_cu = fit_reference([_emt_labelled([_rattled(1), _rattled(2)])])
    assert sorted(only_cu.per_atom_eV) == ["Cu"]
    squeezed_alloy = bulk("Cu", "fcc", a=2.6, cubic=True)
    squeezed_alloy[0].symbol = "Al"
    assert absurd_energy_reason(_emt_labelled([squeezed_alloy]), only_cu) is None
