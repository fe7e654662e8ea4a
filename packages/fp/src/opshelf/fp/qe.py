"""Quantum ESPRESSO pw.x engine.

`pw.in` is written with ASE's espresso writer (cell and positions in Angstrom, which is
what dpdata's `qe/pw/scf` reader expects); forces and stress are always requested. The
chosen pseudopotentials are copied into the task dir, so a task dir runs anywhere.
Single points are read with dpdata (`qe/pw/scf`); a relaxation's final structure is read
with ASE's `espresso-out` reader and converted by dpdata (`ase/structure`), because
dpdata's scf reader takes the positions from the input file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import ase.io
import dpdata
from ase.units import Bohr, Ry
from pydantic import Field, field_validator

from opshelf.core.bounds import (
    ConvergenceThreshold,
    CutoffRy,
    KPointCount,
    KSpacingPerA,
    ScfSteps,
    SmearingRy,
)
from opshelf.core.config import StrictModel
from opshelf.core.engine import EngineResult, Task, TaskFailed, TaskKind
from opshelf.core.errors import CommandError, ConfigError, MissingInputError
from opshelf.core.process import tail
from opshelf.fp.base import FpEngine
from opshelf.fp.common import (
    conform_to_frame,
    copy_maybe_gzipped,
    kmesh_from_kspacing,
    ordered_unique,
    present_elements,
    undo_cell_rotation,
    with_program_message,
)

INPUT = "pw.in"
LOG = "qe.out"  # run_command writes stdout to <engine name>.out
PSEUDO_SUBDIR = "pseudo"
#: pw.x's own words for an SCF loop that stopped unconverged (6.7 and 7.x).
UNCONVERGED_MARKERS = ("convergence NOT achieved",)
RY_PER_BOHR_IN_EV_PER_A = Ry / Bohr
UPF_SUFFIXES = (".UPF", ".upf", ".UPF.gz", ".upf.gz")


def default_pseudo_dirs() -> list[Path]:
    """$ESPRESSO_PSEUDO, then Debian's quantum-espresso-data pseudopotentials."""
    dirs = [Path(os.environ["ESPRESSO_PSEUDO"])] if os.environ.get("ESPRESSO_PSEUDO") else []
    return [*dirs, Path("/usr/share/espresso/pseudo")]


class QeSettings(StrictModel):
    """pw.x inputs (Quantum ESPRESSO units: Ry, Bohr, unless the name says otherwise)."""

    pseudopotentials: dict[str, str] = Field(
        default_factory=dict,
        description="element -> UPF file name (looked up in pseudo_dirs) or path; "
        "else the rule: first sorted '<El>.<functional>-*.UPF' in pseudo_dirs",
    )
    pseudo_dirs: list[Path] = Field(default_factory=default_pseudo_dirs, description="where "
                                    "UPF files are looked up: $ESPRESSO_PSEUDO, "
                                    "/usr/share/espresso/pseudo")
    functional: str = Field("pbe", description="tag in UPF names used by the automatic rule")
    ecutwfc_Ry: CutoffRy = Field(40.0, description="ecutwfc: plane-wave cutoff of the "
                              "wavefunctions")
    ecutrho_Ry: CutoffRy | None = Field(
        None, description="default 4 * ecutwfc (norm-conserving)"
    )
    kpoints: list[KPointCount] | None = Field(None, min_length=3, max_length=3,
                                      description="k-point mesh; from kspacing_per_A when unset")
    kspacing_per_A: KSpacingPerA | None = Field(
        0.3, description="used when kpoints is unset (2*pi included)"
    )
    kpoint_shift: list[Literal[0, 1]] = Field(
        default_factory=lambda: [0, 0, 0],
        min_length=3,
        max_length=3,
        description="0 0 0 = Gamma-centred mesh",
    )
    smearing: Literal["gaussian", "mv", "mp", "fd"] | None = Field(None, description="metals")
    degauss_Ry: SmearingRy = Field(0.02, description="smearing width (with `smearing`)")
    conv_thr_Ry: ConvergenceThreshold = Field(1e-8, description="conv_thr: SCF convergence threshold")
    electron_maxstep: ScfSteps = Field(100, description="SCF iterations at most (an "
                                  "unconverged SCF fails the task)")
    mixing_beta: float = Field(0.7, gt=0, le=1, description="SCF charge-density mixing factor")
    extra: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="extra namelist entries, e.g. {'system': {'nspin': 2}}"
    )

    @field_validator("kpoints")
    @classmethod
    def _positive_mesh(cls, mesh: list[int] | None) -> list[int] | None:
        if mesh is not None and any(n < 1 for n in mesh):
            raise ValueError(f"every k-point division must be >= 1, got {mesh}")
        return mesh


def find_pseudopotential(element: str, settings: QeSettings) -> Path:
    """The UPF file for `element` (see QeSettings.pseudopotentials for the rule)."""
    dirs = [Path(d) for d in settings.pseudo_dirs]
    if element in settings.pseudopotentials:
        name = settings.pseudopotentials[element]
        direct = Path(name)
        if direct.is_absolute() or os.sep in name:
            if direct.is_file():
                return direct
            looked = [str(direct)]
        else:
            looked = [str(d / name) for d in dirs]
            for d in dirs:
                for candidate in (d / name, d / f"{name}.gz"):
                    if candidate.is_file():
                        return candidate
        raise MissingInputError(
            f"qe: pseudopotential for element {element!r} not found (looked for {', '.join(looked)})"
        )
    pattern = f"{element}.{settings.functional}-"
    for d in dirs:
        if not d.is_dir():
            continue
        matches = sorted(
            p
            for p in d.iterdir()
            if p.name.lower().startswith(pattern.lower())
            and p.name[: len(element) + 1] == f"{element}."
            and p.name.endswith(UPF_SUFFIXES)
        )
        if matches:
            return matches[0]
    raise MissingInputError(
        f"qe: no pseudopotential for element {element!r}: no file '{pattern}*.UPF' in "
        f"{', '.join(map(str, dirs))}; set pseudopotentials.{element}"
    )


class QeEngine(FpEngine):
    """Quantum ESPRESSO pw.x: single points and relaxations (relax, vc-relax), input written
    with ASE's espresso writer, pseudopotentials found by rule or named; results read with
    dpdata's `qe/pw/scf`. Runs `pw.x` (or `profile.command`)."""

    name = "qe"
    kinds = frozenset({TaskKind.SINGLE_POINT, TaskKind.RELAX})
    Settings = QeSettings
    settings: QeSettings
    raw_file_globs: ClassVar[tuple[str, ...]] = (INPUT, LOG)

    def default_command(self) -> list[str]:
        return ["pw.x"]

    def extra_args(self, task_dir: Path, task: Task) -> list[str]:
        return ["-in", INPUT]

    def check_inputs(self, elements: Sequence[str], task: Task | None = None) -> None:
        super().check_inputs(elements, task)
        for element in ordered_unique(elements):
            find_pseudopotential(element, self.settings)

    # -- template ----------------------------------------------------------------------
    def input_data(self, task: Task) -> dict[str, dict[str, Any]]:
        s = self.settings
        calculation = "scf"
        data: dict[str, dict[str, Any]] = {
            "control": {
                "calculation": calculation,
                "tprnfor": True,
                "tstress": True,
                "pseudo_dir": f"./{PSEUDO_SUBDIR}",
                "outdir": "./out",
                "prefix": "opshelf",
                "disk_io": "low",
            },
            "system": {"ecutwfc": s.ecutwfc_Ry, "ecutrho": s.ecutrho_Ry or 4 * s.ecutwfc_Ry},
            "electrons": {
                "conv_thr": s.conv_thr_Ry,
                "electron_maxstep": s.electron_maxstep,
                "mixing_beta": s.mixing_beta,
            },
        }
        if s.smearing:
            data["system"].update(occupations="smearing", smearing=s.smearing, degauss=s.degauss_Ry)
        if task.kind is TaskKind.RELAX:
            options = task.options()
            assert options is not None
            if options.relax_cell:
                if not options.relax_positions:
                    raise ConfigError(
                        "qe engine: a cell relax that keeps positions fixed is not supported"
                    )
                data["control"]["calculation"] = "vc-relax"
                data["cell"] = {
                    "cell_dynamics": "bfgs",
                    "press": options.pressure_GPa * 10.0,
                    "cell_dofree": "volume" if options.relax_volume_only else "all",
                }
            elif not options.relax_positions:
                raise ConfigError(
                    "qe engine: a relax with neither positions nor cell has nothing to do"
                )
            else:
                data["control"]["calculation"] = "relax"
            data["control"].update(
                nstep=options.max_steps,
                forc_conv_thr=options.fmax_eV_per_A / RY_PER_BOHR_IN_EV_PER_A,
            )
            data["ions"] = {"ion_dynamics": "bfgs"}
        for namelist, entries in s.extra.items():
            data.setdefault(namelist.lower(), {}).update(entries)
        return data

    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        self.require_supported(task)
        if frame.nopbc:
            raise ConfigError("qe engine: pw.x needs a periodic cell; the frame is non-periodic")
        pseudos: dict[str, str] = {}
        for element in present_elements(frame):
            source = find_pseudopotential(element, self.settings)
            target_name = source.name.removesuffix(".gz")
            copy_maybe_gzipped(source, task_dir / PSEUDO_SUBDIR / target_name)
            pseudos[element] = target_name
        s = self.settings
        mesh = s.kpoints or kmesh_from_kspacing(frame["cells"][0], s.kspacing_per_A or 0.3)
        atoms = frame.to("ase/structure")[0]
        with open(task_dir / INPUT, "w") as fd:
            ase.io.write(
                fd,
                atoms,
                format="espresso-in",
                input_data=self.input_data(task),
                pseudopotentials=pseudos,
                kpts=tuple(mesh),
                koffset=tuple(s.kpoint_shift),
            )

    # -- running and reading -----------------------------------------------------------
    def run(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        try:
            return super().run(task_dir, task, frame)
        except CommandError as exc:
            _raise_if_unconverged(task_dir / LOG)  # pw.x may stop with an error on it
            raise with_program_message(exc, "pw.x", pw_error_message(task_dir / LOG)) from None

    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        log = task_dir / LOG
        if not log.is_file():
            raise TaskFailed(f"qe: no output {log}")
        _raise_if_unconverged(log)
        text = log.read_text(errors="replace")
        if "JOB DONE" not in text:
            raise TaskFailed(
                f"qe: pw.x did not finish ('JOB DONE' missing in {log.name})", tail(log)
            )
        try:
            if task.kind is TaskKind.SINGLE_POINT:
                system = dpdata.LabeledSystem([str(task_dir / INPUT), str(log)], fmt="qe/pw/scf")
                system = undo_cell_rotation(system, frame)
            else:
                atoms = ase.io.read(log, format="espresso-out", index=-1)
                system = dpdata.LabeledSystem(atoms, fmt="ase/structure")
        except (ValueError, IndexError, KeyError, RuntimeError, StopIteration) as exc:
            raise TaskFailed(f"qe: cannot read results from {log}: {exc}", tail(log)) from exc
        system = conform_to_frame(system, frame, log)
        return EngineResult(
            system=system,
            raw_files=self.raw_files(task_dir),
            info={"log": log.name, "has_virial": system.has_virial()},
        )


def _raise_if_unconverged(log: Path) -> None:
    if not log.is_file():
        return
    text = log.read_text(errors="replace")
    for marker in UNCONVERGED_MARKERS:
        if marker in text:
            line = next(ln.strip() for ln in text.splitlines() if marker in ln)
            raise TaskFailed(f"qe: SCF not converged ({line!r} in {log.name})", tail(log))


def pw_error_message(log: Path) -> str:
    """pw.x's own report of why it stopped: the text of its last `%%%%` error box, e.g.
    'Error in routine check_atoms (1): atoms # 1 and # 2 overlap!' ('' when none), with
    runs of spaces collapsed."""
    if not log.is_file():
        return ""
    lines = log.read_text(errors="replace").splitlines()
    bars = [i for i, line in enumerate(lines) if line.strip().startswith("%%%%%%%%%%")]
    if len(bars) < 2:
        return ""
    return " ".join(" ".join(lines[bars[-2] + 1 : bars[-1]]).split())
