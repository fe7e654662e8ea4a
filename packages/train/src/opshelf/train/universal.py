"""Fine-tuning of universal potentials (large atomic models whose weights ship in their
wheels) on a user's labelled frames: a training mode of opshelf-train beside `dp train`.

    deepmd/npy systems (standard or mixed-type)
      --read_labelled_frames--> ASE frames with energies and forces
      --finetune_universal--> work dir: model file(s), metrics.json, opshelf-finetune.json

A trainer is a plugin: an entry point of the group `opshelf.trainers` naming a class with
`finetune(frames, work_dir, options) -> Path` and a `calculator` model name (an
`opshelf.models` entry point that loads the file it wrote), so the fine-tuned models are
an ensemble opshelf-md's ase-ensemble engine can run and compute model deviation with.
Pure functions, no dflow; the trainer's own library (chgnet, ...) is imported only by its
plugin.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import Field

from opshelf.core.bounds import BatchSize, PoolSize, Seed, Weight
from opshelf.core.config import StrictModel
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.train.data import find_systems, is_mixed_type

if TYPE_CHECKING:
    from ase import Atoms

TRAINER_GROUP = "opshelf.trainers"
METRICS_FILE = "metrics.json"
RECORD_FILE = "opshelf-finetune.json"


class UniversalFinetune(StrictModel):
    """How to fine-tune a universal potential (one model of the ensemble per seed)."""

    trainer: str = Field("chgnet", description="an 'opshelf.trainers' entry point: the "
                         "universal potential to fine-tune (chgnet, sevennet)")
    base_model: str | None = Field(None, description="the pretrained weights the trainer "
                                   "starts from, by the name its package gives them (CHGNet: "
                                   "0.3.0, 0.2.0, r2scan; SevenNet: 7net-0, 7net-l3i5, or a "
                                   "checkpoint file); unset: the trainer's default (CHGNet "
                                   "0.3.0, SevenNet 7net-0)")
    epochs: int = Field(20, ge=1, le=10_000, description="passes over the training frames")
    learning_rate: float | None = Field(None, gt=0, le=1, description="Adam's learning rate; unset: the trainer's default (CHGNet 1e-3, SevenNet 3e-3). Measured on 6 EMT frames of Cu4/Cu3Au, held-out force RMSE: CHGNet, 20 epochs, 1e-3 0.074 eV/A, 3e-4 0.106, pretrained 0.165; SevenNet-0, 15 epochs, 3e-3 0.071, 1e-3 0.089, pretrained 0.149")
    batch_size: BatchSize = Field(2, description="frames per optimiser step")
    energy_weight: Weight = Field(1.0, description="weight of the energy (per atom) "
                                 "term of the loss")
    force_weight: Weight = Field(1.0, description="weight of the force term of the loss")
    freeze_embeddings: bool = Field(True, description="keep the embedding and the first "
                                    "interaction layers as pretrained; only the last layers "
                                    "and the readout learn (the usual fine-tuning of few frames)")
    shift_energy: bool = Field(True, description="before training, refit the per-element "
                               "energy reference to the new labels (least squares): another "
                               "code's energy zero is a constant per element, not something "
                               "for the network to learn")
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, description="one "
                             "fine-tuned model per seed (data order, initial state of the "
                             "trainable layers' optimiser): the ensemble")
    threads: PoolSize | None = Field(1, description="torch CPU threads while training; "
                                "unset: torch's default")
    device: str = Field("cpu", description="torch device: cpu, cuda, or auto")


class Trainer(Protocol):
    """What an `opshelf.trainers` plugin provides."""

    #: the `opshelf.models` name whose factory loads a model file this trainer writes
    calculator: str
    #: `base_model` and `learning_rate` when the options leave them unset
    default_base_model: str
    default_learning_rate: float

    def finetune(self, frames: Sequence[Atoms], work_dir: Path,
                 options: UniversalFinetune, seed: int) -> Path: ...

    def pretrained_calculator(self, options: UniversalFinetune) -> Any: ...


def load_trainer(name: str) -> Trainer:
    """The `opshelf.trainers` plugin `name`; ConfigError listing the installed ones."""
    found = {ep.name: ep for ep in entry_points(group=TRAINER_GROUP)}
    if name not in found:
        raise ConfigError(f"finetune trainer {name!r}: not installed; installed trainers: "
                          f"{', '.join(sorted(found)) or 'none'}")
    return found[name].load()()


def with_trainer_defaults(options: UniversalFinetune, trainer: Trainer) -> UniversalFinetune:
    """`options` with the trainer's base model and learning rate where they are unset."""
    return options.model_copy(update={
        "base_model": options.base_model or trainer.default_base_model,
        "learning_rate": options.learning_rate or trainer.default_learning_rate})


def torch_device(device: str) -> str:
    """`device`, with 'auto' resolved to cuda when torch sees a GPU, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to `threads` (unset: unchanged) inside the block."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def read_labelled_frames(paths: Iterable[str | Path]) -> list[Atoms]:
    """Every frame of the deepmd/npy systems at or below `paths`, as ASE atoms carrying
    their energy and forces (a single-point calculator, dpdata's conversion)."""
    import dpdata

    paths = list(paths)
    frames: list[Atoms] = []
    for system in find_systems(paths):
        fmt = "deepmd/npy/mixed" if is_mixed_type(system) else "deepmd/npy"
        data = dpdata.MultiSystems().from_fmt(str(system), fmt=fmt, labeled=True) \
            if fmt.endswith("mixed") else [dpdata.LabeledSystem(str(system), fmt=fmt)]
        for sub in data:
            frames += sub.to("ase/structure")
    if not frames:
        raise MissingInputError(f"no labelled frames in {', '.join(map(str, paths))}")
    return frames


def force_rmse(calculator: Any, frames: Sequence[Atoms]) -> float:
    """Force RMSE (eV/A, over every component) of `calculator` against the frames' labels."""
    errors = []
    for frame in frames:
        reference = frame.get_forces()
        atoms = frame.copy()
        atoms.calc = calculator
        errors.append((atoms.get_forces() - reference).ravel())
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


@dataclass
class FinetuneResult:
    """The ensemble a fine-tune wrote and its held-out figures (None without held-out data)."""

    models: list[Path]
    calculator: str
    metrics: dict[str, Any]


def finetune_universal(train: Sequence[Atoms], work_dir: Path, options: UniversalFinetune,
                       held_out: Sequence[Atoms] = ()) -> FinetuneResult:
    """One fine-tuned model per seed in `work_dir/model-NNN/`; with `held_out` frames, the
    force RMSE of the pretrained model and of each fine-tuned one on them (metrics.json)."""
    from opshelf.core.models import load_calculator

    if not train:
        raise MissingInputError("finetune: no training frames")
    trainer = load_trainer(options.trainer)
    options = with_trainer_defaults(options, trainer)
    work_dir.mkdir(parents=True, exist_ok=True)
    models = [trainer.finetune(train, work_dir / f"model-{i:03d}", options, seed)
              for i, seed in enumerate(options.seeds)]
    metrics: dict[str, Any] = {"trainer": options.trainer, "base_model": options.base_model,
                               "n_train_frames": len(train), "n_held_out_frames": len(held_out)}
    if held_out:
        base = trainer.pretrained_calculator(options)
        metrics["held_out_force_rmse_eV_per_A"] = {
            "pretrained": force_rmse(base, held_out),
            "finetuned": [force_rmse(load_calculator(trainer.calculator, model=str(m),
                                                     device=options.device), held_out)
                          for m in models]}
    (work_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    (work_dir / RECORD_FILE).write_text(json.dumps(
        {"options": options.model_dump(mode="json"), "models": [str(m) for m in models],
         "calculator": trainer.calculator}, indent=2) + "\n")
    return FinetuneResult(models, trainer.calculator, metrics)
