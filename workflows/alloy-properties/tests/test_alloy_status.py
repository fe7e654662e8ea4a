"""`opshelf status`'s alloy table from a run's step dirs: one row per structure, interaction
and property, its state from its steps (step dirs written here as dflow writes them)."""

from __future__ import annotations

import json
from pathlib import Path

from opshelf.alloy.status import status_table


def _run(root: Path, phases: dict[str, str]) -> Path:
    run = root / "r1"
    (run / "dflow" / "r1").mkdir(parents=True)
    for key, phase in phases.items():
        step = run / "dflow" / "r1" / key
        step.mkdir()
        for name, text in (("type", "Pod"), ("phase", phase), ("name", key)):
            (step / name).write_text(text)
    (run / "run.json").write_text(json.dumps({  # no driver: a Running step was stopped
        "workflow": "alloy", "workflow_ref": "alloy", "run_id": "r1",
        "created": "2026-01-01T00:00:00+00:00", "source_config": "c.yaml", "status": "killed"}))
    return run


def test_status_table_gives_each_property_block_its_state(tmp_path: Path) -> None:
    run = _run(tmp_path, {
        "cu--eam--relax--make": "Succeeded", "cu--eam--relax--run-000000": "Succeeded",
        "cu--eam--relax--post": "Succeeded",
        "cu--eam--eos--make": "Succeeded", "cu--eam--eos--run-000000": "Succeeded",
        "cu--eam--eos--run-000001": "Running",
        "cu--eam--vacancy--make": "Succeeded", "cu--eam--vacancy--run-000000": "Failed",
        "cu--eam--elastic--make": "Pending"})
    lines = status_table(run).splitlines()
    rows = {tuple(line.split()[:3]): " ".join(line.split()[3:]) for line in lines[1:-1]}
    assert lines[0].split() == ["structure", "interaction", "property", "state"]
    assert rows == {("cu", "eam", "relax"): "done",
                    ("cu", "eam", "eos"): "stopped (2/3 steps done)",  # no driver alive
                    ("cu", "eam", "vacancy"): "failed (1/2 steps done)",
                    ("cu", "eam", "elastic"): "pending (0/1 steps done)"}
    assert list(rows)[0] == ("cu", "eam", "relax")  # relax first, then by name
    assert lines[-1] == "1 of 4 property blocks done"
    assert status_table(_run(tmp_path / "empty", {})) is None
