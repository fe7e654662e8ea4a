"""How `dp` (DeePMD-kit's command line) is launched: command, backend, threads, environment.

`dp` runs as a program through core's `run_command`, so it may come from this venv, conda
or an HPC module; nothing here imports deepmd.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from pydantic import Field

from opshelf.core.config import StrictModel
from opshelf.core.errors import CommandError, MissingInputError
from opshelf.core.process import run_command

Backend = Literal["tensorflow", "pytorch"]

BACKEND_FLAG = {"tensorflow": "--tf", "pytorch": "--pt"}
#: Frozen model file name per backend (dp picks the format from the suffix).
FROZEN_MODEL = {"tensorflow": "frozen_model.pb", "pytorch": "frozen_model.pth"}
#: The checkpoint `--restart` continues from, per backend.
CHECKPOINT = {"tensorflow": "model.ckpt", "pytorch": "model.ckpt.pt"}


class DpProfile(StrictModel):
    """How to run `dp`."""

    command: list[str] = Field(default_factory=lambda: ["dp"], description="argv of dp")
    backend: Backend = Field("tensorflow", description="'tensorflow' runs on CPU and GPU; "
                             "'pytorch' needs a torch matching deepmd-kit's build")
    threads: int | None = Field(None, ge=1, description="OMP_NUM_THREADS and TensorFlow's "
                                "intra/inter-op threads; unset: dp's defaults")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables set "
                                "for dp (e.g. CUDA_VISIBLE_DEVICES)")
    timeout_s: float | None = Field(None, gt=0, description="wall-time limit of one dp call")

    def argv(self, *args: str) -> list[str]:
        return [*self.command, BACKEND_FLAG[self.backend], *args]

    def environment(self) -> dict[str, str]:
        env = dict(self.env)
        if self.threads is not None:
            for key in ("OMP_NUM_THREADS", "TF_INTRA_OP_PARALLELISM_THREADS",
                        "TF_INTER_OP_PARALLELISM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS",
                        "DP_INTER_OP_PARALLELISM_THREADS"):
                env.setdefault(key, str(self.threads))
        return env


def check_dp(profile: DpProfile, probe_dir: Path) -> None:
    """Raise MissingInputError before any work when `dp` or its backend cannot run.

    The PyTorch backend is probed: `dp --pt train <missing file>` imports deepmd.pt (and
    torch with deepmd's compiled ops) before it looks for the file, so a missing torch or
    one that does not match deepmd-kit's build fails there with its own message.
    """
    exe = profile.command[0]
    if os.sep not in exe and shutil.which(exe) is None:
        raise MissingInputError(f"DeePMD-kit's {exe!r} not found on PATH; install deepmd-kit "
                                "(e.g. pip install 'opshelf-train[deepmd-cpu]')")
    if profile.backend != "pytorch":
        return
    probe = "opshelf-backend-probe.json"
    try:
        result = run_command(profile.argv("train", probe), probe_dir, env=profile.environment(),
                             timeout=profile.timeout_s, log_name="dp-backend-probe",
                             check=False)
    except CommandError as exc:
        raise MissingInputError(f"cannot start DeePMD-kit: {exc}") from None
    text = result.stdout() + result.stderr()
    if probe in text and "No such file" in text:
        return  # it got as far as opening the (missing) input: the backend loads
    last = [line for line in text.splitlines() if line.strip()][-1:] or ["(no output)"]
    raise MissingInputError(
        "DeePMD-kit's PyTorch backend cannot run here (torch missing or not the version "
        f"deepmd-kit was built for): {last[0].strip()}; use backend 'tensorflow', or install "
        f"the torch deepmd-kit was built against (log: {result.stderr_path})")
