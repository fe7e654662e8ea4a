"""VASP engine: INCAR from a dict or file, POTCAR from the user's library, KPOINTS from a
k-spacing, POSCAR by dpdata. Results are read from OUTCAR with dpdata (`vasp/outcar`),
which also drops ionic steps whose electronic loop hit NELM (unconverged)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import dpdata
from pydantic import Field, model_validator

from opshelf.core.bounds import KPointCount, KSpacingPerA
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

GPA_IN_KBAR = 10.0


def default_potcar_dir() -> Path | None:
    """$VASP_PP_PATH (ASE's convention) when set."""
    value = os.environ.get("VASP_PP_PATH")
    return Path(value) if value else None


class VaspSettings(StrictModel):
    incar: dict[str, Any] = Field(
        default_factory=dict, description="INCAR tags; override incar_file"
    )
    incar_file: Path | None = Field(None, description="an INCAR to start from")
    potcar_dir: Path | None = Field(
        default_factory=default_potcar_dir,
        description="POTCAR library (e.g. .../potpaw_PBE) holding <name>/POTCAR; $VASP_PP_PATH",
    )
    potcar_variants: dict[str, str] = Field(
        default_factory=dict, description="element -> library folder, e.g. {'Ti': 'Ti_sv'}"
    )
    kpoints: list[KPointCount] | None = Field(None, min_length=3, max_length=3,
                                      description="k-point mesh; from kspacing_per_A when unset")
    kspacing_per_A: KSpacingPerA = Field(
        0.3, description="used when kpoints is unset (2*pi included)"
    )
    gamma_centered: bool = Field(True, description="Gamma-centred mesh (else Monkhorst-Pack)")

    @model_validator(mode="after")
    def _no_kspacing_tag(self) -> VaspSettings:
        if "KSPACING" in {k.upper() for k in self.incar}:
            raise ValueError(
                "set kspacing_per_A instead of the INCAR tag KSPACING (a KPOINTS file is written)"
            )
        return self


def potcar_path(element: str, settings: VaspSettings) -> Path:
    if settings.potcar_dir is None:
        raise MissingInputError(
            f"vasp: no POTCAR library for element {element!r}: set potcar_dir or $VASP_PP_PATH"
        )
    folder = settings.potcar_variants.get(element, element)
    path = settings.potcar_dir / folder / "POTCAR"
    if not path.is_file():
        raise MissingInputError(f"vasp: POTCAR for element {element!r} not found: {path}")
    return path


def read_incar(path: Path) -> dict[str, str]:
    """Tags of an INCAR file (values kept as text; '!' and '#' start comments)."""
    if not path.is_file():
        raise MissingInputError(f"vasp: incar_file not found: {path}")
    tags: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("!", 1)[0].split("#", 1)[0]
        for statement in line.split(";"):
            if "=" in statement:
                key, value = statement.split("=", 1)
                tags[key.strip().upper()] = value.strip()
    return tags


def format_incar(tags: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, bool):
            return ".TRUE." if value else ".FALSE."
        if isinstance(value, (list, tuple)):
            return " ".join(fmt(v) for v in value)
        return str(value)

    return "".join(f"{key} = {fmt(value)}\n" for key, value in tags.items())


class VaspEngine(FpEngine):
    """VASP: single points and relaxations (ISIF), INCAR from a dict or file, POTCARs from
    your library, KPOINTS from a mesh or k-spacing; results read from OUTCAR with dpdata
    (`vasp/outcar`). Runs `vasp_std` (or `profile.command`)."""

    name = "vasp"
    kinds = frozenset({TaskKind.SINGLE_POINT, TaskKind.RELAX})
    Settings = VaspSettings
    settings: VaspSettings
    raw_file_globs: ClassVar[tuple[str, ...]] = (
        "INCAR",
        "KPOINTS",
        "POSCAR",
        "OUTCAR",
        "OSZICAR",
        "vasp.out",
    )

    def default_command(self) -> list[str]:
        return ["vasp_std"]

    def check_inputs(self, elements: Sequence[str], task: Task | None = None) -> None:
        super().check_inputs(elements, task)
        if self.settings.incar_file is not None:
            read_incar(self.settings.incar_file)
        for element in ordered_unique(elements):
            potcar_path(element, self.settings)

    def incar_tags(self, task: Task) -> dict[str, Any]:
        tags: dict[str, Any] = {}
        if self.settings.incar_file is not None:
            tags.update(read_incar(self.settings.incar_file))
        tags.update({k.upper(): v for k, v in self.settings.incar.items()})
        if task.kind is TaskKind.SINGLE_POINT:
            tags.update(IBRION=-1, NSW=0, ISIF=2)  # ISIF=2: stress is computed
        else:
            options = task.options()
            assert options is not None
            tags.update(
                IBRION=2,
                NSW=options.max_steps,
                EDIFFG=-options.fmax_eV_per_A,
                ISIF=_isif(options.relax_positions, options.relax_cell, options.relax_volume_only),
            )
            if options.pressure_GPa:
                tags["PSTRESS"] = options.pressure_GPa * GPA_IN_KBAR
        return tags

    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        self.require_supported(task)
        (task_dir / "INCAR").write_text(format_incar(self.incar_tags(task)))
        frame.to("vasp/poscar", str(task_dir / "POSCAR"))
        # POSCAR lists the present elements in atom_names order: POTCAR follows it.
        potcars = [potcar_path(el, self.settings).read_text() for el in present_elements(frame)]
        (task_dir / "POTCAR").write_text("".join(potcars))
        mesh = self.settings.kpoints or kmesh_from_kspacing(
            frame["cells"][0], self.settings.kspacing_per_A
        )
        style = "Gamma" if self.settings.gamma_centered else "Monkhorst-Pack"
        (task_dir / "KPOINTS").write_text(
            f"opshelf\n0\n{style}\n{mesh[0]} {mesh[1]} {mesh[2]}\n0 0 0\n"
        )

    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        outcar = task_dir / "OUTCAR"
        if not outcar.is_file():
            raise TaskFailed(f"vasp: no OUTCAR in {task_dir}", tail(task_dir / "vasp.out"))
        try:
            system = dpdata.LabeledSystem(str(outcar), fmt="vasp/outcar")
        except (ValueError, IndexError, RuntimeError) as exc:
            raise TaskFailed(f"vasp: cannot read {outcar}: {exc}", tail(outcar)) from exc
        if system.get_nframes() == 0:
            raise TaskFailed(
                f"vasp: no converged ionic step in {outcar} (electronic loop reached NELM?)",
                tail(outcar),
            )
        system = conform_to_frame(last_frame(system), frame, outcar)
        return EngineResult(
            system=system,
            raw_files=self.raw_files(task_dir),
            info={"log": outcar.name, "has_virial": system.has_virial()},
        )


def _isif(positions: bool, cell: bool, volume_only: bool) -> int:
    """VASP's ISIF for what may relax (stress is computed for every value used)."""
    if not cell:
        if not positions:
            raise ConfigError(
                "vasp engine: a relax with neither positions nor cell has nothing to do"
            )
        return 2
    if volume_only:
        return 8 if positions else 7  # ISIF=8 (positions + volume) needs VASP >= 6.4
    return 3 if positions else 6
