"""`ase-ensemble`: ASE molecular dynamics driven by the first of an ensemble of ASE
calculators, writing the same model_devi.out as LAMMPS' `pair_style deepmd`.

The dynamics (Langevin NVT, isotropic MTK NPT, velocity-Verlet NVE) are core's `run_md`
(opshelf.core.engines.ase_engine); every dumped frame is then evaluated by every calculator
of the ensemble and the deviations follow DeePMD-kit's definitions (`opshelf.md.model_devi`).
Calculators: DeePMD models via `deepmd.calculator:DP` (kwargs {model: path}), large atomic
models, EMT for tests; any `opshelf.models` name or import path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import dpdata
import numpy as np
from pydantic import Field

from opshelf.core.config import StrictModel
from opshelf.core.engine import Engine, EngineResult, MDOptions, Task, TaskKind
from opshelf.core.engines.ase_engine import (
    INPUT_FILE,
    LOG_FILE,
    OUTPUT_FILE,
    read_labelled_output,
    run_md,
)
from opshelf.core.errors import ConfigError
from opshelf.core.models import load_calculator
from opshelf.md.model_devi import deviation_row, write_model_devi

MODEL_DEVI_FILE = "model_devi.out"


class CalculatorSpec(StrictModel):
    calculator: str = Field(description="an 'opshelf.models' name or 'module:factory'")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class AseEnsembleSettings(StrictModel):
    """Settings of the `ase-ensemble` engine."""

    calculators: list[CalculatorSpec] = Field(
        min_length=1, description="the first drives the dynamics; with two or more, "
        "model_devi.out is written")


def ensemble_deviation(images: Sequence[Any], calculators: Sequence[Any]) -> list[list[float]]:
    """model_devi.out rows for `images` (each with info['md_step']) under `calculators`."""
    rows = []
    for index, atoms in enumerate(images):
        forces, virials = [], []
        work = atoms.copy()
        for calc in calculators:
            work.calc = calc
            forces.append(work.get_forces())
            if work.pbc.all():
                # virial = -stress * volume (eV), per atom as deepmd-kit normalises it
                stress = work.get_stress(voigt=False)
                virials.append((-stress * work.get_volume() / len(work)).reshape(9))
        step = int(atoms.info.get("md_step", index))
        rows.append(deviation_row(step, np.asarray(forces),
                                  np.asarray(virials) if virials else None))
    return rows


class AseEnsembleEngine(Engine):
    """MD (and single point) with an ensemble of ASE calculators, in-process."""

    name = "ase-ensemble"
    kinds = frozenset({TaskKind.SINGLE_POINT, TaskKind.MD})
    Settings = AseEnsembleSettings
    raw_file_globs: ClassVar[tuple[str, ...]] = ("*.extxyz", LOG_FILE, MODEL_DEVI_FILE)
    settings: AseEnsembleSettings

    def calculators(self) -> list[Any]:
        return [load_calculator(c.calculator, **c.kwargs) for c in self.settings.calculators]

    def check(self, elements: Sequence[str], task: Task | None = None) -> None:
        self.calculators()
        if task is not None and not self.supports(task):
            raise ConfigError(f"ase-ensemble: task kind {task.kind.value!r} is not supported")

    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        import ase.io

        task_dir.mkdir(parents=True, exist_ok=True)
        ase.io.write(task_dir / INPUT_FILE, frame.to("ase/structure")[0], format="extxyz")

    def run(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        import ase.io

        from opshelf.core.engines.ase_engine import single_point

        atoms = ase.io.read(task_dir / INPUT_FILE, format="extxyz")
        calculators = self.calculators()
        atoms.calc = calculators[0]
        if task.kind is TaskKind.MD:
            options = task.options()
            assert isinstance(options, MDOptions)
            images = run_md(atoms, options, task_dir)
        else:
            images = [single_point(atoms)]
            images[0].info["md_step"] = 0
        ase.io.write(task_dir / OUTPUT_FILE, images, format="extxyz")
        if len(calculators) > 1:
            write_model_devi(task_dir / MODEL_DEVI_FILE, ensemble_deviation(images, calculators))
        return self.read_results(task_dir, task, frame)

    def read_results(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        system, _ = read_labelled_output(task_dir, frame)
        return EngineResult(system=system, raw_files=self.raw_files(task_dir),
                            info={"n_frames": system.get_nframes()})
