"""ABACUS engine: INPUT and KPT written from typed settings, STRU by dpdata's `abacus/stru`
writer with pseudopotential (and, for LCAO, orbital) files per element. Results are read
with dpdata (`abacus/scf`, `abacus/relax`), which reports an unconverged SCF as no frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import dpdata
from ase.data import atomic_masses, atomic_numbers
from pydantic import Field, model_validator

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
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.process import tail
from opshelf.fp.base import FpEngine
from opshelf.fp.common import (
    conform_to_frame,
    kmesh_from_kspacing,
    last_frame,
    ordered_unique,
    present_elements,
)

SUFFIX = "ABACUS"
GPA_IN_KBAR = 10.0
#: ABACUS's own words for an unconverged SCF (also what dpdata looks for).
UNCONVERGED_MARKERS = ("convergence has NOT been achieved", "convergence has not been achieved")


class AbacusSettings(StrictModel):
    basis_type: Literal["pw", "lcao"] = Field("pw", description="plane waves or numerical "
                                              "atomic orbitals (lcao: needs orbitals)")
    pseudopotentials: dict[str, str] = Field(description="element -> file name in pseudo_dir")
    orbitals: dict[str, str] = Field(
        default_factory=dict, description="element -> orbital file (lcao)"
    )
    pseudo_dir: Path = Field(description="folder of the pseudopotential files")
    orbital_dir: Path | None = Field(None, description="folder of the orbital files (lcao)")
    ecutwfc_Ry: CutoffRy = Field(50.0, description="ecutwfc: plane-wave cutoff")
    scf_thr: ConvergenceThreshold = Field(1e-7, description="SCF convergence threshold")
    scf_nmax: ScfSteps = Field(100, description="SCF iterations at most (an unconverged SCF "
                          "fails the task)")
    smearing_method: Literal["gaussian", "mp", "fd"] | None = Field(
        None, description="smearing for metals; none when unset")
    smearing_sigma_Ry: SmearingRy = Field(0.01, description="smearing width")
    kpoints: list[KPointCount] | None = Field(None, min_length=3, max_length=3,
                                      description="k-point mesh; from kspacing_per_A when unset")
    kspacing_per_A: KSpacingPerA = Field(
        0.3, description="used when kpoints is unset (2*pi included)"
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="more INPUT keywords")

    @model_validator(mode="after")
    def _lcao_needs_orbitals(self) -> AbacusSettings:
        if self.basis_type == "lcao" and self.orbital_dir is None:
            raise ValueError("basis_type 'lcao' needs orbital_dir and orbitals")
        return self


class AbacusEngine(FpEngine):
    """ABACUS: single points and relaxations (relax, cell-relax) in a plane-wave or LCAO
    basis; INPUT and KPT from the typed settings, STRU by dpdata; results read with dpdata
    (`abacus/scf`, `abacus/relax`). Runs `abacus` (or `profile.command`)."""

    name = "abacus"
    kinds = frozenset({TaskKind.SINGLE_POINT, TaskKind.RELAX})
    Settings = AbacusSettings
    settings: AbacusSettings
    raw_file_globs: ClassVar[tuple[str, ...]] = (
        "INPUT",
        "STRU",
        "KPT",
        f"OUT.{SUFFIX}/running_*.log",
    )

    def default_command(self) -> list[str]:
        return ["abacus"]

    def check_inputs(self, elements: Sequence[str], task: Task | None = None) -> None:
        super().check_inputs(elements, task)
        for element in ordered_unique(elements):
            self._files_for(element)

    def _files_for(self, element: str) -> tuple[str, str | None]:
        s = self.settings
        if element not in s.pseudopotentials:
            raise MissingInputError(
                f"abacus: no pseudopotential for element {element!r} (pseudopotentials.{element})"
            )
        pp = s.pseudo_dir / s.pseudopotentials[element]
        if not pp.is_file():
            raise MissingInputError(
                f"abacus: pseudopotential for element {element!r} not found: {pp}"
            )
        if s.basis_type != "lcao":
            return pp.name, None
        if element not in s.orbitals:
            raise MissingInputError(
                f"abacus: no orbital file for element {element!r} (orbitals.{element})"
            )
        assert s.orbital_dir is not None
        orb = s.orbital_dir / s.orbitals[element]
        if not orb.is_file():
            raise MissingInputError(
                f"abacus: orbital file for element {element!r} not found: {orb}"
            )
        return pp.name, orb.name

    def input_keywords(self, task: Task) -> dict[str, Any]:
        s = self.settings
        keys: dict[str, Any] = {
            "suffix": SUFFIX,
            "calculation": "scf",
            "basis_type": s.basis_type,
            "pseudo_dir": str(s.pseudo_dir),
            "ecutwfc": s.ecutwfc_Ry,
            "scf_thr": s.scf_thr,
            "scf_nmax": s.scf_nmax,
            "cal_force": 1,
            "cal_stress": 1,
        }
        if s.orbital_dir is not None:
            keys["orbital_dir"] = str(s.orbital_dir)
        if s.smearing_method:
            keys.update(smearing_method=s.smearing_method, smearing_sigma=s.smearing_sigma_Ry)
        if task.kind is TaskKind.RELAX:
            options = task.options()
            assert options is not None
            if options.relax_cell:
                if options.relax_volume_only or not options.relax_positions:
                    raise ConfigError(
                        "abacus engine: only full cell-relax with positions is supported"
                    )
                keys.update(
                    calculation="cell-relax",
                    press1=options.pressure_GPa * GPA_IN_KBAR,
                    press2=options.pressure_GPa * GPA_IN_KBAR,
                    press3=options.pressure_GPa * GPA_IN_KBAR,
                )
            elif not options.relax_positions:
                raise ConfigError(
                    "abacus engine: a relax with neither positions nor cell has nothing to do"
                )
            else:
                keys["calculation"] = "relax"
            keys.update(
                relax_nmax=options.max_steps, force_thr_ev=options.fmax_eV_per_A, out_stru=1
            )
        keys.update(s.extra)
        return keys

    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        self.require_supported(task)
        lines = ["INPUT_PARAMETERS"] + [f"{k} {v}" for k, v in self.input_keywords(task).items()]
        (task_dir / "INPUT").write_text("\n".join(lines) + "\n")
        files = {el: self._files_for(el) for el in present_elements(frame)}
        pp = [files[el][0] if el in files else "" for el in frame["atom_names"]]
        orbitals = [files[el][1] or "" if el in files else "" for el in frame["atom_names"]]
        masses = [
            float(atomic_masses[atomic_numbers[el]]) if el in atomic_numbers else 1.0
            for el in frame["atom_names"]
        ]
        kwargs: dict[str, Any] = {"pp_file": pp, "mass": masses}
        if self.settings.basis_type == "lcao":
            kwargs["numerical_orbital"] = orbitals
        frame.to("abacus/stru", str(task_dir / "STRU"), **kwargs)
        mesh = self.settings.kpoints or kmesh_from_kspacing(
            frame["cells"][0], self.settings.kspacing_per_A
        )
        (task_dir / "KPT").write_text(f"K_POINTS\n0\nGamma\n{mesh[0]} {mesh[1]} {mesh[2]} 0 0 0\n")

    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        kind = "running_scf.log" if task.kind is TaskKind.SINGLE_POINT else None
        logs = sorted((task_dir / f"OUT.{SUFFIX}").glob(kind or "running_*relax.log"))
        log = logs[0] if logs else task_dir / f"OUT.{SUFFIX}" / (kind or "running_relax.log")
        if not log.is_file():
            raise TaskFailed(f"abacus: no output {log}", tail(task_dir / "abacus.out"))
        text = log.read_text(errors="replace")
        for marker in UNCONVERGED_MARKERS:
            if marker in text:
                raise TaskFailed(f"abacus: SCF not converged ({marker!r} in {log.name})", tail(log))
        fmt = "abacus/scf" if task.kind is TaskKind.SINGLE_POINT else "abacus/relax"
        try:
            system = dpdata.LabeledSystem(str(task_dir), fmt=fmt)
        except (ValueError, IndexError, RuntimeError, KeyError) as exc:
            raise TaskFailed(
                f"abacus: cannot read results in {task_dir}: {exc}", tail(log)
            ) from exc
        if system.get_nframes() == 0:
            raise TaskFailed(f"abacus: no labelled frame in {task_dir}", tail(log))
        system = conform_to_frame(last_frame(system), frame, log)
        return EngineResult(
            system=system,
            raw_files=self.raw_files(task_dir),
            info={"log": str(log.relative_to(task_dir)), "has_virial": system.has_virial()},
        )
