"""`pip install ./packages/core` alone, into a fresh venv, gives a working `opshelf` command.

Measured here: ~4 s with a warm uv cache (not marked slow; a cold cache may take longer)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from opshelf.core.testing import skip_or_fail

CORE = Path(__file__).resolve().parents[1]


def test_core_alone_installs_and_its_cli_works(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:  # skips, or fails under OPSHELF_REQUIRE_ENGINES=1 (CI: nothing may be missing)
        skip_or_fail("uv not on PATH")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--python", sys.executable, str(venv)], check=True,
                   capture_output=True)
    # uv reads the machine's index configuration (a local wheel mirror here): no network needed
    res = subprocess.run([uv, "pip", "install", "--python", str(venv / "bin" / "python"),
                          str(CORE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    opshelf = venv / "bin" / "opshelf"
    help_ = subprocess.run([str(opshelf), "--help"], capture_output=True, text=True)
    assert help_.returncode == 0, help_.stderr
    assert "export-argo" in help_.stdout
    listing = subprocess.run([str(opshelf), "list", "--json"], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    entries = json.loads(listing.stdout)
    # only core's own entry points: nothing leaks in from the development venv
    assert set(entries["workflows"]) == {"label"} and set(entries["engines"]) == {"ase"}
    assert set(entries["models"]) == {"emt"}
    assert set(entries["ops"]) == {"prep-engine-tasks", "run-engine-task", "collect-labels",
                                   "write-results"}
