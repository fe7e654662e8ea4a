"""Helpers of opshelf-fp's tests (a uniquely named module: every package has a tests/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpdata
from ase.build import bulk

from opshelf.core.execution import StepExecution
from opshelf.core.testing import skip_or_fail

#: Real outputs of the FP programs, copied into the package (provenance and licence in its
#: README.md): the tests read nothing outside the checkout.
ENGINE_OUTPUTS = Path(__file__).resolve().parent / "data" / "engine-outputs"


def require_data(path: Path, package: str) -> Path:
    """Data that a Debian package ships (basis sets, pseudopotentials): like an engine,
    missing means skip, or fail with OPSHELF_REQUIRE_ENGINES=1."""
    if path.exists():
        return path
    skip_or_fail(f"{path} not found (Debian package {package})")


def si2_frame(displacement: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dpdata.System:
    """2-atom diamond Si primitive cell, a = 5.43 A (experimental, ase reference_states),
    optionally with the second atom displaced (Angstrom)."""
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += displacement
    return dpdata.System(atoms, fmt="ase/structure")


def write_frames(path: Path, frames: list[dpdata.System]) -> Path:
    """Frames as one extxyz file: PrepFp reads any dpdata/ASE format."""
    import ase.io

    ase.io.write(path, [frame.to("ase/structure")[0] for frame in frames], format="extxyz")
    return path


def found(artifact: Path, name: str) -> Path:
    """The file or folder `name` inside a dflow artifact (a link to a step's outputs)."""
    root = artifact.resolve()
    if root.is_file():
        return root
    return next(p for p in sorted(root.rglob(name)) if ".dflow" not in p.parts)


@dataclass
class LocalRun:
    """A finished local-mode run of one PrepRunFp step (keyed `<block_id>--fp`)."""

    phase: str
    wfdir: Path
    block_id: str

    def step_dir(self, name: str) -> Path:
        return self.wfdir / f"{self.block_id}--{name}"

    def output(self, name: str) -> Path:
        return self.step_dir("fp") / "outputs" / "artifacts" / name


def run_prep_run_fp(
    workdir: Path,
    frames_file: Path,
    engine: dict[str, Any],
    *,
    task: dict[str, Any] | None = None,
    run: StepExecution | None = None,
    min_success_ratio: float = 1.0,
    keep_files: list[str] | None = None,
    n_tasks: int | None = None,
    block_id: str = "iter-000000",
) -> LocalRun:
    """Build a workflow of one PrepRunFp step and run it with core's local runner
    (dflow debug mode) in `workdir`. dflow's global config is restored afterwards."""
    from dflow import Step, Workflow, config, upload_artifact

    from opshelf.core.local import run_locally, use_local_mode
    from opshelf.fp.ops import PrepRunFp

    saved = dict(config)
    try:
        use_local_mode(workdir)  # build in local mode: uploads land in the run's workdir
        plain = StepExecution()
        super_op = PrepRunFp("prep-run-fp", plain, run or plain, plain, n_tasks_hint=n_tasks)
        step = Step(
            "label",
            super_op,
            key=f"{block_id}--fp",
            artifacts={"frames": upload_artifact([frames_file])},
            parameters={
                "engine": engine,
                "task": task or {},
                "block_id": block_id,
                "min_success_ratio": min_success_ratio,
                "keep_files": keep_files or [],
            },
        )
        workflow = Workflow(name="fp-test", id="fp-test")
        workflow.add(step)
        phase = run_locally(workflow, workdir)
    finally:
        config.clear()
        config.update(saved)
    return LocalRun(phase, workdir / "fp-test", block_id)
