"""`opshelf new-op` into a temporary copy of a real package (opshelf-props): the copy's whole
test suite, its own tests and the generated ones, passes with the new OP included.

core's tests/test_scaffold.py checks the scaffolds on a tiny package (fast, core alone); this
one proves they fit a real package's layout, conftest and test conventions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from opshelf.core.cli import main
from opshelf.core.testing import run_package_tests

ROOT = Path(__file__).resolve().parents[1]


def test_new_op_in_a_copy_of_opshelf_props(tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "packages" / "props"
    shutil.copytree(ROOT / "packages" / "props", copy,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info"))
    monkeypatch.chdir(tmp_path)
    assert main(["new-op", "props", "volume-per-atom"]) == 0
    assert (copy / "src" / "opshelf" / "props" / "volume_per_atom_op.py").is_file()
    assert "volume-per-atom" in (copy / "pyproject.toml").read_text()

    result = run_package_tests(copy, timeout_s=1200)
    report = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    passed = int(re.search(r"(\d+) passed", result.stdout).group(1))
    generated = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
         "tests/test_volume_per_atom.py"], cwd=copy, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(copy / "src")}, check=False)
    n_generated = int(re.search(r"(\d+) tests? collected", generated.stdout).group(1))
    assert n_generated >= 2, generated.stdout  # the function's test and the conformance check
    assert "failed" not in result.stdout and passed > n_generated, report
