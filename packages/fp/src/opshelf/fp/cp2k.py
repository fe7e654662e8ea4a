"""CP2K (Quickstep, GPW) engine.

Input comes from a user template with placeholders, or from typed defaults. Forces and
the analytical stress tensor are always printed; results are read with dpdata's
`cp2k/output`. A relaxation (GEO_OPT / CELL_OPT) is followed by one ENERGY_FORCE run
restarted from the optimised structure, so the labelled frame is read exactly like a
single point (dpdata's reader handles one frame per log).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import dpdata
import numpy as np
from ase.data import chemical_symbols
from ase.units import Bohr, Hartree
from dpdata.unit import PressureConversion
from pydantic import Field, field_validator

from opshelf.core.bounds import (
    ChargeE,
    ConvergenceThreshold,
    CoordinateA,
    CutoffRy,
    KPointCount,
    KSpacingPerA,
    OrbitalCount,
    ScfSteps,
    TemperatureK,
)
from opshelf.core.config import StrictModel
from opshelf.core.engine import EngineResult, Task, TaskFailed, TaskKind
from opshelf.core.errors import CommandError, ConfigError, MissingInputError
from opshelf.core.process import run_command, tail
from opshelf.fp.base import FpEngine
from opshelf.fp.common import (
    conform_to_frame,
    frame_symbols,
    kmesh_from_kspacing,
    ordered_unique,
    present_elements,
    with_program_message,
)

INPUT = "input.inp"
FINAL_INPUT = "final.inp"  # single point on the relaxed structure
PROJECT = "opshelf"
LOG = "cp2k.out"
FINAL_LOG_NAME = "cp2k-final"
PLACEHOLDERS = ("{{CELL}}", "{{COORD}}", "{{KINDS}}", "{{RUN_TYPE}}", "{{MOTION}}")
#: CP2K's own message when an SCF loop stops unconverged (2023.1 wording, checked here).
UNCONVERGED_MARKERS = ("SCF run NOT converged",)
#: In CP2K's [ABORT] box the message starts right of the figure (2023.1 layout).
ABORT_TEXT_COLUMN = 16
#: Atomic units -> eV/Angstrom for force thresholds.
HARTREE_PER_BOHR_IN_EV_PER_A = Hartree / Bohr
#: 1 eV/Angstrom^3 in GPa, the constant dpdata's CP2K reader divides by.
EV_PER_A3_IN_GPA = PressureConversion("eV/angstrom^3", "GPa").value()


def default_data_dir() -> Path:
    """$CP2K_DATA_DIR, else Debian's cp2k-data location."""
    return Path(os.environ.get("CP2K_DATA_DIR", "/usr/share/cp2k"))


class Cp2kSettings(StrictModel):
    """CP2K inputs. Either `template` or the typed defaults below make the input."""

    template: Path | None = Field(
        None,
        description="CP2K input with placeholders {{CELL}}, {{COORD}} (required) and "
        "optionally {{KINDS}}, {{RUN_TYPE}}, {{MOTION}}; the typed defaults are then unused",
    )
    xc: str = Field("PBE", description="XC_FUNCTIONAL shortcut, also picks GTH-<xc> potentials")
    cutoff_Ry: CutoffRy = Field(400.0, description="MGRID CUTOFF")
    rel_cutoff_Ry: CutoffRy = Field(50.0, description="MGRID REL_CUTOFF")
    basis: str = Field("DZVP", description="basis family: DZVP -> DZVP-MOLOPT-GTH, else -SR-")
    basis_sets: dict[str, str] = Field(default_factory=dict, description="element -> basis name")
    potentials: dict[str, str] = Field(
        default_factory=dict, description="element -> potential name"
    )
    data_dir: Path | None = Field(
        None, description="where basis/potential files are; $CP2K_DATA_DIR or /usr/share/cp2k"
    )
    basis_file: str = Field("BASIS_MOLOPT", description="BASIS_SET_FILE_NAME, in data_dir")
    potential_file: str = Field("GTH_POTENTIALS", description="POTENTIAL_FILE_NAME, in data_dir")
    kpoints: list[KPointCount] | None = Field(
        None, min_length=3, max_length=3, description="Monkhorst-Pack mesh"
    )
    kspacing_per_A: KSpacingPerA | None = Field(
        None, description="mesh from spacing (2*pi included)"
    )
    gamma_centered: bool = Field(True, description="mesh through Gamma (else plain Monkhorst-Pack)")
    smearing_K: TemperatureK | None = Field(
        None, description="Fermi-Dirac electronic temperature (metals)"
    )
    added_mos: OrbitalCount | None = Field(None, description="ADDED_MOS; defaults to 20 with smearing")
    max_scf: ScfSteps = Field(100, description="MAX_SCF: SCF iterations at most (an "
                         "unconverged SCF fails the task)")
    eps_scf: ConvergenceThreshold = Field(1e-6, description="EPS_SCF: SCF convergence threshold")
    eps_default: float = Field(
        1e-10, gt=0, le=1e-4, description="&QS EPS_DEFAULT: the tolerance every Quickstep "
        "screening threshold derives from (CP2K's default 1e-10). A looser one prunes the "
        "real-space grid work that dominates small cells: a 4-atom Cu cell (SZV, 300 Ry, 2x2x2 "
        "k) took 32 s at 1e-10, 18 s at 1e-8 and 13 s at 1e-7, with forces within 0.0015 "
        "eV/A and energies within 0.6 meV/atom of 1e-10 (measured 2026-12-05)")
    charge: ChargeE = Field(0, description="total charge of the cell")
    cell_ref_A: list[list[CoordinateA]] | None = Field(
        None,
        description="reference cell (3x3, rows A B C, Angstrom) written as &CELL_REF: CP2K sets "
        "its FFT grids up for this cell and keeps them for every frame, so all frames of a data "
        "set (EOS volumes, strained cells of one crystal) share one grid and their energies "
        "compare without grid steps. Make it at least as large as every frame (e.g. the largest "
        "EOS cell) so the effective cutoff is >= cutoff_Ry everywhere; a smaller one lowers it",
    )

    @field_validator("cell_ref_A")
    @classmethod
    def _valid_reference_cell(cls, cell: list[list[float]] | None) -> list[list[float]] | None:
        if cell is None:
            return None
        if len(cell) != 3 or any(len(row) != 3 for row in cell):
            raise ValueError(
                f"cell_ref_A must be 3 rows of 3 numbers (A B C in Angstrom), got {cell}"
            )
        volume = float(np.linalg.det(np.array(cell, dtype=float)))
        if not np.isfinite(volume) or volume <= 1e-6:
            # CP2K wants a right-handed cell with a volume, as for &CELL itself
            raise ValueError(
                f"cell_ref_A must span a positive (right-handed) volume, got {volume:.6g} A^3"
            )
        return cell

    @field_validator("kpoints")
    @classmethod
    def _positive_mesh(cls, mesh: list[int] | None) -> list[int] | None:
        if mesh is not None and any(n < 1 for n in mesh):
            raise ValueError(f"every k-point division must be >= 1, got {mesh}")
        return mesh

    def resolved_data_dir(self) -> Path:
        return self.data_dir or default_data_dir()


@lru_cache(maxsize=16)
def read_library_names(path: Path) -> dict[str, tuple[str, ...]]:
    """Element -> names declared in a CP2K basis or potential file (header lines
    `El NAME [ALIAS ...]`), in file order."""
    symbols = set(chemical_symbols[1:])
    names: dict[str, list[str]] = {}
    for line in path.read_text(errors="replace").splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) >= 2 and tokens[0] in symbols and not _is_number(tokens[1]):
            names.setdefault(tokens[0], []).extend(tokens[1:])
    return {el: tuple(v) for el, v in names.items()}


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def choose_basis_and_potential(element: str, settings: Cp2kSettings) -> tuple[str, str]:
    """Basis and GTH potential names for `element`.

    Rule: an explicit `basis_sets`/`potentials` entry wins. Otherwise the basis is the
    first of `<basis>`, `<basis>-MOLOPT-GTH`, `<basis>-MOLOPT-SR-GTH` (or its `-qN` alias)
    declared for the element in `basis_file`, and the potential is `GTH-<xc>-q<N>` with N the valence
    charge in the basis's `-qN` alias, so basis and potential always agree.
    """
    data_dir = settings.resolved_data_dir()
    basis_path = data_dir / settings.basis_file
    pot_path = data_dir / settings.potential_file
    for path, what in ((basis_path, "basis set file"), (pot_path, "potential file")):
        if not path.is_file():
            raise MissingInputError(f"cp2k: {what} not found: {path} (element {element!r})")
    basis_names = read_library_names(basis_path).get(element, ())
    if element in settings.basis_sets:
        basis = settings.basis_sets[element]
        if basis not in basis_names:
            raise MissingInputError(
                f"cp2k: basis {basis!r} for element {element!r} is not in {basis_path}"
            )
    else:
        wanted = [settings.basis, f"{settings.basis}-MOLOPT-GTH", f"{settings.basis}-MOLOPT-SR-GTH"]
        # Some entries are declared only under their '-qN' alias (e.g. U DZVP-MOLOPT-GTH-q14).
        basis = next(
            (
                name
                for w in wanted
                for name in basis_names
                if name == w or (name.startswith(f"{w}-q") and name[len(w) + 2 :].isdigit())
            ),
            "",
        )
        if not basis:
            raise MissingInputError(
                f"cp2k: no basis set for element {element!r} in {basis_path} "
                f"(looked for {', '.join(wanted)})"
            )
    pot_names = read_library_names(pot_path).get(element, ())
    if element in settings.potentials:
        potential = settings.potentials[element]
        if potential not in pot_names:
            raise MissingInputError(
                f"cp2k: potential {potential!r} for element {element!r} is not in {pot_path}"
            )
        return basis, potential
    valence = _valence_of_basis(element, basis, basis_path)
    xc = settings.xc.upper()
    wanted_pot = f"GTH-{xc}-q{valence}" if valence else f"GTH-{xc}"
    if wanted_pot not in pot_names:
        raise MissingInputError(
            f"cp2k: no pseudopotential {wanted_pot!r} for element {element!r} in {pot_path}"
        )
    return basis, wanted_pot


def _valence_of_basis(element: str, basis: str, basis_path: Path) -> int | None:
    """N of the `-qN` alias on the header line that declares `basis` for `element`."""
    for line in basis_path.read_text(errors="replace").splitlines():
        tokens = line.split()
        if len(tokens) >= 2 and tokens[0] == element and basis in tokens[1:]:
            for token in tokens[1:]:
                head, sep, q = token.rpartition("-q")
                if sep and q.isdigit():
                    return int(q)
    return None


class Cp2kEngine(FpEngine):
    """CP2K (Quickstep, GPW): single points and relaxations (GEO_OPT, CELL_OPT), input from
    your template or from the typed settings; energies, forces and the analytical stress read
    with dpdata's `cp2k/output`. Runs `cp2k` (or `profile.command`, e.g. `cp2k.psmp`)."""

    name = "cp2k"
    kinds = frozenset({TaskKind.SINGLE_POINT, TaskKind.RELAX})
    Settings = Cp2kSettings
    settings: Cp2kSettings
    raw_file_globs: ClassVar[tuple[str, ...]] = (INPUT, FINAL_INPUT, LOG, f"{FINAL_LOG_NAME}.out")

    def default_command(self) -> list[str]:
        return ["cp2k"]

    def extra_args(self, task_dir: Path, task: Task) -> list[str]:
        return ["-i", INPUT]

    # -- checks ------------------------------------------------------------------------
    def check_inputs(self, elements: Sequence[str], task: Task | None = None) -> None:
        super().check_inputs(elements, task)
        if self.settings.template is not None:
            _read_template(self.settings.template, task)
        else:
            for element in ordered_unique(elements):
                choose_basis_and_potential(element, self.settings)

    # -- template ----------------------------------------------------------------------
    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        self.require_supported(task)
        if frame.nopbc:
            raise ConfigError(
                "cp2k engine: non-periodic frames need a 'template' with their own CELL/POISSON setup"
            )
        (task_dir / INPUT).write_text(self.render(frame, task, final=False))
        if task.kind is TaskKind.RELAX:
            (task_dir / FINAL_INPUT).write_text(self.render(frame, task, final=True))

    def render(self, frame: dpdata.System, task: Task, *, final: bool) -> str:
        """The CP2K input text for `task`; `final` is the single point after a relax."""
        run_type = (
            "ENERGY_FORCE"
            if final or task.kind is TaskKind.SINGLE_POINT
            else self._opt_run_type(task)
        )
        motion = "" if final or task.kind is TaskKind.SINGLE_POINT else self._motion(task)
        restart = _ext_restart() if final else ""
        parts = {
            "{{CELL}}": _cell_block(frame, self.settings.cell_ref_A),
            "{{COORD}}": _coord_block(frame),
            "{{KINDS}}": "" if self.settings.template else self._kinds_block(frame),
            "{{RUN_TYPE}}": run_type,
            "{{MOTION}}": motion + restart,
        }
        text = (
            _read_template(self.settings.template, task)
            if self.settings.template
            else self._default_template(frame)
        )
        for key, value in parts.items():
            text = text.replace(key, value)
        return text

    def _opt_run_type(self, task: Task) -> str:
        options = task.options()
        assert options is not None and task.kind is TaskKind.RELAX
        if options.relax_cell:
            if options.relax_volume_only or not options.relax_positions:
                raise ConfigError(
                    "cp2k engine: relax with relax_volume_only or without relax_positions is not supported"
                )
            return "CELL_OPT"
        if not options.relax_positions:
            raise ConfigError(
                "cp2k engine: a relax with neither positions nor cell has nothing to do"
            )
        return "GEO_OPT"

    def _motion(self, task: Task) -> str:
        options = task.options()
        assert options is not None and task.kind is TaskKind.RELAX
        max_force = options.fmax_eV_per_A / HARTREE_PER_BOHR_IN_EV_PER_A
        lines = ["&MOTION"]
        if options.relax_cell:
            lines += [
                "  &CELL_OPT",
                "    TYPE DIRECT_CELL_OPT",
                f"    MAX_ITER {options.max_steps}",
                f"    MAX_FORCE {max_force:.6e}",
                f"    EXTERNAL_PRESSURE [GPa] {options.pressure_GPa}",
                "  &END CELL_OPT",
            ]
        else:
            lines += [
                "  &GEO_OPT",
                "    OPTIMIZER BFGS",
                f"    MAX_ITER {options.max_steps}",
                f"    MAX_FORCE {max_force:.6e}",
                "  &END GEO_OPT",
            ]
        lines.append("&END MOTION\n")
        return "\n".join(lines)

    def _kinds_block(self, frame: dpdata.System) -> str:
        blocks = []
        for element in present_elements(frame):
            basis, potential = choose_basis_and_potential(element, self.settings)
            blocks.append(
                f"    &KIND {element}\n      BASIS_SET {basis}\n"
                f"      POTENTIAL {potential}\n    &END KIND"
            )
        return "\n".join(blocks)

    def _kpoints_block(self, frame: dpdata.System) -> str:
        s = self.settings
        mesh = s.kpoints or (
            kmesh_from_kspacing(frame["cells"][0], s.kspacing_per_A) if s.kspacing_per_A else None
        )
        if mesh is None or mesh == [1, 1, 1]:
            return ""  # Gamma point only
        divisions = " ".join(map(str, mesh))
        if s.gamma_centered and any(n % 2 == 0 for n in mesh):
            # An even Monkhorst-Pack mesh is shifted off Gamma and can break the crystal's
            # symmetry (2x2x2 on diamond Si gave 0.27 eV/A forces on a perfect crystal):
            # MacDonald's shift of 1/(2n) along even divisions puts the mesh back on Gamma.
            shifts = " ".join(f"{0.5 / n if n % 2 == 0 else 0.0:.6f}" for n in mesh)
            scheme = f"MACDONALD {divisions} {shifts}"
        else:
            scheme = f"MONKHORST-PACK {divisions}"
        return f"    &KPOINTS\n      SCHEME {scheme}\n      SYMMETRY F\n    &END KPOINTS\n"

    def _smearing_lines(self) -> tuple[str, str]:
        """The SCF's ADDED_MOS line and &SMEAR section ("" each without smearing): Fermi-Dirac
        smearing needs empty orbitals, 20 unless the settings say how many."""
        s = self.settings
        smear = ""
        added_mos = s.added_mos
        if s.smearing_K is not None:
            added_mos = 20 if added_mos is None else added_mos
            smear = (
                "      &SMEAR ON\n        METHOD FERMI_DIRAC\n"
                f"        ELECTRONIC_TEMPERATURE [K] {s.smearing_K}\n      &END SMEAR\n"
            )
        return (f"      ADDED_MOS {added_mos}\n" if added_mos else ""), smear

    def _default_template(self, frame: dpdata.System) -> str:
        s = self.settings
        data_dir = s.resolved_data_dir()
        mos, smear = self._smearing_lines()
        # Diagonalisation + Broyden mixing: works with k-points and smearing (OT does not).
        return f"""&GLOBAL
  PROJECT {PROJECT}
  RUN_TYPE {{{{RUN_TYPE}}}}
  PRINT_LEVEL MEDIUM
&END GLOBAL
&FORCE_EVAL
  METHOD QUICKSTEP
  STRESS_TENSOR ANALYTICAL
  &DFT
    BASIS_SET_FILE_NAME {data_dir / s.basis_file}
    POTENTIAL_FILE_NAME {data_dir / s.potential_file}
    CHARGE {s.charge}
    &QS
      EPS_DEFAULT {s.eps_default:.1E}
    &END QS
    &MGRID
      CUTOFF {s.cutoff_Ry}
      REL_CUTOFF {s.rel_cutoff_Ry}
    &END MGRID
{self._kpoints_block(frame)}    &SCF
      SCF_GUESS ATOMIC
      EPS_SCF {s.eps_scf}
      MAX_SCF {s.max_scf}
{mos}      &DIAGONALIZATION
        ALGORITHM STANDARD
      &END DIAGONALIZATION
      &MIXING
        METHOD BROYDEN_MIXING
        ALPHA 0.3
        NBROYDEN 8
      &END MIXING
{smear}    &END SCF
    &XC
      &XC_FUNCTIONAL {s.xc}
      &END XC_FUNCTIONAL
    &END XC
  &END DFT
  &SUBSYS
{{{{CELL}}}}
{{{{COORD}}}}
{{{{KINDS}}}}
  &END SUBSYS
  &PRINT
    &FORCES ON
    &END FORCES
    &STRESS_TENSOR ON
    &END STRESS_TENSOR
  &END PRINT
&END FORCE_EVAL
{{{{MOTION}}}}"""

    # -- running and reading -----------------------------------------------------------
    def run(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        env = self.environment()
        command = self.profile.command or self.default_command()
        try:
            run_command(
                self.argv(task_dir, task),
                task_dir,
                env=env,
                timeout=self.profile.timeout_s,
                log_name=self.name,
            )
            if task.kind is TaskKind.RELAX:
                argv = [*self.profile.mpi_prefix, *command, "-i", FINAL_INPUT]
                run_command(
                    argv, task_dir, env=env, timeout=self.profile.timeout_s, log_name=FINAL_LOG_NAME
                )
        except CommandError as exc:
            # CP2K aborts (non-zero exit) on an unconverged SCF: report it as that.
            logs = (task_dir / LOG, task_dir / f"{FINAL_LOG_NAME}.out")
            for log in logs:
                _raise_if_unconverged(log)
            message = next((m for m in map(cp2k_abort_message, reversed(logs)) if m), "")
            raise with_program_message(exc, "cp2k", message) from None
        return self.read_results(task_dir, task, frame)

    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        log = task_dir / (f"{FINAL_LOG_NAME}.out" if task.kind is TaskKind.RELAX else LOG)
        if not log.is_file():
            raise TaskFailed(f"cp2k: no output {log}")
        _raise_if_unconverged(log)
        try:
            system = dpdata.LabeledSystem(str(log), fmt="cp2k/output")
        except (PendingDeprecationWarning, AssertionError, ValueError, IndexError) as exc:
            raise TaskFailed(f"cp2k: cannot read results from {log}: {exc}", tail(log)) from exc
        if not system.has_virial() and system.get_nframes() == 1:
            stress = read_stress_block_GPa(log)
            if stress is not None:
                system.data["virials"] = stress_to_virial(stress, system["cells"][0])[None]
        system = conform_to_frame(system, frame, log)
        return EngineResult(
            system=system,
            raw_files=self.raw_files(task_dir),
            info={"log": log.name, "has_virial": system.has_virial()},
        )


def read_stress_block_GPa(log: Path) -> np.ndarray | None:
    """The last analytical stress tensor in `STRESS|` format (CP2K 2023 and later).

    dpdata 1.1.0's `cp2k/output` only knows the older `STRESS TENSOR [GPa]` block and
    the 2025 layout, so with CP2K 2023.1 (Debian 12) it returns no virial: read it here.
    """
    lines = log.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if "STRESS| Analytical stress tensor [GPa]" in line]
    if not starts:
        return None
    rows = lines[starts[-1] + 2 : starts[-1] + 5]
    try:
        return np.array([[float(x) for x in row.split()[2:5]] for row in rows])
    except (ValueError, IndexError):
        raise TaskFailed(f"cp2k: malformed stress tensor block in {log}", tail(log)) from None


def read_pw_grids(log: Path) -> list[tuple[int, int, int]]:
    """Points of each plane-wave grid CP2K set up (its `PW_GRID|` lines; the first set in
    `log`), finest (grid number 1) first: e.g. [(54, 54, 54), (36, 36, 36), ...] for Cu's 4-atom
    cell at 500/60 Ry. Frames compare without grid steps only when these agree (cell_ref_A)."""
    grids: list[list[int]] = []
    for line in log.read_text(errors="replace").splitlines():
        if "PW_GRID| Information for grid number" in line:
            if line.split()[-1] == "1" and grids:
                break  # a second set (grids rebuilt later in the run)
            grids.append([])
        elif "PW_GRID|" in line and "Bounds" in line and "Points:" in line and grids:
            grids[-1].append(int(line.rsplit("Points:", 1)[1]))
    return [(g[0], g[1], g[2]) for g in grids if len(g) == 3]


def stress_to_virial(stress_GPa: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Virial in eV with dpdata's CP2K convention: stress * volume (no sign change)."""
    return stress_GPa * abs(np.linalg.det(cell)) / EV_PER_A3_IN_GPA


def cp2k_abort_message(log: Path) -> str:
    """CP2K's own words in its last [ABORT] box, e.g. 'found an unknown keyword EPS_SCFX in
    section SCF (input/input_parsing.F:246)' ('' when none)."""
    if not log.is_file():
        return ""
    lines = log.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if "[ABORT]" in line]
    if not starts:
        return ""
    words: list[str] = []
    for line in lines[starts[-1] + 1 :]:
        if line.strip().startswith("*****"):  # the box's bottom edge
            break
        # Columns up to ~20 hold the ASCII-art figure; the text sits to its right.
        text = line.rstrip().removesuffix("*")[ABORT_TEXT_COLUMN:].strip()
        if text:
            words.append(text)
    if len(words) > 1 and ".F:" in words[-1]:  # the source location, last line
        return f"{' '.join(words[:-1])} ({words[-1]})"
    return " ".join(words)


def _raise_if_unconverged(log: Path) -> None:
    if not log.is_file():
        return
    text = log.read_text(errors="replace")
    for marker in UNCONVERGED_MARKERS:
        if marker in text:
            raise TaskFailed(f"cp2k: SCF not converged ({marker!r} in {log.name})", tail(log))


def _read_template(path: Path, task: Task | None) -> str:
    if not path.is_file():
        raise MissingInputError(f"cp2k: template file not found: {path}")
    text = path.read_text()
    missing = [p for p in ("{{CELL}}", "{{COORD}}") if p not in text]
    if task is not None and task.kind is TaskKind.RELAX:
        missing += [p for p in ("{{RUN_TYPE}}", "{{MOTION}}") if p not in text]
    if missing:
        raise ConfigError(f"cp2k: template {path} lacks placeholder(s) {', '.join(missing)}")
    return text


def _cell_vectors(cell: Sequence[Sequence[float]] | np.ndarray, indent: str) -> list[str]:
    return [f"{indent}{label} {v[0]:.10f} {v[1]:.10f} {v[2]:.10f}" for label, v in zip("ABC", cell)]


def _cell_block(frame: dpdata.System, cell_ref: list[list[float]] | None = None) -> str:
    rows = _cell_vectors(frame["cells"][0], "      ")
    if cell_ref is not None:
        # FORCE_EVAL/SUBSYS/CELL/CELL_REF: grids set up for this cell, kept for the actual one
        rows += ["      &CELL_REF", *_cell_vectors(cell_ref, "        "), "      &END CELL_REF"]
    return "    &CELL\n" + "\n".join(rows) + "\n      PERIODIC XYZ\n    &END CELL"


def _coord_block(frame: dpdata.System) -> str:
    rows = [
        f"      {symbol} {x:.10f} {y:.10f} {z:.10f}"
        for symbol, (x, y, z) in zip(frame_symbols(frame), frame["coords"][0])
    ]
    return "    &COORD\n" + "\n".join(rows) + "\n    &END COORD"


def _ext_restart() -> str:
    return (
        f"&EXT_RESTART\n  RESTART_FILE_NAME {PROJECT}-1.restart\n  RESTART_DEFAULT F\n"
        "  RESTART_POS T\n  RESTART_CELL T\n&END EXT_RESTART\n"
    )
