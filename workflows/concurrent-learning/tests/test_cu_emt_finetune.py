"""The cu-emt-finetune example to its end: every ensemble member fine-tuned from the
pretrained multi-element DPA-3 (examples/cu-emt-finetune/pretrained), real LAMMPS
exploration with the fine-tuned ensemble (model deviation), EMT labels, each later
iteration starting from the previous models. The loop must converge, and the held-out force
error (the example's test-data.extxyz: EMT MD at 400 and 800 K, never trained on) of its
last models must be below that of the first iteration's (the fine-tuned models as they
came out of fine-tuning). The comparison with the same loop from scratch is in the
example's README (measured once each, not a test: minutes per run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import opshelf
from test_finetune import copy_example


def _records(wfdir: Path, pattern: str) -> list[dict]:
    """opshelf-train's record (opshelf-train.json) of every run-train step matching, from
    the steps' work dirs (a local run's)."""
    return [json.loads(p.read_text())
            for p in sorted(wfdir.glob(f"{pattern}/workdir/*/opshelf-train.json"))]


@pytest.mark.engine("dp", "py:lammps", "py:deepmd", "py:torch")
def test_cu_emt_finetune_converges_and_improves_on_its_start(tmp_path: Path) -> None:
    config = copy_example(tmp_path)
    run = opshelf("run", "cl", str(config / "config.yaml"), "--name", "ft", "--no-progress",
                  runs_dir=tmp_path / "runs", timeout=2400)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.splitlines()[-1] == "opshelf: converged: every stage met its criterion"
    history = json.loads((tmp_path / "runs" / "ft" / "results" / "history.json").read_text())
    assert history["converged"]
    rows = history["history"]
    scored = [r["test_force_rmse_eV_per_A"] for r in rows]
    print(f"held-out force RMSE by iteration: {scored}; labelled "
          f"{[r['n_labelled'] for r in rows]}")
    assert len(rows) >= 2 and rows[0]["n_labelled"] > 0  # the fine-tuned start is not enough
    # the fine-tuned models of iteration 0 against the loop's last models, on the same 20
    # held-out frames (see the README for the measured numbers)
    assert None not in scored and scored[-1] < 0.9 * scored[0]
    wfdir = tmp_path / "runs" / "ft" / "dflow" / "ft"
    modes = {key: sorted({r["mode"] for r in _records(wfdir, key)})
             for key in ("finetune--run-train-*", "iter-000000--run-train-*",
                         "iter-000001--run-train-*")}
    # fine-tuned before the loop, used as they are in iteration 0, continued afterwards
    assert modes == {"finetune--run-train-*": ["finetune"],
                     "iter-000000--run-train-*": ["given"],
                     "iter-000001--run-train-*": ["init_model"]}, modes
    devi = sorted(wfdir.glob("iter-000000--run-explore-*/**/model_devi.out"))
    assert devi  # the fine-tuned DPA-3 ensemble ran in LAMMPS with its model deviation
