"""Fixtures of opshelf-cl's tests: one thread per program, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
ONE_THREAD = {name: "1" for name in (
    "OMP_NUM_THREADS", "TF_INTRA_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS",
    "DP_INTRA_OP_PARALLELISM_THREADS", "DP_INTER_OP_PARALLELISM_THREADS")}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ONE_THREAD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")


def opshelf(*args: str, runs_dir: Path, env: dict[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`opshelf ARGS` as a user runs it (the mocks importable through PYTHONPATH)."""
    full = {**os.environ, **ONE_THREAD, "OPSHELF_RUNS_DIR": str(runs_dir),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS),
                                                        os.environ.get("PYTHONPATH")])),
            **(env or {})}
    return subprocess.run([sys.executable, "-m", "opshelf.core.cli", *args], env=full,
                          capture_output=True, text=True, timeout=timeout)
