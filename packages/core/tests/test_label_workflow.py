"""The `label` workflow end to end in local mode with EMT, failure injection included."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import dpdata
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from opshelf.core.config import load_config
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.local import run_locally, use_local_mode
from opshelf.core.workflow import BuildContext
from opshelf.core.workflows.label import LabelConfig, LabelWorkflow, generate_frames

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "label-cu-emt" / "config.yaml"


def run_label(config: LabelConfig, tmp_path: Path, run_id: str) -> tuple[str, BuildContext, object]:
    plugin = LabelWorkflow()
    ctx = BuildContext(run_dir=tmp_path / "run", config_dir=tmp_path, workflow_id=run_id)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    plugin.check(config, ctx)
    use_local_mode(ctx.run_dir / "dflow")
    workflow = plugin.build(config, ctx)
    phase = run_locally(workflow, ctx.run_dir / "dflow")
    return phase, ctx, workflow


def test_example_config_loads_and_generates() -> None:
    config = load_config(EXAMPLE, LabelConfig)
    frames = generate_frames(config.generate)
    assert len(frames) == 24 and len(frames[0]) == 32
    assert not np.allclose(frames[0].positions, frames[1].positions)  # rattled apart
    again = generate_frames(config.generate)
    np.testing.assert_array_equal(frames[5].positions, again[5].positions)  # seeded


def test_label_end_to_end_with_failures(tmp_path: Path) -> None:
    frames = []
    for i in range(8):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
        atoms.rattle(0.05, seed=i)
        if i in (2, 5):
            atoms.positions[1] = atoms.positions[0]  # overlap: EMT gives NaN forces
        frames.append(atoms)
    ase.io.write(tmp_path / "frames.extxyz", frames)
    config = LabelConfig.model_validate({
        "frames": ["frames.extxyz"], "engine": {"name": "ase"},
        "min_success_ratio": 0.7, "steps": {"run-task": {"group_size": 3}}})
    phase, ctx, workflow = run_label(config, tmp_path, "label-e2e")
    assert phase == "Succeeded"
    lines = LabelWorkflow().collect(config, ctx, workflow)
    results = ctx.run_dir / "results"
    summary = json.loads((results / "summary.json").read_text())
    failures = json.loads((results / "failures.json").read_text())
    # nothing lost: 6 labelled + 2 recorded failures = 8 frames in
    assert summary["n_tasks"] == 8 and summary["n_succeeded"] == 6 and summary["n_frames"] == 6
    assert [f["task"] for f in failures] == ["task-000002", "task-000005"]
    assert all("non-finite forces" in f["reason"] for f in failures)
    assert (results / "labels.png").stat().st_size > 1000
    assert any("2 failed tasks" in line for line in lines)
    # the labels are EMT's, frame by frame (energies compared to ASE directly, 1e-6 eV:
    # extxyz rounds positions to 1e-8 A)
    data = dpdata.MultiSystems.from_file(str(results / "data"), fmt="deepmd/npy")
    energies = sorted(float(e) for s in data.systems.values() for e in s["energies"])
    expected = []
    for i, atoms in enumerate(frames):
        if i not in (2, 5):
            atoms.calc = EMT()
            expected.append(atoms.get_potential_energy())
    np.testing.assert_allclose(energies, sorted(expected), atol=1e-6)


def test_label_fails_below_the_success_ratio(tmp_path: Path) -> None:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    bad = atoms.copy()
    bad.positions[1] = bad.positions[0]
    ase.io.write(tmp_path / "frames.extxyz", [atoms, bad])
    config = LabelConfig.model_validate({"frames": ["frames.extxyz"], "engine": {"name": "ase"}})
    phase, ctx, _ = run_label(config, tmp_path, "label-ratio")
    assert phase == "Failed"
    log = (ctx.run_dir / "dflow" / "label-ratio" / "collect-labels" / "log.txt").read_text()
    assert "1 of 2 tasks succeeded (50.0%), below the minimum 100.0%" in log


def test_check_catches_problems_before_any_work(tmp_path: Path) -> None:
    plugin = LabelWorkflow()
    ctx = BuildContext(run_dir=tmp_path / "run", config_dir=tmp_path)
    base = {"generate": {"element": "Fe", "crystal": "bcc", "n_frames": 2}, "engine": {"name": "ase"}}
    with pytest.raises(MissingInputError, match=r"cannot compute element 'Fe'"):
        plugin.check(LabelConfig.model_validate(base), ctx)
    with pytest.raises(MissingInputError, match=r"frames: file not found: nope.xyz"):
        plugin.check(LabelConfig.model_validate({"frames": ["nope.xyz"], "engine": {"name": "ase"}}), ctx)
    with pytest.raises(ConfigError, match=r"unknown step name 'run-tsk'; did you mean 'run-task'"):
        plugin.check(LabelConfig.model_validate({**base, "steps": {"run-tsk": {}}}), ctx)
    with pytest.raises(ValueError, match=r"exactly one of 'frames'"):
        LabelConfig.model_validate({"engine": {"name": "ase"}})
