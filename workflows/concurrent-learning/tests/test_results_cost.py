"""The results' held-out lines: the labelling time the held-out set cost (summed from the
collect-fp summaries as a local run leaves them) and how far the deviation understates the
held-out error."""

from __future__ import annotations

import json
from pathlib import Path

from opshelf.cl.results import LabellingCost, held_out_line, labelling_cost, overconfidence


def fake_collect(wfdir: Path, key: str, tasks: list[dict], phase: str = "Succeeded") -> None:
    """A collect step dir with its summary artifact (the layout of dflow's local mode)."""
    step = wfdir / key
    summary = step / "outputs" / "artifacts" / "summary" / "collected"
    summary.mkdir(parents=True)
    (step / "phase").write_text(phase)
    (summary / "summary.json").write_text(json.dumps({"tasks": tasks}))


def task(wall_s: float, status: str = "succeeded") -> dict:
    return {"task": "t", "status": status, "n_frames": 1 if status == "succeeded" else 0,
            "wall_s": wall_s}


def test_labelling_cost_splits_training_and_held_out_labels(tmp_path: Path) -> None:
    fake_collect(tmp_path, "iter-000000--collect-fp", [task(60.0), task(30.0, "failed")])
    fake_collect(tmp_path, "iter-000000--collect-fp-test", [task(45.0), task(45.0)])
    fake_collect(tmp_path, "iter-000001--collect-fp", [task(90.0)])
    # a collect step that did not finish is not counted
    fake_collect(tmp_path, "iter-000002--collect-fp", [task(1000.0)], phase="Running")
    cost = labelling_cost(tmp_path)
    # a failed task's time is paid (counted) though it gave no frame
    assert cost == LabellingCost(train_s=180.0, test_s=90.0, n_train=2, n_test=2)
    assert cost.line() == ("held-out set: 2 frames labelled once, 1.5 min of 4.5 min of "
                           "labelling (33 %, engine time summed over tasks)")


def test_no_held_out_set_gives_no_cost_line(tmp_path: Path) -> None:
    fake_collect(tmp_path, "iter-000000--collect-fp", [task(60.0)])
    assert labelling_cost(tmp_path).line() is None


def test_overconfidence_in_the_held_out_line() -> None:
    record = {"iteration": 0, "n_train_frames": 6, "test_n_frames": 4,
              "test_force_rmse_eV_per_A": 0.135, "test_energy_rmse_eV_per_atom": 0.0168,
              "test_devi_f_median_eV_per_A": 0.017, "test_max_force_error_median_eV_per_A": 0.306}
    assert overconfidence(record) == 0.306 / 0.017
    assert held_out_line([record]).endswith(
        "the last models' deviation is 18.0x below their error there (median max error / "
        "median max deviation)")
    assert overconfidence({"test_devi_f_median_eV_per_A": None}) is None
