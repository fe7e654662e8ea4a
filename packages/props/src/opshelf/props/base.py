"""What every property shares: parameters, the make -> run -> post contract, outcomes.

A property is three steps, the same in a script and in a dflow workflow:

    make  structure + params -> engine task dirs (core's `write_task`) + a context dir
    run   each task dir with core's `run_engine_task` (a sliced fan-out in dflow)
    post  context dir + labelled task outputs -> result dict (units in the key names),
          written as <type>.json with a plot <type>.png where one helps

`make` and `post` are pure functions of files: no dflow import here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import dpdata
import numpy as np
from pydantic import BaseModel, ConfigDict

from opshelf.core.config import StrictModel
from opshelf.core.engine import Engine, Task
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.ops.labelling import TaskReport

if TYPE_CHECKING:
    from ase import Atoms

#: eV/A^3 -> GPa (CODATA 2018 elementary charge)
EV_PER_A3_TO_GPA = 160.21766208
#: eV/A^2 -> J/m^2
EV_PER_A2_TO_J_PER_M2 = 16.021766208

CONTEXT_FILE = "context.json"
STRUCTURE_FILE = "structure.extxyz"


class PropertyFailed(RuntimeError):
    """The tasks of a property ran, but too few succeeded to compute it (names them)."""


@dataclass
class PropertyTask:
    """One engine calculation a property needs."""

    name: str
    atoms: Atoms
    task: Task


class PropertyContext(BaseModel):
    """What `post` needs from `make`, written as context.json by `make_property` and read
    back typed: each property's subclass fixes `type` (the discriminator of
    `opshelf.props.registry.PropertyContextRecord`), its params model and its own fields."""

    model_config = ConfigDict(extra="forbid")

    type: str
    #: the params `make` ran with (resolved for the engine)
    params: Any
    #: every task `make` wrote, in order (filled in by `Made` from its tasks)
    task_names: list[str] = []


@dataclass
class Made:
    """What `make` returns: the tasks and the typed record of what `post` needs to know
    about them (the property's `Context`; its `task_names` are set here from `tasks`)."""

    tasks: list[PropertyTask]
    context: PropertyContext
    #: extra files for post (name -> text), written into the context dir
    files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.context.task_names = [task.name for task in self.tasks]


@dataclass
class Outcome:
    """One finished task, read back from its labelled dir."""

    name: str
    ok: bool
    reason: str = ""
    atoms: Atoms | None = None  # final structure (relaxed, for a relax task)
    energy_eV: float | None = None
    forces_eV_per_A: np.ndarray | None = None
    #: 3x3, positive in tension (ASE's sign: -virial / volume), GPa; None without virial
    stress_GPa: np.ndarray | None = None


class Property(ABC):
    """A property: typed parameters, `make` and `post`."""

    type: ClassVar[str]
    Params: ClassVar[type[StrictModel]]
    #: the typed record of what `post` reads (a PropertyContext subclass)
    Context: ClassVar[type[PropertyContext]]
    #: the result keys a reader looks for first (printed by the runner)
    headline: ClassVar[tuple[str, ...]] = ()

    def for_engine(self, params: Any, engine: Engine) -> Any:
        """`params` with what depends on the engine resolved (e.g. a default that needs an
        engine feature); ConfigError when the engine cannot do what they ask. Runs before
        `make`; the resolved params are what `post` sees."""
        return params

    @abstractmethod
    def make(self, atoms: Atoms, params: Any) -> Made:
        """The engine tasks of this property for `atoms` (the equilibrium structure)."""

    def count_tasks(self, atoms: Atoms, params: Any) -> int:
        """How many tasks `make` would write (sizes a fan-out when a workflow is built).
        Override where `make` is costly and the count is not (surface, elastic)."""
        return len(self.make(atoms, params).tasks)

    @abstractmethod
    def post(self, context: Any, outcomes: Mapping[str, Outcome], params: Any,
             context_dir: Path, out_dir: Path) -> dict[str, Any]:
        """The result from the finished tasks; may write a plot into `out_dir`."""


# -- helpers every property uses -----------------------------------------------------------
def atoms_to_frame(atoms: Atoms) -> dpdata.System:
    return dpdata.System(atoms, fmt="ase/structure")


def read_structure(path: str | Path) -> Atoms:
    """One structure from any file ASE reads (the last frame of a trajectory)."""
    import ase.io

    path = Path(path)
    if path.is_dir():
        candidates = [path / STRUCTURE_FILE, *sorted(path.glob("*.extxyz"))]
        path = next((p for p in candidates if p.is_file()), path)
    if not path.is_file():
        raise MissingInputError(f"structure file not found: {path}")
    try:
        atoms = ase.io.read(path, index=-1)
    except Exception as exc:  # ase raises many types for unreadable files
        raise ConfigError(f"cannot read a structure from {path}: {type(exc).__name__}: {exc}"
                          ) from None
    if not atoms.pbc.all():
        raise ConfigError(f"{path}: properties need a periodic crystal (pbc on all axes)")
    return atoms


def elements_of(atoms: Atoms) -> list[str]:
    return list(dict.fromkeys(atoms.get_chemical_symbols()))


def outcome_from_dir(labelled_dir: Path) -> Outcome:
    """An Outcome from a labelled dir written by core's `run_engine_task`."""
    report = TaskReport.read(labelled_dir)
    name = report.task
    if not report.ok:
        return Outcome(name=name, ok=False, reason=report.reason)
    system = dpdata.LabeledSystem(str(labelled_dir), fmt="deepmd/npy")
    last = system.sub_system([system.get_nframes() - 1])
    atoms = last.to("ase/structure")[0]
    energy = float(last["energies"][0])
    stress = None
    if "virials" in last.data:
        volume = abs(float(np.linalg.det(last["cells"][0])))
        stress = -np.asarray(last["virials"][0]) / volume * EV_PER_A3_TO_GPA
    return Outcome(name=name, ok=True, atoms=atoms, energy_eV=energy,
                   forces_eV_per_A=np.asarray(last["forces"][0]), stress_GPa=stress)


def require(outcomes: Mapping[str, Outcome], names: Sequence[str], what: str
            ) -> list[Outcome]:
    """The outcomes of `names`, or PropertyFailed naming every missing or failed task."""
    problems = []
    for name in names:
        outcome = outcomes.get(name)
        if outcome is None:
            problems.append(f"{name}: no output")
        elif not outcome.ok:
            problems.append(f"{name}: {outcome.reason}")
    if problems:
        raise PropertyFailed(f"{what}: {len(problems)} of {len(names)} tasks failed: "
                             + "; ".join(problems))
    return [outcomes[name] for name in names]


def as_pymatgen(atoms: Atoms) -> Any:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


def as_ase(structure: Any) -> Atoms:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)


def lattice_kind(atoms: Atoms, symprec: float = 1e-3) -> str:
    """'fcc', 'bcc', 'hcp' for an elemental crystal of that lattice, else 'other'."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if len(set(atoms.get_chemical_symbols())) != 1:
        return "other"
    number = SpacegroupAnalyzer(as_pymatgen(atoms), symprec=symprec).get_space_group_number()
    return {225: "fcc", 229: "bcc", 194: "hcp"}.get(number, "other")


def conventional_cell(atoms: Atoms, symprec: float = 1e-3) -> Atoms:
    """The conventional standard cell (cubic for fcc/bcc, hexagonal for hcp)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    analyzer = SpacegroupAnalyzer(as_pymatgen(atoms), symprec=symprec)
    return as_ase(analyzer.get_conventional_standard_structure())


def cubic_lattice_constant(atoms: Atoms, rtol: float = 1e-4) -> float | None:
    """a of a cubic cell (lengths equal and angles 90 degrees within `rtol`), else None.

    A tolerance, not equality: a cell relaxed by an optimizer (e.g. CHGNet's) is cubic only
    to ~1e-5. a is the edge of the cube of the same volume."""
    lengths, angles = atoms.cell.lengths(), atoms.cell.angles()
    if np.allclose(angles, 90.0, rtol=0, atol=90.0 * rtol) and np.allclose(
            lengths, lengths.mean(), rtol=rtol, atol=0):
        return float(atoms.get_volume() ** (1 / 3))
    return None


def to_jsonable(value: Any) -> Any:
    """numpy scalars and arrays -> Python floats and lists, recursively."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display in steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
