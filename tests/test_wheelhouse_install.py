"""A user installs opshelf-fp from a wheelhouse, alone, and uses its OPs in their own workflow.

The install story of the docs (getting started, "Use an opshelf OP in your own dflow
workflow"), end to end: core's and fp's wheels are built (`uv build --wheel`, as `./dev
wheels` does) into a wheelhouse; an empty venv gets `opshelf-fp` from it (`pip install
--find-links <wheelhouse> opshelf-fp`, here with uv) and nothing of the checkout; the docs'
own script, packages/fp/examples/own_workflow.py, runs in that venv and labels 4 frames with
EMT. The third-party dependencies come from uv's cache and the local mirror named by the
machine's pip configuration (find-links), offline; only when they are not there does uv use
the configured indexes.

Measured (2026-12-05, 2 cores): the whole test 38 s at load 3-7 (uptime); build 8 s, install
1 s from uv's cache, the script 41 s at load 14.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from opshelf.core.testing import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "packages" / "fp" / "examples" / "own_workflow.py"


def _uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path.home() / ".local" / "bin"))
    if found is None:
        skip_or_fail("uv is not installed (./dev installs it): needed to build the wheels")
    return str(found)


def _pip_find_links() -> list[str]:
    """The local wheel mirror(s) of the machine's pip configuration (uv reads no pip.conf)."""
    links = os.environ.get("UV_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS") or ""
    if not links:
        done = subprocess.run([sys.executable, "-m", "pip", "config", "get",
                               "global.find-links"], capture_output=True, text=True,
                              check=False, timeout=60)
        links = done.stdout.strip() if done.returncode == 0 else ""
    return [f"--find-links={link}" for link in links.split() if link]


def _uv_run(args: list[str], *, timeout: int) -> None:
    """`uv ARGS` offline (cache + wheelhouse + mirror); with the configured indexes only when
    offline resolution fails (a fresh machine with an empty uv cache)."""
    for extra in (["--offline"], []):
        done = subprocess.run([_uv(), *args, *extra], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode == 0:
            return
    raise AssertionError(f"uv {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def test_opshelf_fp_from_a_wheelhouse_runs_the_own_workflow_script(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    for package in ("core", "fp"):
        _uv_run(["build", "--quiet", "--wheel", "--out-dir", str(wheelhouse),
                 str(ROOT / "packages" / package)], timeout=300)
    wheels = sorted(p.name for p in wheelhouse.glob("*.whl"))
    assert [re.sub(r"-\d.*", "", w) for w in wheels] == ["opshelf_core", "opshelf_fp"], wheels

    venv = tmp_path / "venv"
    _uv_run(["venv", "--quiet", "--python", sys.executable, str(venv)], timeout=120)
    python = venv / "bin" / "python"
    _uv_run(["pip", "install", "--quiet", "--python", str(python),
             f"--find-links={wheelhouse}", *_pip_find_links(), "opshelf-fp"], timeout=600)

    # the venv holds the wheels, not the checkout: opshelf is imported from site-packages
    where = subprocess.run([str(python), "-c", "import opshelf.fp, opshelf.core; "
                            "print(opshelf.fp.__file__); print(opshelf.core.__file__)"],
                           capture_output=True, text=True, check=True, timeout=120, cwd=tmp_path)
    assert all("site-packages" in line for line in where.stdout.split()), where.stdout
    assert str(ROOT) not in where.stdout

    # dflow's local mode starts `python3` from PATH: the user's venv comes first
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               VIRTUAL_ENV=str(venv))
    done = subprocess.run([str(python), str(SCRIPT), str(tmp_path / "work")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # the lines the docs page shows; EMT energies of rattled fcc Cu lie above its minimum (0)
    assert re.search(r"^labelled 4 of 4 tasks \(4 frames\) -> ", done.stdout, re.MULTILINE), \
        output[-2000:]
    assert re.search(r"^Cu4: energies per atom \[(0\.0\d+, ){3}0\.0\d+\] eV$", done.stdout,
                     re.MULTILINE), output[-2000:]
