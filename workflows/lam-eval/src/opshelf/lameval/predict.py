"""Evaluate a model on many structures: batched where the model supports it, else an ASE loop.

A per-structure ASE loop pays the model's per-call latency (graph building, a small forward
pass, Python overhead) once per structure; packing many structures into one forward pass is
where the speed is for graph networks. CHGNet batches with `CHGNet.predict_structure(list)`,
SevenNet with torch-geometric batching of its atom graphs. Any other calculator (EMT, DeePMD,
an import path) runs in the ASE loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import Field

from opshelf.core.bounds import BatchSize, PoolSize
from opshelf.core.config import StrictModel
from opshelf.core.models import load_calculator

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import BaseCalculator

#: GPa -> eV/A^3 (CHGNet's stresses are in GPa)
GPA_TO_EV_PER_A3 = 1 / 160.21766208
#: calculators with a batched evaluation here
BATCHED = ("chgnet", "sevennet")
#: calculators spread over one worker process per core on a CPU by default (`workers: null`)
POOLED = ("chgnet", "sevennet", "deepmd")


class ModelSpec(StrictModel):
    """One model on the leaderboard."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="leaderboard label (letters, digits, _ . -)")
    calculator: str = Field(description="'opshelf.models' entry point (emt, chgnet, sevennet, "
                            "deepmd, ...) or an import path 'module:factory'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to the calculator")
    batched: bool | None = Field(
        None, description="batched inference where the model supports it "
        f"({', '.join(BATCHED)}); false: a per-structure ASE loop; null (default): batched on "
        "a GPU, the ASE loop on a CPU (measured on 2 cores: batches of 32 were ~2x slower "
        "than the loop for CHGNet and SevenNet-0, batches of 4 about as fast)")
    batch_size: BatchSize = Field(32, description="structures per forward pass")
    threads: PoolSize | None = Field(
        None, description="CPU threads of a torch model (torch.set_num_threads) while "
        "it is evaluated; null: torch's default, every core. Set it to the cores a shared "
        "node gives you: on 2 busy cores (load ~8) a CHGNet job took 166 s with torch's "
        "default and 22 s with 1 thread")
    workers: PoolSize | None = Field(
        None, description="worker processes that share a data set's structures on a "
        "CPU (the accuracy task), each with its own copy of the model and `threads` torch "
        "threads (unset: the usable cores divided among the workers, one each by default); "
        f"1: this process alone. null (default): one per usable core (the process's CPU "
        f"affinity) for {', '.join(POOLED)} on a CPU, else 1; never with batches")

    def uses_batches(self) -> bool:
        """Whether this model is evaluated in batches here (resolves `batched: null`)."""
        if self.calculator not in BATCHED:
            return False
        if self.batched is not None:
            return self.batched
        from opshelf.lameval.models import torch_device

        return torch_device(self.kwargs.get("device", "auto")).startswith("cuda")

    def pool_plan(self) -> tuple[int, int]:
        """(worker processes, torch threads in each) of this model's evaluation; (1, ...)
        means in this process. Batches (a GPU) always run in this process."""
        from opshelf.lameval.pool import usable_cores

        cores = usable_cores()
        if self.uses_batches():
            return 1, self.threads or cores
        workers = self.workers
        if workers is None:
            workers = cores if self.calculator in POOLED and self._on_cpu() else 1
        return workers, self.threads or max(1, cores // workers)

    def _on_cpu(self) -> bool:
        from opshelf.lameval.models import torch_device

        device = self.kwargs.get("device", "auto")
        return device == "cpu" or (device == "auto" and torch_device("auto") == "cpu")


@dataclass
class Prediction:
    """A model's labels for one structure (ASE units)."""

    energy_eV: float
    forces_eV_per_A: np.ndarray
    #: 3x3, ASE's sign (positive in tension), eV/A^3; None when the model gives none
    stress_eV_per_A3: np.ndarray | None

    def virial_eV(self, volume_A3: float) -> np.ndarray | None:
        """dpdata's virial (-stress x volume), eV."""
        return None if self.stress_eV_per_A3 is None else -self.stress_eV_per_A3 * volume_A3


def _voigt_to_matrix(stress: np.ndarray) -> np.ndarray:
    from ase.stress import voigt_6_to_full_3x3_stress

    return voigt_6_to_full_3x3_stress(np.asarray(stress, dtype=float))


class AseLoopPredictor:
    """One `get_potential_energy` / `get_forces` / `get_stress` call per structure."""

    batched = False

    def __init__(self, calc: BaseCalculator) -> None:
        self.calc = calc

    def predict(self, frames: Sequence[Atoms]) -> list[Prediction]:
        from ase.calculators.calculator import PropertyNotImplementedError

        out = []
        for frame in frames:
            atoms = frame.copy()
            atoms.calc = self.calc
            energy = float(atoms.get_potential_energy())
            forces = np.array(atoms.get_forces())
            stress = None
            if atoms.pbc.all():
                try:
                    stress = _voigt_to_matrix(atoms.get_stress())
                except (PropertyNotImplementedError, NotImplementedError):
                    stress = None
            out.append(Prediction(energy, forces, stress))
        return out

    def close(self) -> None:
        """Nothing to release (the pool's counterpart shuts its workers down)."""


def _chunks(frames: Sequence[Atoms], size: int) -> Iterator[Sequence[Atoms]]:
    for start in range(0, len(frames), size):
        yield frames[start:start + size]


class ChgnetBatchPredictor:
    """CHGNet's own batching: `predict_structure(list of structures, batch_size)`."""

    batched = True

    def __init__(self, kwargs: dict[str, Any], batch_size: int) -> None:
        from opshelf.lameval.models import load_chgnet_model

        self.model = load_chgnet_model(kwargs.get("model_name", "0.3.0"),
                                       kwargs.get("device", "auto"))
        self.batch_size = batch_size

    def close(self) -> None:
        """Nothing to release (the model stays cached for the process)."""

    def predict(self, frames: Sequence[Atoms]) -> list[Prediction]:
        from pymatgen.io.ase import AseAtomsAdaptor

        structures = [AseAtomsAdaptor.get_structure(atoms) for atoms in frames]
        raw = self.model.predict_structure(structures, task="efs", batch_size=self.batch_size)
        raw = raw if isinstance(raw, list) else [raw]
        return [Prediction(float(r["e"]) * len(atoms), np.asarray(r["f"], dtype=float),
                           np.asarray(r["s"], dtype=float) * GPA_TO_EV_PER_A3)
                for r, atoms in zip(raw, frames)]


class SevennetBatchPredictor:
    """SevenNet's atom graphs batched by torch-geometric, one forward pass per batch."""

    batched = True

    def __init__(self, kwargs: dict[str, Any], batch_size: int) -> None:
        from opshelf.lameval.models import sevennet

        self.calc = sevennet(**kwargs)
        self.batch_size = batch_size

    def close(self) -> None:
        """Nothing to release (the calculator stays cached for the process)."""

    def predict(self, frames: Sequence[Atoms]) -> list[Prediction]:
        import sevenn._keys as KEY
        import torch
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        calc = self.calc
        out: list[Prediction] = []
        calc.model.set_is_batch_data(True)
        try:
            for chunk in _chunks(frames, self.batch_size):
                graphs = []
                for atoms in chunk:
                    graph = AtomGraphData.from_numpy_dict(
                        unlabeled_atoms_to_graph(atoms, calc.cutoff, with_shift=False))
                    if calc.modal:
                        graph[KEY.DATA_MODALITY] = calc.modal
                    graphs.append(graph)
                batch = Batch.from_data_list(graphs).to(calc.device)
                result = calc.model(batch)
                energies = result[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy()
                forces = torch.split(result[KEY.PRED_FORCE].detach().cpu(),
                                     result[KEY.NUM_ATOMS].tolist())
                # SevenNet's stress: -(xx, yy, zz, xy, yz, zx); ASE's Voigt: xx yy zz yz xz xy
                stresses = -result[KEY.PRED_STRESS].detach().cpu().numpy()[:, [0, 1, 2, 4, 5, 3]]
                for energy, force, stress in zip(energies, forces, stresses):
                    out.append(Prediction(float(energy), force.numpy().astype(float),
                                          _voigt_to_matrix(stress)))
        finally:
            calc.model.set_is_batch_data(False)
        return out


def make_predictor(spec: ModelSpec) -> Predictor:
    """The batched predictor of a model that has one (see `ModelSpec.uses_batches`), else the
    ASE loop: in worker processes when `spec.pool_plan()` asks for more than one, else here.
    Close it (`predictor.close()`) when done: a pool's workers hold a model each."""
    if spec.uses_batches():
        return BATCH_PREDICTORS[spec.calculator](spec.kwargs, spec.batch_size)
    workers, threads = spec.pool_plan()
    if workers > 1:
        from opshelf.lameval.pool import PoolPredictor

        return PoolPredictor(loop_from_json, spec.model_dump_json(), workers, threads)
    return AseLoopPredictor(load_calculator(spec.calculator, **spec.kwargs))


def loop_from_json(spec_json: str) -> AseLoopPredictor:
    """A pool worker's predictor: the ASE loop of the model spec in `spec_json`."""
    spec = ModelSpec.model_validate_json(spec_json)
    return AseLoopPredictor(load_calculator(spec.calculator, **spec.kwargs))


#: the batched predictor of each calculator in BATCHED
BATCH_PREDICTORS: dict[str, type[ChgnetBatchPredictor] | type[SevennetBatchPredictor]] = {
    "chgnet": ChgnetBatchPredictor, "sevennet": SevennetBatchPredictor}
assert set(BATCH_PREDICTORS) == set(BATCHED), "a batched calculator without its predictor"


class Predictor(Protocol):
    """What `make_predictor` returns: labels for a list of structures, in their order."""

    batched: bool

    def predict(self, frames: Sequence[Atoms]) -> list[Prediction]: ...

    def close(self) -> None: ...
