"""SevenNet fine-tuning: the `sevennet` plugin of `opshelf.trainers` (SevenNet-0 and
SevenNet-l3i5 ship in the sevenn wheel) and the `sevennet-finetuned` model
(`opshelf.models`) that loads the checkpoint it writes, for opshelf-md's ase-ensemble engine
and any ASE code.

Steps of one fine-tune, as the chgnet trainer's: load the pretrained checkpoint
(`sevenn.util.load_checkpoint`); refit the per-element energy shift of its output layer
(`rescale_atomic_energy.shift`, eV per atom of each element) to the new labels by least
squares, so the network does not spend its few frames learning another code's energy zero;
freeze the embeddings and all but the last interaction block; train per-atom energy and
forces (MSE) with sevenn's own Trainer (Adam, cosine schedule); save a sevenn checkpoint
`checkpoint.pth` (the pretrained one's config, the trained weights), which
`SevenNetCalculator(model=path)` and `sevenn`'s own tools read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.train.universal import UniversalFinetune, torch_device, torch_threads

if TYPE_CHECKING:
    from ase import Atoms

MODEL_FILE = "checkpoint.pth"
#: kept as pretrained when `freeze_embeddings` (SevenNet module names; the interaction
#: blocks are `<i>_...`, and every block but the last is frozen too)
FROZEN_PREFIXES = ("edge_embedding", "onehot_idx_to_onehot", "onehot_to_feature_x")


def load_base(base_model: str) -> Any:
    """The sevenn checkpoint `base_model` names (a pretrained name or a file); a
    ConfigError naming the valid names when it is neither, or when it is multi-fidelity."""
    from sevenn.util import load_checkpoint

    try:
        checkpoint = load_checkpoint(base_model)
        config = checkpoint.config
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"finetune base_model {base_model!r} (sevennet): "
                          f"{' '.join(str(exc).split())}") from None
    if config.get("use_modality"):
        raise ConfigError(f"finetune base_model {base_model!r} (sevennet): a multi-fidelity "
                          "checkpoint; fine-tuning takes a single-fidelity one (7net-0, "
                          "7net-l3i5)")
    return checkpoint


def shift_energy_reference(model: Any, frames: Sequence[Atoms]) -> np.ndarray:
    """Add to SevenNet's per-element energy shift (eV/atom, indexed by the model's type
    map) the least-squares correction that makes its energies match the frames'; returns
    the correction per type index (zero for elements the frames lack)."""
    import torch
    from sevenn.calculator import SevenNetCalculator

    calculator = SevenNetCalculator(model=model, file_type="model_instance",
                                    device=next(model.parameters()).device)
    shift = model.rescale_atomic_energy.shift
    counts = np.zeros((len(frames), shift.shape[0]))
    residual = np.zeros(len(frames))
    for row, frame in enumerate(frames):
        atoms = frame.copy()
        atoms.calc = calculator
        residual[row] = frame.get_potential_energy() - atoms.get_potential_energy()
        for number in frame.get_atomic_numbers():
            counts[row, model.type_map[int(number)]] += 1
    correction = np.linalg.lstsq(counts, residual, rcond=None)[0]  # minimum norm
    with torch.no_grad():
        shift += torch.as_tensor(correction, dtype=shift.dtype, device=shift.device)
    return correction


def freeze_early_layers(model: Any, num_blocks: int) -> None:
    """Keep the embeddings and the first `num_blocks - 1` interaction blocks as
    pretrained; the last block and the readout learn."""
    frozen = FROZEN_PREFIXES + tuple(f"{block}_" for block in range(num_blocks - 1))
    for name, parameter in model.named_parameters():
        if name.startswith(frozen):
            parameter.requires_grad_(False)


def _loader(frames: Sequence[Atoms], cutoff: float, batch_size: int, seed: int) -> Any:
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import atoms_to_graph
    from torch_geometric.loader import DataLoader

    graphs = [AtomGraphData.from_numpy_dict(atoms_to_graph(f, cutoff, y_from_calc=True))
              for f in frames]
    return DataLoader(graphs, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def _trainer(model: Any, options: UniversalFinetune, learning_rate: float,
             device: str) -> Any:
    import torch
    from sevenn.train.loss import ForceLoss, PerAtomEnergyLoss
    from sevenn.train.trainer import Trainer

    mse = torch.nn.MSELoss()
    losses = [(PerAtomEnergyLoss(criterion=mse), options.energy_weight),
              (ForceLoss(criterion=mse), options.force_weight)]
    return Trainer(model, losses, torch.optim.Adam, {"lr": learning_rate},
                   torch.optim.lr_scheduler.CosineAnnealingLR, {"T_max": options.epochs},
                   device=device)


def _save(checkpoint: Any, trainer: Any, epochs: int, path: Path) -> None:
    """The pretrained checkpoint's config with the trained weights, as a sevenn checkpoint.
    Its version is this sevenn's: the weights are in this version's layout, and sevenn
    re-sorts the convolution weights of a checkpoint it takes for an older one (SevenNet-0
    says 0.9.x), which scrambled them (held-out force RMSE 0.07 -> 0.26 eV/A on reload)."""
    import sevenn
    import torch

    saved = checkpoint.get_checkpoint_dict()
    saved["config"]["version"] = sevenn.__version__
    saved.update(model_state_dict=trainer.model.state_dict(), epoch=epochs,
                 optimizer_state_dict=trainer.optimizer.state_dict(),
                 scheduler_state_dict=trainer.scheduler.state_dict())
    torch.save(saved, path)


class SevennetTrainer:
    """Fine-tunes SevenNet; its checkpoints load with the `sevennet-finetuned` model."""

    calculator = "sevennet-finetuned"
    default_base_model = "7net-0"
    default_learning_rate = 3e-3

    def pretrained_calculator(self, options: UniversalFinetune) -> Any:
        from sevenn.calculator import SevenNetCalculator

        checkpoint = load_base(options.base_model or self.default_base_model)
        return SevenNetCalculator(model=checkpoint.checkpoint_path,
                                  device=torch_device(options.device))

    def finetune(self, frames: Sequence[Atoms], work_dir: Path, options: UniversalFinetune,
                 seed: int) -> Path:
        import torch

        work_dir.mkdir(parents=True, exist_ok=True)
        device = torch_device(options.device)
        checkpoint = load_base(options.base_model or self.default_base_model)
        config = checkpoint.config
        with torch_threads(options.threads):
            torch.manual_seed(seed)
            model = checkpoint.build_model().to(device)
            if options.shift_energy:
                shift_energy_reference(model, frames)
            if options.freeze_embeddings:
                freeze_early_layers(model, config["num_convolution_layer"])
            trainer = _trainer(model, options,
                               options.learning_rate or self.default_learning_rate, device)
            loader = _loader(frames, config["cutoff"], options.batch_size, seed)
            for _ in range(options.epochs):
                trainer.run_one_epoch(loader, is_train=True)
                trainer.scheduler_step()
            _save(checkpoint, trainer, options.epochs, work_dir / MODEL_FILE)
        return work_dir / MODEL_FILE


def sevennet_finetuned(model: str, device: str = "cpu", **kwargs: Any) -> Any:
    """A fine-tuned SevenNet (`checkpoint.pth` of the `sevennet` trainer) as an ASE
    calculator."""
    from sevenn.calculator import SevenNetCalculator

    path = Path(model).expanduser()
    if not path.is_file():
        raise MissingInputError(f"model 'sevennet-finetuned': file not found: {model}")
    return SevenNetCalculator(model=str(path), device=torch_device(device), **kwargs)
