"""The cu-emt-finetune example to its end: every ensemble member fine-tuned from the
pretrained multi-element DPA-3 (examples/cu-emt-finetune/pretrained), real LAMMPS
exploration with the fine-tuned ensemble (model deviation), EMT labels, each later
iteration starting from the previous models. The held-out force error (the example's
test-data.extxyz: EMT MD at 400 and 800 K, never trained on) of the last models must be
below that of the first iteration's (the fine-tuned models as they came out of fine-tuning).

The loop does NOT converge yet (measured 2026-12-06, load 0-8, 13 min 44 s: held-out force
RMSE 0.181 -> 0.181 -> 0.114 -> 0.109 -> 0.102 eV/A in 5 iterations, above f_lo 0.1): that
part is a strict xfail raising NotConverged only, so any other failure is a failure, and a
run that converges fails the test until the marker goes. The comparison with the same loop
from scratch is in the example's README (one run each, not a test: minutes per run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import opshelf
from test_finetune import copy_example

from opshelf.core.workflow import EXIT_NOT_CONVERGED


class NotConverged(AssertionError):
    """The loop ended at max iterations, not converged."""


def _modes(wfdir: Path, pattern: str) -> list[str]:
    """opshelf-train's start modes (opshelf-train.json) of the run-train steps matching, from
    the steps' work dirs (a local run's)."""
    return sorted({json.loads(p.read_text())["mode"]
                   for p in wfdir.glob(f"{pattern}/workdir/*/opshelf-train.json")})


@pytest.mark.engine("dp", "py:lammps", "py:deepmd", "py:torch")
@pytest.mark.xfail(strict=True, raises=NotConverged, reason="measured: held-out force RMSE "
                   "0.181 -> 0.102 eV/A in 5 iterations, not below f_lo 0.1 (README)")
def test_cu_emt_finetune_improves_on_its_start(tmp_path: Path) -> None:
    config = copy_example(tmp_path)
    run = opshelf("run", "cl", str(config / "config.yaml"), "--name", "ft", "--no-progress",
                  runs_dir=tmp_path / "runs", timeout=2400)
    assert run.returncode in (0, EXIT_NOT_CONVERGED), run.stderr[-3000:]
    history = json.loads((tmp_path / "runs" / "ft" / "results" / "history.json").read_text())
    rows = history["history"]
    scored = [r["test_force_rmse_eV_per_A"] for r in rows]
    print(f"held-out force RMSE by iteration: {scored}; labelled "
          f"{[r['n_labelled'] for r in rows]}")
    assert len(rows) >= 3 and sum(r["n_labelled"] for r in rows) > 0
    # the fine-tuned models of iteration 0 against the loop's last models, on the same 20
    # held-out frames (measured 0.181 -> 0.102 eV/A; 10 % is well above run-to-run noise)
    assert None not in scored and scored[-1] < 0.9 * scored[0]
    wfdir = tmp_path / "runs" / "ft" / "dflow" / "ft"
    # fine-tuned before the loop, used as they are in iteration 0 (and in iteration 1, which
    # had no labels yet: DPGEN2's rule), continued from the previous models afterwards
    assert _modes(wfdir, "finetune--run-train-*") == ["finetune"]
    assert _modes(wfdir, "iter-000000--run-train-*") == ["given"]
    assert _modes(wfdir, f"iter-{len(rows) - 1:06d}--run-train-*") == ["init_model"]
    # the fine-tuned DPA-3 ensemble ran in LAMMPS and wrote its model deviation
    assert list(wfdir.glob("iter-000000--run-explore-*/**/model_devi.out"))
    if not history["converged"]:
        raise NotConverged(history["reason"])
    assert run.stderr.splitlines()[-1] == "opshelf: converged: every stage met its criterion"
