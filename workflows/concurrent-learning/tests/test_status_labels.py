"""The status label of an unfinished iteration: the step it is at in loop order, and
`interrupted` (not `running`) once the run's driver is gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from opshelf.cl.status import LOOP_ORDER, status_rows


def fake_steps(wfdir: Path, phases: dict[str, str]) -> Path:
    """Step dirs of iteration 0 as dflow's local mode leaves them (a `phase` file each)."""
    for key, value in phases.items():
        step = wfdir / f"iter-000000--{key}"
        step.mkdir(parents=True)
        (step / "phase").write_text(value)
    return wfdir


def test_loop_order_is_the_flow_s() -> None:
    from opshelf.cl.flow import STEP_NAMES

    assert LOOP_ORDER == tuple(STEP_NAMES)


@pytest.mark.parametrize(("phases", "run_status", "label"), [
    # alphabetical step-dir order puts collect-* first: the label follows the loop order
    ({"prep-train": "Succeeded", "run-train-000000": "Succeeded", "run-train-000001": "Running",
      "train": "Running"}, "running", "running run-train"),
    ({"prep-train": "Succeeded", "run-train-000000": "Succeeded", "run-train-000001": "Running"},
     "killed", "interrupted at run-train (run killed; opshelf resume)"),
    # every step so far succeeded: between select-confs and prep-fp
    ({"prep-train": "Succeeded", "run-train-000000": "Succeeded", "prep-explore": "Succeeded",
      "run-explore-000000": "Succeeded", "select-confs": "Succeeded"}, "killed",
     "interrupted at prep-fp (run killed; opshelf resume)"),
    ({"prep-train": "Succeeded", "run-train-000000": "Succeeded", "prep-explore": "Succeeded",
      "run-explore-000000": "Failed", "run-explore-000001": "Succeeded"}, "failed",
     "failed at run-explore"),
])
def test_unfinished_iteration_label(tmp_path: Path, phases: dict[str, str], run_status: str,
                                    label: str) -> None:
    (row,) = status_rows(fake_steps(tmp_path / "wf", phases), run_status)
    assert row["iteration"] == 0 and row["decision"] == label
