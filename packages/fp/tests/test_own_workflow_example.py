"""The documented "use an opshelf OP in your own dflow workflow" script runs as written.

docs/guides/own-workflow.md includes packages/fp/examples/own_workflow.py verbatim; this test
runs that file the way the page tells a reader to (`python own_workflow.py WORK_DIR`), so the
page cannot describe a script that no longer works. EMT labels through core's `ase` engine:
seconds, no DFT program.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dpdata

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "own_workflow.py"


def test_own_workflow_script_labels_frames(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "work")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # the lines the docs page shows as its expected output
    assert re.search(r"^labelled 4 of 4 tasks \(4 frames\) -> .*results/collected/data$",
                     done.stdout, re.MULTILINE), output[-2000:]
    assert re.search(r"^Cu4: energies per atom \[(0\.0\d+, ){3}0\.0\d+\] eV$", done.stdout,
                     re.MULTILINE), output[-2000:]
    labelled = dpdata.MultiSystems()
    labelled.from_deepmd_npy(str(tmp_path / "work" / "results" / "collected" / "data"),
                             labeled=True)
    assert labelled.get_nframes() == 4
    system = labelled[0]
    assert system["forces"].shape == (4, 4, 3)
    assert (system["energies"] / 4 > 0).all()  # rattled cells lie above EMT's fcc minimum
