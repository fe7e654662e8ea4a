"""CHGNet fine-tuning: the `chgnet` plugin of `opshelf.trainers` (weights ship in the chgnet
wheel: 0.3.0, 0.2.0, r2scan) and the `chgnet-finetuned` model (`opshelf.models`) that loads
the file it writes, for opshelf-md's ase-ensemble engine and any ASE code.

Steps of one fine-tune: load the pretrained model; refit the per-element energy reference
(CHGNet's composition model, energies per atom) to the new labels by least squares, so the
network does not spend its few frames learning another code's energy zero; freeze the
embeddings and the first interaction layers; train energy and forces with chgnet's own
Trainer (Adam, cosine schedule, MSE); save the last model as `model.pth`
(`CHGNet.from_file` reads it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from opshelf.core.errors import MissingInputError
from opshelf.train.universal import UniversalFinetune, torch_device, torch_threads

if TYPE_CHECKING:
    from ase import Atoms

MODEL_FILE = "model.pth"
#: layers kept as pretrained when `freeze_embeddings` (CHGNet attribute names; the last
#: atom-convolution layer and the readout learn)
FROZEN = ("atom_embedding", "bond_embedding", "angle_embedding", "bond_basis_expansion",
          "angle_basis_expansion", "bond_conv_layers", "angle_layers")


def shift_energy_reference(model: Any, frames: Sequence[Atoms]) -> np.ndarray:
    """Add to CHGNet's per-element reference energies (eV/atom, composition fractions) the
    least-squares shift that makes its mean prediction match the frames' energies; returns
    the shift per atomic number (zero for elements the frames lack)."""
    import torch
    from pymatgen.io.ase import AseAtomsAdaptor

    weight = model.composition_model.fc.weight  # (1, max elements), index Z - 1
    fractions = np.zeros((len(frames), weight.shape[1]))
    residual = np.zeros(len(frames))
    for row, frame in enumerate(frames):
        numbers = frame.get_atomic_numbers()
        np.add.at(fractions[row], numbers - 1, 1.0 / len(numbers))
        predicted = model.predict_structure(AseAtomsAdaptor.get_structure(frame))["e"]
        residual[row] = frame.get_potential_energy() / len(numbers) - float(predicted)
    shift = np.linalg.lstsq(fractions, residual, rcond=None)[0]  # minimum norm: 0 if absent
    with torch.no_grad():
        weight[0] += torch.as_tensor(shift, dtype=weight.dtype)
    return shift


def _loader(frames: Sequence[Atoms], batch_size: int, seed: int) -> Any:
    import torch
    from chgnet.data.dataset import StructureData, collate_graphs
    from pymatgen.io.ase import AseAtomsAdaptor
    from torch.utils.data import DataLoader

    data = StructureData(
        structures=[AseAtomsAdaptor.get_structure(f) for f in frames],
        energies=[f.get_potential_energy() / len(f) for f in frames],
        forces=[f.get_forces() for f in frames])
    return DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=collate_graphs,
                      generator=torch.Generator().manual_seed(seed))


class ChgnetTrainer:
    """Fine-tunes CHGNet; its models load with the `chgnet-finetuned` calculator."""

    calculator = "chgnet-finetuned"
    default_base_model = "0.3.0"
    default_learning_rate = 1e-3

    def pretrained_calculator(self, options: UniversalFinetune) -> Any:
        from chgnet.model import CHGNet, CHGNetCalculator

        device = torch_device(options.device)
        model = CHGNet.load(model_name=options.base_model or self.default_base_model,
                            use_device=device, verbose=False)
        return CHGNetCalculator(model=model, use_device=device)

    def finetune(self, frames: Sequence[Atoms], work_dir: Path, options: UniversalFinetune,
                 seed: int) -> Path:
        import torch
        from chgnet.model import CHGNet
        from chgnet.trainer import Trainer

        work_dir.mkdir(parents=True, exist_ok=True)
        device = torch_device(options.device)
        with torch_threads(options.threads):
            torch.manual_seed(seed)
            model = CHGNet.load(model_name=options.base_model or self.default_base_model,
                                use_device=device, verbose=False)
            if options.shift_energy:
                shift_energy_reference(model, frames)
            if options.freeze_embeddings:
                for name in FROZEN:
                    getattr(model, name).requires_grad_(False)
                model.atom_conv_layers[:-1].requires_grad_(False)
            trainer = Trainer(model=model, targets="ef", optimizer="Adam", scheduler="CosLR",
                              criterion="MSE", epochs=options.epochs,
                              learning_rate=options.learning_rate
                              or self.default_learning_rate, use_device=device,
                              energy_loss_ratio=options.energy_weight,
                              force_loss_ratio=options.force_weight, print_freq=10**6)
            loader = _loader(frames, options.batch_size, seed)
            trainer.train(loader, loader, save_dir=str(work_dir / "checkpoints"),
                          save_test_result=False)
            torch.save({"model": trainer.model.as_dict()}, work_dir / MODEL_FILE)
        return work_dir / MODEL_FILE


def chgnet_finetuned(model: str, device: str = "cpu", **kwargs: Any) -> Any:
    """A fine-tuned CHGNet (`model.pth` of the `chgnet` trainer) as an ASE calculator."""
    from chgnet.model import CHGNet, CHGNetCalculator

    path = Path(model).expanduser()
    if not path.is_file():
        raise MissingInputError(f"model 'chgnet-finetuned': file not found: {model}")
    device = torch_device(device)
    loaded = CHGNet.from_file(str(path))
    return CHGNetCalculator(model=loaded, use_device=device, **kwargs)
