"""`ase-ensemble`: ASE molecular dynamics driven by the first of an ensemble of ASE
calculators, writing the same model_devi.out as LAMMPS' `pair_style deepmd`.

The dynamics (Langevin NVT, isotropic MTK NPT, velocity-Verlet NVE) are core's `run_md`
(opshelf.core.engines.ase_engine); every dumped frame is then evaluated by every calculator
of the ensemble and the deviations follow DeePMD-kit's definitions (`opshelf.md.model_devi`).
Calculators: DeePMD models via `deepmd.calculator:DP` (kwargs {model: path}), large atomic
models, EMT for tests; any `opshelf.models` name or import path.

Task dirs are self-contained: a calculator keyword whose value names an existing file or
folder (a model) is copied into the task dir (`calc-000-model.pb`, ...; distinct names even
when every model is `frozen_model.pb`) and the copy is used when the task runs, wherever the
dir has moved to (dpdispatcher, Argo), as the LAMMPS engine does with potential files.
"""

from __future__ import annotations

import json
import shutil
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
#: {calculator index: {keyword: file name in the task dir}} of the copied model files
LOCAL_FILES = "opshelf-ase-ensemble-files.json"


class CalculatorSpec(StrictModel):
    calculator: str = Field(description="an 'opshelf.models' name or 'module:factory'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the "
                                   "calculator's factory (a file they name is copied into the "
                                   "task dir)")


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
    preload_modules: ClassVar[tuple[str, ...]] = ("ase.io", "ase.md")
    settings: AseEnsembleSettings

    def calculators(self, task_dir: Path | None = None) -> list[Any]:
        """The ensemble; with `task_dir`, keywords naming files copied there point at the
        copies (see `copy_model_files`)."""
        local: dict[str, dict[str, str]] = {}
        if task_dir is not None and (task_dir / LOCAL_FILES).is_file():
            local = json.loads((task_dir / LOCAL_FILES).read_text())
        calcs = []
        for index, spec in enumerate(self.settings.calculators):
            kwargs = dict(spec.kwargs)
            for key, name in local.get(str(index), {}).items():
                kwargs[key] = str(task_dir / name)  # type: ignore[operator]
            calcs.append(load_calculator(spec.calculator, **kwargs))
        return calcs

    def copy_model_files(self, task_dir: Path) -> None:
        """Copy every file or folder a calculator keyword names into `task_dir`."""
        local: dict[str, dict[str, str]] = {}
        for index, spec in enumerate(self.settings.calculators):
            for key, value in spec.kwargs.items():
                if not isinstance(value, str) or "\n" in value:
                    continue
                source = Path(value).expanduser()
                if not source.exists():
                    continue
                name = f"calc-{index:03d}-{source.name}"
                target = task_dir / name
                if source.is_dir():
                    shutil.copytree(source, target, dirs_exist_ok=True)
                else:  # a copy, not a link: a model rewritten in place must not change it
                    shutil.copyfile(source, target)
                local.setdefault(str(index), {})[key] = name
        if local:
            (task_dir / LOCAL_FILES).write_text(json.dumps(local, indent=1))

    def check(self, elements: Sequence[str], task: Task | None = None) -> None:
        self.calculators()
        if task is not None and not self.supports(task):
            raise ConfigError(f"ase-ensemble: task kind {task.kind.value!r} is not supported")

    def write_inputs(self, frame: dpdata.System, task: Task, task_dir: Path) -> None:
        import ase.io

        task_dir.mkdir(parents=True, exist_ok=True)
        ase.io.write(task_dir / INPUT_FILE, frame.to("ase/structure")[0], format="extxyz")
        self.copy_model_files(task_dir)

    def run(self, task_dir: Path, task: Task, frame: dpdata.System) -> EngineResult:
        import ase.io

        from opshelf.core.engines.ase_engine import single_point

        atoms = ase.io.read(task_dir / INPUT_FILE, format="extxyz")
        calculators = self.calculators(task_dir)
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
