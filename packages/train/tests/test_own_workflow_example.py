"""The documented "use an opshelf OP in your own dflow workflow" script of opshelf-train runs
as written (docs/guides/own-workflow.md includes packages/train/examples/own_workflow.py):
PrepTrain -> RunTrain (two tiny models in parallel) -> ScoreEnsemble on EMT-labelled Cu.
About a minute on an idle machine (dp's start-up dominates), three under load."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from opshelf.core.testing import require_engine

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "own_workflow.py"

pytestmark = [pytest.mark.engine("dp"), pytest.mark.slow]


def test_own_workflow_script_trains_and_scores_an_ensemble(tmp_path: Path) -> None:
    require_engine("dp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "work")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # the lines the docs page shows as its expected output
    for index in (0, 1):
        assert re.search(rf"^model {index}: held-out force RMSE \d\.\d{{3}} eV/A, energy RMSE "
                         r"\d+\.\d meV/atom$", done.stdout, re.M), output[-2000:]
    assert re.search(r"^ensemble on 10 held-out frames: median max force deviation \d\.\d{3} "
                     r"eV/A, median max force error \d\.\d{3} eV/A$", done.stdout, re.M), output
    score = json.loads(next((tmp_path / "work" / "results").rglob("*.json")).read_text())
    assert score["n_frames"] == 10 and len(score["models"]) == 2
    # trained models: the labels themselves have an RMS force of 0.9 eV/A per component
    assert all(m["force_rmse_eV_per_A"] < 0.4 for m in score["models"]), score
