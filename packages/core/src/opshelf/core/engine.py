"""The engine protocol: how every package runs a calculation on a frame.

After ASE's GenericFileIOCalculator, an engine is split into
- a *template*: `write_inputs` (frame + task -> files in a task dir) and `read_results`
  (task dir -> dpdata LabeledSystem + raw files), and
- a *profile*: how to launch it (command, MPI prefix, threads, environment, timeout).

FP codes (opshelf-fp), LAMMPS (opshelf-md) and any ASE calculator (here, in core) all
implement it, so a property or labelling step runs on any of them unchanged. Engines are
found through the `opshelf.engines` entry-point group: no if/elif registry.

An engine is passed to a dflow OP as an `EngineSpec` (name + settings + profile): plain
data that validates on both ends.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

import dpdata
from pydantic import Field, model_validator

from opshelf.core.bounds import (
    DampingTimeFs,
    ForceThresholdEvA,
    PoolSize,
    PressureGPa,
    Seed,
    StepCount,
    TemperatureK,
    TimeoutS,
    TimestepFs,
)
from opshelf.core.config import StrictModel, validate_into
from opshelf.core.errors import CommandError, ConfigError, MissingInputError
from opshelf.core.process import run_command


class TaskKind(StrEnum):
    SINGLE_POINT = "single_point"
    RELAX = "relax"
    MD = "md"


class RelaxOptions(StrictModel):
    """Geometry optimisation. Engines map these onto their own keywords."""

    fmax_eV_per_A: ForceThresholdEvA = Field(0.01, description="force convergence threshold")
    max_steps: StepCount = Field(200, description="at most this many optimiser steps")
    relax_positions: bool = Field(True, description="move the atoms (false: only the cell)")
    relax_cell: bool = Field(False, description="relax cell shape and volume")
    relax_volume_only: bool = Field(False, description="with relax_cell: keep the shape")
    pressure_GPa: PressureGPa = Field(0.0, description="target pressure of a cell relaxation")
    move_axes: list[Literal["x", "y", "z"]] | None = Field(
        None, description="Cartesian directions atoms may move in (e.g. ['z'] relaxes a "
        "stacking fault only normal to its plane); None: all. Fixed cell only. Only engines "
        "listing 'move_axes' in their relax_features run it")

    @model_validator(mode="after")
    def _check_move_axes(self) -> RelaxOptions:
        if self.move_axes is None:
            return self
        if not self.move_axes or len(set(self.move_axes)) != len(self.move_axes):
            raise ValueError(f"move_axes {self.move_axes}: one to three distinct axes of "
                             "x, y, z (None: all)")
        if self.relax_cell or not self.relax_positions:
            raise ValueError("move_axes constrains atoms in a fixed cell: it needs "
                             "relax_positions: true and relax_cell: false")
        return self

    def fixed_axes(self) -> list[int]:
        """Indices (0 x, 1 y, 2 z) of the directions atoms may not move in."""
        free = set(self.move_axes or "xyz")
        return [i for i, axis in enumerate("xyz") if axis not in free]


class MDOptions(StrictModel):
    """Molecular dynamics. Engines map these onto their own keywords."""

    ensemble: Literal["nve", "nvt", "npt"] = Field(
        "nvt", description="nve, nvt (thermostat) or npt (thermostat and barostat)")
    temperature_K: TemperatureK = Field(300.0, description="target temperature, and of the "
                                 "initial velocities")
    pressure_GPa: PressureGPa = Field(0.0, description="target pressure (npt)")
    n_steps: StepCount = Field(100, description="number of MD steps")
    timestep_fs: TimestepFs = Field(1.0, description="time step")
    dump_every: StepCount = Field(10, description="write a frame every this many steps")
    thermostat_tau_fs: DampingTimeFs = Field(100.0, description="thermostat damping time")
    barostat_tau_fs: DampingTimeFs = Field(1000.0, description="barostat damping time (npt)")
    seed: Seed = Field(0, description="seed of the initial velocities")


class Task(StrictModel):
    """What to compute for one frame."""

    kind: TaskKind = Field(TaskKind.SINGLE_POINT,
                           description="single_point (energy, forces, virial), relax or md")
    relax: RelaxOptions | None = Field(None, description="options of kind relax (defaults "
                                       "when unset)")
    md: MDOptions | None = Field(None, description="options of kind md (defaults when unset)")

    def options(self) -> RelaxOptions | MDOptions | None:
        if self.kind is TaskKind.RELAX:
            return self.relax or RelaxOptions()
        if self.kind is TaskKind.MD:
            return self.md or MDOptions()
        return None


class EngineProfile(StrictModel):
    """How to launch an engine's program (ASE's 'profile')."""

    command: list[str] | None = Field(None, description="argv of the program, e.g. ['cp2k.psmp']; the engine's default when unset")
    mpi_prefix: list[str] = Field(default_factory=list, description="e.g. ['mpirun', '-np', '4']")
    threads: PoolSize | None = Field(None, description="OMP_NUM_THREADS")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables "
                                "set for the program")
    timeout_s: TimeoutS | None = Field(None, description="wall-time limit of one run of the "
                                    "program; a task that runs out is recorded as failed "
                                    "(timed_out)")


class EngineSpec(StrictModel):
    """An engine as plain data: what crosses a dflow step boundary."""

    name: str = Field(description="entry point name in the 'opshelf.engines' group, e.g. 'cp2k', 'ase'")
    settings: dict[str, Any] = Field(default_factory=dict, description="the engine's own "
                                     "settings, checked against its Settings model (each "
                                     "package's reference lists them)")
    profile: EngineProfile = Field(default_factory=EngineProfile,
                                   description="how to start the engine's program")


class TaskFailed(RuntimeError):
    """A calculation ran but its result is unusable (unconverged, no forces, NaN)."""

    def __init__(self, reason: str, log_tail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


@dataclass
class EngineResult:
    """What an engine gives back for one task."""

    system: dpdata.LabeledSystem
    raw_files: list[Path] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """Base class of every engine. Subclasses set `name`, `kinds`, `Settings`."""

    name: ClassVar[str]
    kinds: ClassVar[frozenset[TaskKind]] = frozenset({TaskKind.SINGLE_POINT})
    #: Typed, strict settings of this engine (input parameters, pseudopotentials, ...).
    Settings: ClassVar[type[StrictModel]] = StrictModel
    #: Files that `run` keeps besides the labelled data (globs, relative to the task dir).
    raw_file_globs: ClassVar[tuple[str, ...]] = ()
    #: Optional RelaxOptions features this engine implements ("move_axes"); a task that
    #: uses one the engine lacks is refused by `supports` (never silently ignored).
    relax_features: ClassVar[frozenset[str]] = frozenset()
    #: Modules a local run's fork server imports when a workflow names this engine (the
    #: libraries `run`/`read_results` import lazily), so that each step does not pay them.
    preload_modules: ClassVar[tuple[str, ...]] = ()
    #: `run_many` shares one program start among several tasks (LAMMPS: one process,
    #: `clear` between them), so a workflow may pack many cheap tasks into one step.
    packs_tasks: ClassVar[bool] = False

    def __init__(
        self,
        settings: StrictModel | dict[str, Any] | None = None,
        profile: EngineProfile | dict[str, Any] | None = None,
    ) -> None:
        if settings is None or isinstance(settings, dict):
            settings = validate_into(self.Settings, settings or {}, where=f"engine {self.name!r} settings")
        self.settings = settings
        self.profile = profile if isinstance(profile, EngineProfile) else EngineProfile(**(profile or {}))

    # -- template ------------------------------------------------------------------------
    @abstractmethod
    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        """Write every input file for `task` on the single-frame `frame` into `task_dir`."""

    @abstractmethod
    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        """Read a finished task back. Raise TaskFailed when the result is unusable."""

    # -- profile -------------------------------------------------------------------------
    def default_command(self) -> list[str]:
        """argv of the program when the profile names none."""
        raise NotImplementedError(f"engine {self.name!r} runs in-process and has no command")

    def argv(self, task_dir: Path, task: Task) -> list[str]:
        command = self.profile.command or self.default_command()
        return [*self.profile.mpi_prefix, *command, *self.extra_args(task_dir, task)]

    def extra_args(self, task_dir: Path, task: Task) -> list[str]:
        """Arguments after the command (e.g. ['-i', 'input.inp'])."""
        return []

    def environment(self) -> dict[str, str]:
        env = dict(self.profile.env)
        if self.profile.threads is not None:
            env.setdefault("OMP_NUM_THREADS", str(self.profile.threads))
        return env

    # -- checks and running --------------------------------------------------------------
    def check(self, elements: Sequence[str], task: Task | None = None) -> None:
        """Raise MissingInputError before any work starts when something is missing
        (executable, pseudopotential or basis for an element). Default: the executable."""
        try:
            argv = self.profile.command or self.default_command()
        except NotImplementedError:
            return
        exe = argv[0]
        if shutil.which(exe, path=os.environ.get("PATH")) is None:
            raise MissingInputError(f"engine {self.name!r}: executable {exe!r} not found on PATH")

    def supports(self, task: Task) -> bool:
        return self.unsupported_reason(task) is None

    def unsupported_reason(self, task: Task) -> str | None:
        """Why this engine cannot run `task` (its kind, or a relax feature it lacks); None
        when it can."""
        if task.kind not in self.kinds:
            return (f"engine {self.name!r} cannot run task kind {task.kind.value!r}; it runs "
                    f"{sorted(k.value for k in self.kinds)}")
        options = task.options()
        if isinstance(options, RelaxOptions):
            used = {"move_axes"} if options.move_axes is not None else set()
            missing = sorted(used - self.relax_features)
            if missing:
                return (f"engine {self.name!r} does not implement relax option(s) {missing} "
                        f"(its relax_features: {sorted(self.relax_features)})")
        return None

    def run(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        """Run a task whose inputs are written. Raises CommandError or TaskFailed."""
        run_command(
            self.argv(task_dir, task), task_dir, env=self.environment(),
            timeout=self.profile.timeout_s, log_name=self.name,
        )
        return self.read_results(task_dir, task, frame)

    def run_many(self, tasks: Sequence[tuple[Path, Task, dpdata.System]]
                 ) -> list[EngineResult | TaskFailed | CommandError]:
        """Run several tasks whose inputs are written; a failed task's TaskFailed or
        CommandError is returned in its place and the others go on. Default: `run` each in
        turn; an engine with `packs_tasks` runs them in one program start."""
        out: list[EngineResult | TaskFailed | CommandError] = []
        for task_dir, task, frame in tasks:
            try:
                out.append(self.run(task_dir, task, frame))
            except (TaskFailed, CommandError) as exc:
                out.append(exc)
        return out

    def raw_files(self, task_dir: Path) -> list[Path]:
        found: list[Path] = []
        for pattern in self.raw_file_globs:
            found.extend(sorted(task_dir.glob(pattern)))
        return found

    def spec(self) -> EngineSpec:
        return EngineSpec(name=self.name, settings=self.settings.model_dump(mode="json"), profile=self.profile)


def engine_classes() -> dict[str, type[Engine]]:
    """Installed engines, by entry-point name."""
    from opshelf.core.plugins import load_group

    return load_group("opshelf.engines")


def load_engine(spec: EngineSpec | dict[str, Any]) -> Engine:
    """Instantiate an engine from its spec; unknown names are a ConfigError naming the
    installed ones."""
    if isinstance(spec, dict):
        spec = EngineSpec(**spec)
    from opshelf.core.plugins import load_entry_point

    cls = load_entry_point("opshelf.engines", spec.name, what="engine")
    return cls(spec.settings, spec.profile)


TASK_FILE = "opshelf-task.json"


def write_task(task_dir: Path, frame: dpdata.System, task: Task, engine: Engine) -> None:
    """Prepare a task dir: the engine's inputs plus what `run_task_dir` needs to run it."""
    task_dir.mkdir(parents=True, exist_ok=True)
    if frame.get_nframes() != 1:
        raise ConfigError(f"a task takes exactly one frame, got {frame.get_nframes()} ({task_dir})")
    frame.to("deepmd/npy", str(task_dir / "opshelf-frame"))
    engine.write_inputs(frame, task, task_dir)
    (task_dir / TASK_FILE).write_text(json.dumps({
        "task": task.model_dump(mode="json"),
        "engine": engine.spec().model_dump(mode="json"),
    }, indent=1))


def read_task(task_dir: Path) -> tuple[Engine, Task, dpdata.System]:
    meta = json.loads((task_dir / TASK_FILE).read_text())
    frame = dpdata.System(str(task_dir / "opshelf-frame"), fmt="deepmd/npy")
    return load_engine(meta["engine"]), Task(**meta["task"]), frame


def run_task_dir(task_dir: Path) -> EngineResult:
    """Run a prepared task dir (see `write_task`)."""
    engine, task, frame = read_task(task_dir)
    return engine.run(task_dir, task, frame)
