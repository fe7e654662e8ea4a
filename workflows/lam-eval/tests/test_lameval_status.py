"""`opshelf status`'s lameval table from a run's step dirs: one row per model, each task's
failures counted from the model's result JSON (step dirs written as dflow writes them)."""

from __future__ import annotations

import json
from pathlib import Path

from opshelf.lameval.status import status_table


def _step(run: Path, key: str, phase: str, result: dict[str, object] | None = None) -> None:
    step = run / "dflow" / "r1" / key
    step.mkdir(parents=True)
    for name, text in (("type", "Pod"), ("phase", phase), ("name", key)):
        (step / name).write_text(text)
    if result is not None:
        out = step / "outputs" / "artifacts" / "result" / "work"
        out.mkdir(parents=True)
        (out / "m.json").write_text(json.dumps(result))


def test_status_table_counts_each_tasks_failures(tmp_path: Path) -> None:
    run = tmp_path / "r1"
    _step(run, "evaluate-emt", "Succeeded", {
        "model": {"name": "emt"},
        "accuracy": {"datasets": {"Al-eos": {"status": "succeeded"},
                                  "Si-eos": {"status": "failed"}}},
        "delta": {"n_failed": 1}, "md": {"n_failed": 0}, "efficiency": {"sizes": []}})
    _step(run, "evaluate-chgnet-0-3-0", "Running")
    (run / "run.json").write_text(json.dumps({
        "workflow": "lameval", "workflow_ref": "lameval", "run_id": "r1",
        "created": "2026-01-01T00:00:00+00:00", "source_config": "c.yaml", "status": "killed"}))
    lines = status_table(run).splitlines()
    assert lines[0].split() == ["model", "state", "accuracy", "delta", "properties", "md",
                                "efficiency"]
    assert lines[1].split() == ["chgnet-0-3-0", "stopped", "-", "-", "-", "-", "-"]
    assert lines[2].split() == ["emt", "done", "1", "of", "2", "failed", "1", "failed", "off",
                                "ok", "ok"]
    assert lines[3] == "1 of 2 models evaluated; leaderboard: not started"
