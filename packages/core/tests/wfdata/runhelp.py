"""Helpers of the CLI and run-lifecycle tests: run `opshelf` as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

WFDATA = Path(__file__).resolve().parent
LEDGER_WF = "ledgerwf:LedgerWorkflow"


def cli_env(runs_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WFDATA), env.get("PYTHONPATH")]))
    if runs_dir is not None:
        env["OPSHELF_RUNS_DIR"] = str(runs_dir)
    return env


def opshelf_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "opshelf.core.cli", *args]


def opshelf(*args: str, runs_dir: Path | None = None, cwd: Path | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(opshelf_argv(*args), capture_output=True, text=True,
                          env=cli_env(runs_dir), cwd=cwd, timeout=timeout)


def write_config(path: Path, **values: object) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def ledger_counts(ledger: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if ledger.exists():
        for line in ledger.read_text().split():
            counts[line] = counts.get(line, 0) + 1
    return counts
