"""Fixtures of the cross-package tests: a real, private Slurm cluster for the session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opshelf.core.testing import require_engine, skip_or_fail

SLURM_SCRIPTS = Path(__file__).parent / "slurm"


@dataclass(frozen=True)
class SlurmCluster:
    """A one-node Slurm started by tests/slurm/start-slurm.sh (clients need SLURM_CONF)."""

    root: Path
    conf: Path

    def pid(self, daemon: str) -> int:
        """Pid of `slurmctld` or `slurmd`, from its pid file."""
        return int((self.root / f"{daemon}.pid").read_text().strip())

    def run(self, *argv: str) -> str:
        """A Slurm client command (squeue, scancel, ...) against this cluster; its stdout."""
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "SLURM_CONF": str(self.conf)})
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def restart_controller(self) -> None:
        """Start slurmctld again (after a test stopped it); its state dir keeps the jobs."""
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, timeout=60)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """munged + slurmctld + slurmd for this session; SLURM_CONF set while it lives.

    Skips without Slurm or root, fails instead under OPSHELF_REQUIRE_ENGINES=1 (CI).
    """
    for exe in ("slurmctld", "slurmd", "munged", "sbatch"):
        require_engine(exe)
    if os.geteuid() != 0:
        skip_or_fail("a private Slurm needs root (slurmd runs each job as its user)")
    # A short path: the munge socket path must fit in a unix socket address (108 bytes).
    root = Path(tmp_path_factory.mktemp("slurm", numbered=True))
    proc = subprocess.run([str(SLURM_SCRIPTS / "start-slurm.sh"), str(root)],
                          capture_output=True, text=True, timeout=120, check=False)
    try:
        if proc.returncode != 0:
            pytest.fail(f"start-slurm.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
                        pytrace=False)
        conf = root / "slurm.conf"
        previous = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(conf)  # every step and job of the session sees it
        try:
            yield SlurmCluster(root=root, conf=conf)
        finally:
            if previous is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = previous
    finally:
        subprocess.run([str(SLURM_SCRIPTS / "stop-slurm.sh"), str(root)], timeout=60,
                       check=False)
