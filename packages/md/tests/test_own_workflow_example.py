"""The documented "use opshelf-md's OPs in your own dflow workflow" script runs as written.

docs/guides/own-workflow.md includes packages/md/examples/own_workflow.py verbatim; this test
runs that file the way the page tells a reader to (`python own_workflow.py WORK_DIR`): NVT MD
of 32-atom fcc Cu with LAMMPS and the Cu_u3 EAM potential at 300 K and 900 K, 2000 steps each.

The check is physics the script was not tuned on: equipartition gives a harmonic crystal
(3/2) k_B T of potential energy per atom above its minimum (0.0388 eV at 300 K, 0.1163 eV at
900 K). Measured: 0.0386 and 0.1144 eV/atom (2026-12-06). Tolerance: 10 % (the averages are
over 16 frames of a 32-atom cell, and anharmonicity grows with T).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "own_workflow.py"
K_B = 8.617333e-5  # eV/K (CODATA 2018)

pytestmark = pytest.mark.engine("py:lammps")


def test_own_workflow_script_runs_md_at_equipartition(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "work")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # the lines the docs page shows as its expected output
    found = dict(re.findall(r"^(\d+) K: potential energy (\d\.\d{4}) eV/atom above the perfect "
                            r"crystal; equipartition", done.stdout, re.MULTILINE))
    assert sorted(found) == ["300", "900"], output[-2000:]
    for temperature, energy in found.items():
        assert float(energy) == pytest.approx(1.5 * K_B * float(temperature), rel=0.10)
