"""`ase`: any ASE calculator as an opshelf engine (single point, relax, MD), run in-process.

Files in a task dir (all extxyz, readable by ase, dpdata and OVITO):
- `input.extxyz`           the frame, written by `write_inputs`
- `output.extxyz`          labelled result: the frame (single point), the relaxed frame
                           (relax) or every `dump_every`-th MD frame, step 0 included (md)
- `relax-trajectory.extxyz` every relax step, kept to diagnose a relax that did not converge
- `ase.log`                the optimizer's or the MD integrator's log

The calculator is an `opshelf.models` entry point name ("emt") or an import path
("module:factory_or_class"), built with `settings.kwargs` by `load_calculator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import dpdata
import numpy as np
from pydantic import Field

from opshelf.core.config import StrictModel
from opshelf.core.engine import (
    Engine,
    EngineResult,
    MDOptions,
    RelaxOptions,
    Task,
    TaskFailed,
    TaskKind,
)
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.models import load_calculator
from opshelf.core.process import tail

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import BaseCalculator

INPUT_FILE = "input.extxyz"
OUTPUT_FILE = "output.extxyz"
RELAX_TRAJECTORY_FILE = "relax-trajectory.extxyz"
LOG_FILE = "ase.log"


class AseSettings(StrictModel):
    """Settings of the `ase` engine."""

    calculator: str = Field(
        "emt", description="an 'opshelf.models' entry point name (e.g. 'emt') or an import "
        "path 'module:factory_or_class'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to the calculator")
    optimizer: Literal["BFGS", "FIRE"] = Field(
        "BFGS", description="relax optimizer: BFGS (fast near a minimum) or FIRE (robust far "
        "from one)")
    probe_elements: bool = Field(
        True, description="check() computes one isolated atom per element so that an element "
        "the calculator cannot handle fails before any work starts; turn off for costly "
        "calculators")


class AseEngine(Engine):
    """Any ASE calculator, in-process: no program is started, so no argv and no profile
    command. `profile.timeout_s` is not enforced (a Python call cannot be killed safely)."""

    name = "ase"
    kinds = frozenset({TaskKind.SINGLE_POINT, TaskKind.RELAX, TaskKind.MD})
    Settings = AseSettings
    raw_file_globs: ClassVar[tuple[str, ...]] = ("*.extxyz", LOG_FILE)
    relax_features: ClassVar[frozenset[str]] = frozenset({"move_axes"})
    # run() reads and writes extxyz and relaxes with ase.optimize: ~1 s of imports a step
    preload_modules: ClassVar[tuple[str, ...]] = ("ase.io", "ase.optimize", "ase.filters")
    settings: AseSettings

    def calculator(self) -> BaseCalculator:
        """A fresh calculator (calculators keep state: one per task)."""
        return load_calculator(self.settings.calculator, **self.settings.kwargs)

    # -- checks --------------------------------------------------------------------------
    def check(self, elements: Sequence[str], task: Task | None = None) -> None:
        calc = self.calculator()  # raises ConfigError / MissingInputError with the reason
        if task is not None:
            check_task_options(task)
        if not self.settings.probe_elements:
            return
        from ase import Atoms
        from ase.calculators.calculator import CalculatorError, PropertyNotImplementedError

        for element in elements:
            atom = Atoms(element, positions=[[0.0, 0.0, 0.0]], cell=[12.0] * 3, pbc=True)
            atom.calc = calc
            try:
                energy = atom.get_potential_energy()
            except (CalculatorError, PropertyNotImplementedError, NotImplementedError,
                    KeyError) as exc:
                # EMT raises NotImplementedError for an element it has no parameters for;
                # other calculators raise KeyError or a CalculatorError.
                raise MissingInputError(
                    f"engine 'ase': calculator {self.settings.calculator!r} cannot compute "
                    f"element {element!r}: {type(exc).__name__}: {exc}"
                ) from None
            if not np.isfinite(energy):
                raise MissingInputError(
                    f"engine 'ase': calculator {self.settings.calculator!r} gives a non-finite "
                    f"energy for an isolated {element!r} atom"
                )

    # -- template ------------------------------------------------------------------------
    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        import ase.io

        check_task_options(task)
        task_dir.mkdir(parents=True, exist_ok=True)
        atoms = frame.to("ase/structure")[0]
        ase.io.write(task_dir / INPUT_FILE, atoms, format="extxyz")

    def run(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        """Run in this process: read input.extxyz, compute, write output.extxyz, read back."""
        import ase.io

        atoms = ase.io.read(task_dir / INPUT_FILE, format="extxyz")
        atoms.calc = self.calculator()
        try:
            if task.kind is TaskKind.SINGLE_POINT:
                labelled = [single_point(atoms)]
            elif task.kind is TaskKind.RELAX:
                labelled = [relax(atoms, task.options(), task_dir, self.settings.optimizer)]
            else:
                labelled = run_md(atoms, task.options(), task_dir)
        except TaskFailed as exc:
            if not exc.log_tail:
                exc.log_tail = tail(task_dir / LOG_FILE)
            raise
        except _calculation_errors() as exc:
            # A calculator's own "this calculation failed" (SCF not converged, unreadable
            # output): a failed task, recorded with its reason. Anything else is a bug.
            raise TaskFailed(
                f"calculator {self.settings.calculator!r} failed: {type(exc).__name__}: {exc}",
                tail(task_dir / LOG_FILE),
            ) from exc
        ase.io.write(task_dir / OUTPUT_FILE, labelled, format="extxyz")
        return self.read_results(task_dir, task, frame)

    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        system, images = read_labelled_output(task_dir, frame)
        info: dict[str, Any] = {"n_frames": system.get_nframes()}
        if task.kind is TaskKind.RELAX:
            info["relax_steps"] = int(images[-1].info.get("relax_steps", -1))
        return EngineResult(system=system, raw_files=self.raw_files(task_dir), info=info)



def read_labelled_output(task_dir: Path, frame: dpdata.System) -> tuple[dpdata.LabeledSystem, list[Any]]:
    """The labelled frames an ASE-run task wrote to OUTPUT_FILE, in the input frame's atom
    order, and the ASE images they came from. TaskFailed when missing or not finite."""
    import ase.io

    output = task_dir / OUTPUT_FILE
    if not output.is_file():
        raise TaskFailed(f"no {OUTPUT_FILE} in {task_dir}", tail(task_dir / LOG_FILE))
    images = ase.io.read(output, index=":", format="extxyz")
    system = labelled_system_from_atoms(images, type_map=list(frame["atom_names"]))
    check_finite(system, where=str(output))
    return system, images

def _calculation_errors() -> tuple[type[BaseException], ...]:
    from ase.calculators.calculator import CalculationFailed, ReadError

    return (CalculationFailed, ReadError)


def check_task_options(task: Task) -> None:
    """Reject option combinations that cannot run, before any work starts."""
    options = task.options()
    if isinstance(options, RelaxOptions):
        if not options.relax_positions and not options.relax_cell:
            raise ConfigError(
                "task.relax: relax_positions and relax_cell are both false: nothing to relax "
                "(use kind: single_point)")
        if options.relax_volume_only and not options.relax_cell:
            raise ConfigError("task.relax: relax_volume_only needs relax_cell: true")
        if options.pressure_GPa and not options.relax_cell:
            raise ConfigError("task.relax: pressure_GPa needs relax_cell: true")


def labelled_copy(atoms: Atoms) -> Atoms:
    """`atoms` with its current results frozen in a SinglePointCalculator (for extxyz)."""
    from ase.calculators.calculator import PropertyNotImplementedError
    from ase.calculators.singlepoint import SinglePointCalculator

    results: dict[str, Any] = {
        "energy": atoms.get_potential_energy(),
        # Unconstrained: a frozen atom still carries its true force as a label.
        "forces": atoms.get_forces(apply_constraint=False),
    }
    if atoms.pbc.all():
        try:
            results["stress"] = atoms.get_stress(voigt=True)
        except PropertyNotImplementedError:
            pass  # a calculator without stress: the frame carries no virial
    copy = atoms.copy()
    copy.set_constraint()  # extxyz would store it and zero the forces read back
    copy.calc = SinglePointCalculator(copy, **results)
    return copy


def single_point(atoms: Atoms) -> Atoms:
    return labelled_copy(atoms)


def relax(atoms: Atoms, options: RelaxOptions, task_dir: Path, optimizer: str) -> Atoms:
    """Relax positions and/or cell; TaskFailed when not converged within max_steps."""
    import ase.io
    from ase import units
    from ase.constraints import FixAtoms, FixCartesian
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    if not options.relax_positions:
        # Atoms keep their fractional coordinates while the cell changes.
        atoms.set_constraint(FixAtoms(indices=list(range(len(atoms)))))
    elif options.fixed_axes():
        # FixCartesian's mask: True = that Cartesian component is held fixed
        mask = [i in options.fixed_axes() for i in range(3)]
        atoms.set_constraint(FixCartesian(range(len(atoms)), mask=mask))
    target: Any = atoms
    if options.relax_cell:
        target = FrechetCellFilter(
            atoms, hydrostatic_strain=options.relax_volume_only,
            scalar_pressure=options.pressure_GPa * units.GPa)
    trajectory_path = task_dir / RELAX_TRAJECTORY_FILE
    trajectory_path.unlink(missing_ok=True)
    if not np.all(np.isfinite(target.get_forces())):
        raise TaskFailed("relax: non-finite forces (or stress) on the initial frame")
    opt_class = {"BFGS": BFGS, "FIRE": FIRE}[optimizer]
    opt = opt_class(target, logfile=str(task_dir / LOG_FILE))
    opt.attach(lambda: ase.io.write(trajectory_path, labelled_copy(atoms), format="extxyz",
                                    append=True))
    try:
        converged = opt.run(fmax=options.fmax_eV_per_A, steps=options.max_steps)
    except np.linalg.LinAlgError as exc:  # BFGS's Hessian update broke down
        raise TaskFailed(f"relax: {optimizer} failed after {opt.nsteps} steps: {exc}") from None
    forces = target.get_forces()
    if not np.all(np.isfinite(forces)):
        raise TaskFailed(f"relax: non-finite forces after {opt.nsteps} steps")
    if not converged:
        fmax = float(np.sqrt((forces**2).sum(axis=1)).max())
        raise TaskFailed(
            f"relax did not converge within max_steps={options.max_steps}: max force "
            f"{fmax:.4g} eV/A > fmax {options.fmax_eV_per_A} eV/A")
    atoms.set_constraint()
    final = labelled_copy(atoms)
    final.info["relax_steps"] = opt.nsteps
    return final


def run_md(atoms: Atoms, options: MDOptions, task_dir: Path) -> list[Atoms]:
    """MD; returns every `dump_every`-th frame (step 0 included) with its labels.

    nve: velocity Verlet; nvt: Langevin; npt: ASE's isotropic Martyna-Tobias-Klein
    integrator with Nose-Hoover chains (ase.md.nose_hoover_chain.IsotropicMTKNPT), which
    ASE recommends over its legacy NPT class (that one is unstable for small cells).
    """
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.nose_hoover_chain import IsotropicMTKNPT
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    try:  # ASE >= 3.29; MaxwellBoltzmannDistribution is deprecated there
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:
        from ase.md.velocitydistribution import (
            MaxwellBoltzmannDistribution as thermalize_momenta,
        )

    rng = np.random.default_rng(options.seed)
    # Velocities before the integrator is built: IsotropicMTKNPT copies them at __init__.
    thermalize_momenta(atoms, temperature_K=options.temperature_K, rng=rng)
    Stationary(atoms)
    timestep = options.timestep_fs * units.fs
    log = str(task_dir / LOG_FILE)
    if options.ensemble == "nve":
        dyn: Any = VelocityVerlet(atoms, timestep=timestep, logfile=log)
    elif options.ensemble == "nvt":
        # FixCom rather than fixcm=True, which ASE >= 3.28 flags as biased for small cells.
        atoms.set_constraint(FixCom())
        dyn = Langevin(atoms, timestep=timestep, temperature_K=options.temperature_K,
                       friction=1.0 / (options.thermostat_tau_fs * units.fs), rng=rng,
                       fixcm=False, logfile=log)
    else:
        if not atoms.pbc.all():
            raise ConfigError("task.md: ensemble npt needs a periodic cell")
        dyn = IsotropicMTKNPT(atoms, timestep=timestep, temperature_K=options.temperature_K,
                              pressure_au=options.pressure_GPa * units.GPa,
                              tdamp=options.thermostat_tau_fs * units.fs,
                              pdamp=options.barostat_tau_fs * units.fs, logfile=log)
    frames: list[Atoms] = []

    def dump() -> None:
        frame = labelled_copy(atoms)
        frame.info["md_step"] = dyn.nsteps
        frames.append(frame)
        if not np.isfinite(frame.get_potential_energy()):
            raise TaskFailed(f"md: non-finite energy at step {dyn.nsteps}")

    dyn.attach(dump, interval=options.dump_every)
    dyn.run(options.n_steps)
    return frames


def labelled_system_from_atoms(images: Sequence[Atoms], type_map: list[str]) -> dpdata.LabeledSystem:
    """ASE images with results -> one LabeledSystem whose atom_names are `type_map`."""
    system = dpdata.LabeledSystem(images[0], fmt="ase/structure")
    for image in images[1:]:
        system.append(dpdata.LabeledSystem(image, fmt="ase/structure"))
    try:
        system.sort_atom_names(type_map=type_map)
    except ValueError as exc:
        raise TaskFailed(f"the result's elements do not match the input frame's: {exc}") from None
    return system


def check_finite(system: dpdata.LabeledSystem, where: str) -> None:
    """TaskFailed naming the first frame whose energy, forces or virial is NaN/inf."""
    for key in ("energies", "forces", "virials"):
        if key not in system.data:
            continue
        values = np.asarray(system.data[key]).reshape(system.get_nframes(), -1)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            raise TaskFailed(f"non-finite {key} in frame {int(bad[0])} of {where}")
