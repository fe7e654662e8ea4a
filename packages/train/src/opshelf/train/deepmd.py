"""How `dp` (DeePMD-kit's command line) is launched: command, backend, threads, environment.

`dp` runs as a program through core's `run_command`, so it may come from this venv, conda
or an HPC module; nothing here imports deepmd.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from opshelf.core.bounds import PoolSize, TimeoutS, WorkerCountOrZero
from opshelf.core.config import StrictModel
from opshelf.core.errors import CommandError, ConfigError, MissingInputError
from opshelf.core.process import run_command
from opshelf.train.script import FinetuneOptions

#: The backend names a DpProfile accepts.
BACKENDS = ("tensorflow", "pytorch")


class TensorFlowBackend(StrictModel):
    """DeePMD-kit's TensorFlow backend (`dp --tf`): frozen models are `.pb` files."""

    name: Literal["tensorflow"] = Field("tensorflow", description="the TensorFlow backend: "
                                        "se_e2_a, se_atten(_v2), ...; CPU and GPU")
    flag: ClassVar[str] = "--tf"

    def environment(self) -> dict[str, str]:
        return {}
    frozen_model: ClassVar[str] = "frozen_model.pb"
    #: the checkpoint `--restart` continues from
    checkpoint: ClassVar[str] = "model.ckpt"

    def has_checkpoint(self, work_dir: Path) -> bool:
        return (work_dir / "checkpoint").is_file() and (work_dir / "model.ckpt.index").is_file()

    def init_model_args(self, model: Path, use_pretrain_script: bool = False) -> list[str]:
        """A frozen `.pb` starts with `--init-frz-model`, a checkpoint prefix `--init-model`."""
        if use_pretrain_script:
            raise ConfigError("init_model.use_pretrain_script: the TensorFlow backend takes "
                              "the model section from the template; set dp.backend: pytorch")
        flag = "--init-frz-model" if model.suffix == ".pb" else "--init-model"
        return [flag, str(model.resolve())]

    def finetune_args(self, model: Path, options: FinetuneOptions) -> list[str]:
        if model.suffix != ".pb":
            raise ConfigError(f"finetune_model {model.name!r}: the TensorFlow backend fine-tunes "
                              "a frozen .pb; for a .pt checkpoint set dp.backend: pytorch")
        if options.model_branch is not None:
            raise ConfigError("finetune.model_branch: the TensorFlow backend has no multi-task "
                              "models; set dp.backend: pytorch")
        return ["--finetune", str(model.resolve())]  # TF always uses the pretrained script


class PyTorchBackend(StrictModel):
    """DeePMD-kit's PyTorch backend (`dp --pt`): se_e2_a, DPA-2, DPA-3, multi-task models and
    fine-tuning of pretrained checkpoints (`.pt`); frozen models are `.pth` files."""

    name: Literal["pytorch"] = Field("pytorch", description="the PyTorch backend: "
                                     "se_e2_a, DPA-2, DPA-3, fine-tuning of .pt checkpoints; "
                                     "needs the torch deepmd-kit was built against")
    data_workers: WorkerCountOrZero | None = Field(
        None, description="worker processes of dp's data loader (NUM_WORKERS); 0 loads "
        "in the training process. Unset: deepmd-kit's default (up to 4); on a busy 2-core "
        "machine a DPA-2 run with workers died with 'Shared memory manager connection has "
        "timed out'")
    flag: ClassVar[str] = "--pt"
    frozen_model: ClassVar[str] = "frozen_model.pth"
    checkpoint: ClassVar[str] = "model.ckpt.pt"

    def environment(self) -> dict[str, str]:
        return {} if self.data_workers is None else {"NUM_WORKERS": str(self.data_workers)}

    def has_checkpoint(self, work_dir: Path) -> bool:
        return (work_dir / self.checkpoint).exists()

    def init_model_args(self, model: Path, use_pretrain_script: bool = False) -> list[str]:
        """A checkpoint `.pt` starts with `--init-model`, a frozen `.pth` `--init-frz-model`;
        `use_pretrain_script`: the model section comes from that model, not the script."""
        flags = {".pt": "--init-model", ".pth": "--init-frz-model"}
        if model.suffix not in flags:
            raise ConfigError(f"init_model {model.name!r}: the PyTorch backend starts from a "
                              "checkpoint .pt or a frozen .pth")
        args = [flags[model.suffix], str(model.resolve())]
        return [*args, "--use-pretrain-script"] if use_pretrain_script else args

    def finetune_args(self, model: Path, options: FinetuneOptions) -> list[str]:
        # deepmd-kit 3.2 reads the model to fine-tune with torch.load(weights_only=True),
        # which refuses a frozen .pth (a TorchScript archive): measured, not documented
        if model.suffix != ".pt":
            raise ConfigError(f"finetune_model {model.name!r}: the PyTorch backend fine-tunes "
                              "a checkpoint .pt (model.ckpt.pt; deepmd-kit 3.2 cannot read a "
                              "frozen .pth for --finetune)")
        args = ["--finetune", str(model.resolve())]
        if options.model_branch is not None:
            args += ["--model-branch", options.model_branch]
        if options.use_pretrain_script:
            args.append("--use-pretrain-script")
        return args


#: The backend choice of a DpProfile: `{name: tensorflow}` or `{name: pytorch}` (or the name).
DpBackend = Annotated[TensorFlowBackend | PyTorchBackend, Field(discriminator="name")]


class DpProfile(StrictModel):
    """How to run `dp`."""

    command: list[str] = Field(default_factory=lambda: ["dp"], description="argv of dp")
    backend: DpBackend = Field(default_factory=TensorFlowBackend, description="DeePMD-kit's "
                               "backend: 'tensorflow' (default) or 'pytorch' (a name, or "
                               "{name: ...})")
    threads: PoolSize | None = Field(None, description="OMP_NUM_THREADS and TensorFlow's "
                                "intra/inter-op threads; unset: dp's defaults")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables set "
                                "for dp (e.g. CUDA_VISIBLE_DEVICES)")
    timeout_s: TimeoutS | None = Field(None, description="wall-time limit of one dp call "
                                    "(of train and freeze together when they share a process)")
    one_process: bool = Field(True, description="train and freeze in one process of dp's "
                              "Python (the framework imported once, not twice) when `command` "
                              "is a Python console script; false, or any other command: two "
                              "dp calls")

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_by_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in BACKENDS:
                raise ValueError(f"unknown backend {value!r}; use one of "
                                 f"{', '.join(map(repr, BACKENDS))}")
            return {"name": value}
        return value

    def argv(self, *args: str) -> list[str]:
        return [*self.command, self.backend.flag, *args]

    def environment(self) -> dict[str, str]:
        env = {**self.backend.environment(), **self.env}
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
    if not isinstance(profile.backend, PyTorchBackend):
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
