"""The documented "use an opshelf OP in your own dflow workflow" script of opshelf-props runs
as written (docs/guides/own-workflow.md includes packages/props/examples/own_workflow.py):
EMT's EOS of fcc Cu through MakeProperty -> core's RunEngineTask -> PostProperty, seconds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "own_workflow.py"


def test_own_workflow_script_fits_an_eos(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "work")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # the lines the docs page shows as its expected output
    assert re.search(r"^EOS of fcc Cu \(7 volumes\) -> .*results$", done.stdout, re.M), output
    assert re.search(r"^a0 3\.590 A, E0 -0\.00\d\d eV/atom, B 13\d\.\d GPa$", done.stdout,
                     re.M), output[-2000:]
    eos = json.loads(next((tmp_path / "work" / "results").rglob("eos.json")).read_text())
    assert eos["lattice_constant_A"] == pytest.approx(3.590, abs=0.002)  # EMT's own Cu
    assert eos["bulk_modulus_GPa"] == pytest.approx(134.4, rel=0.02)
    assert next((tmp_path / "work" / "results").rglob("eos.png")).is_file()
