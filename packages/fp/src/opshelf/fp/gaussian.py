"""Gaussian engine: the input is written by dpdata's `gaussian/gjf` writer (route, charge,
multiplicity), results are read by dpdata's `gaussian/log` reader (the last geometry)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import dpdata
from pydantic import Field

from opshelf.core.bounds import ChargeE, MultiplicityOrAuto, PoolSize
from opshelf.core.config import StrictModel
from opshelf.core.engine import EngineResult, Task, TaskFailed, TaskKind
from opshelf.core.errors import ConfigError
from opshelf.core.process import tail
from opshelf.fp.base import FpEngine
from opshelf.fp.common import conform_to_frame

INPUT = "input.gjf"
LOG = "input.log"  # g16 writes <input stem>.log next to the input
#: Gaussian's own words for an SCF that stopped unconverged.
UNCONVERGED_MARKERS = ("Convergence failure -- run terminated.",)


class GaussianSettings(StrictModel):
    keywords: str = Field(
        "b3lyp/6-31g**", description="route section without '#'; 'force' is added"
    )
    charge: ChargeE = Field(0, description="total charge of the molecule")
    multiplicity: MultiplicityOrAuto = Field(
        "auto", description="'auto': dpdata's rule (1 or 2)"
    )
    nproc: PoolSize = Field(1, description="%nproc: shared-memory processors")


class GaussianEngine(FpEngine):
    """Gaussian: single points (force) and optimisations (opt) of molecules; the input
    written by dpdata's `gaussian/gjf` writer, results read by its `gaussian/log` reader.
    Runs `g16` (or `profile.command`)."""

    name = "gaussian"
    kinds = frozenset({TaskKind.SINGLE_POINT, TaskKind.RELAX})
    Settings = GaussianSettings
    settings: GaussianSettings
    raw_file_globs: ClassVar[tuple[str, ...]] = (INPUT, LOG)

    def default_command(self) -> list[str]:
        return ["g16"]

    def extra_args(self, task_dir: Path, task: Task) -> list[str]:
        return [INPUT]

    def route(self, task: Task) -> str:
        words = self.settings.keywords.split()
        lowered = [w.lower() for w in words]
        if task.kind is TaskKind.RELAX:
            options = task.options()
            assert options is not None
            if options.relax_cell:
                raise ConfigError("gaussian engine: molecules have no cell to relax (relax_cell)")
            if not any(w.startswith("opt") for w in lowered):
                words.insert(0, f"opt(maxcycles={options.max_steps})")
        if "force" not in lowered and not any(w.startswith("force") for w in lowered):
            words.insert(0, "force")
        return " ".join(words)

    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        self.require_supported(task)
        frame.to(
            "gaussian/gjf",
            str(task_dir / INPUT),
            keywords=self.route(task),
            charge=self.settings.charge,
            multiplicity=self.settings.multiplicity,
            nproc=self.settings.nproc,
        )

    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        log = task_dir / LOG
        if not log.is_file():
            raise TaskFailed(f"gaussian: no output {log}", tail(task_dir / "gaussian.out"))
        text = log.read_text(errors="replace")
        for marker in UNCONVERGED_MARKERS:
            if marker in text:
                raise TaskFailed(
                    f"gaussian: SCF not converged ({marker!r} in {log.name})", tail(log)
                )
        if "Normal termination" not in text:
            raise TaskFailed(f"gaussian: no 'Normal termination' in {log.name}", tail(log))
        try:
            system = dpdata.LabeledSystem(str(log), fmt="gaussian/log")
        except (ValueError, IndexError, RuntimeError, AssertionError) as exc:
            raise TaskFailed(f"gaussian: cannot read {log}: {exc}", tail(log)) from exc
        system = conform_to_frame(system, frame, log)
        return EngineResult(
            system=system,
            raw_files=self.raw_files(task_dir),
            info={"log": log.name, "has_virial": system.has_virial()},
        )
