"""`label`: compute energies, forces and virials of many frames with any engine.

    prep-tasks (one task dir per frame) -> run-task (sliced fan-out) -> collect-labels

Frames come from files (any dpdata format) or are generated (a rattled, randomly strained
crystal). Results: a deepmd/npy multi-system data set, failures.json (every failed task and
why), summary.json and a plot of energy per atom and max force per frame.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator

from opshelf.core.bounds import DistanceA, FrameCount, Seed
from opshelf.core.config import StrictModel
from opshelf.core.crystal import CrystalSpec
from opshelf.core.engine import EngineSpec, Task, load_engine
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.execution import StepsConfig
from opshelf.core.workflow import BuildContext, WorkflowPlugin

if TYPE_CHECKING:
    from ase import Atoms
    from dflow import Workflow

    from opshelf.core.fanout import FanOut

STEP_PREP = "prep-tasks"
STEP_RUN = "run-task"
STEP_COLLECT = "collect-labels"
GENERATED_FRAMES = "generated-frames.extxyz"
PLOT_FILE = "labels.png"


class GenerateFrames(CrystalSpec):
    """Frames made from a perfect crystal: random strain, then random displacements."""

    n_frames: FrameCount = Field(24, description="how many strained and rattled copies")
    rattle_A: DistanceA = Field(0.05, description="standard deviation of the displacements")
    random_strain: float = Field(
        0.0, ge=0, lt=0.5, description="largest absolute strain component (uniform, symmetric)")
    seed: Seed = Field(0, description="seed of the strains and displacements (reproducible "
                      "frames)")


class LabelConfig(StrictModel):
    """Configuration of the `label` workflow."""

    frames: list[str] | None = Field(
        None, description="structure files (relative to the config file)")
    frames_format: str = Field(
        "auto", description="dpdata format of `frames` ('auto': deepmd/npy folders, else any "
        "file ASE reads)")
    generate: GenerateFrames | None = Field(
        None, description="make the frames from a crystal instead of reading `frames`")
    engine: EngineSpec = Field(description="the engine that labels each frame: any installed "
                               "opshelf engine (`opshelf list`) with its settings and profile")
    task: Task = Field(default_factory=Task, description="what to compute per frame: single "
                       "point (default), relax or md")
    min_success_ratio: float = Field(
        1.0, ge=0, le=1, description="the run fails when fewer tasks than this succeed")
    steps: StepsConfig = Field(default_factory=StepsConfig, description="how each step runs: "
                               "`default` and overrides for prep-tasks, run-task, "
                               "collect-labels")

    @model_validator(mode="after")
    def _one_source(self) -> LabelConfig:
        if (self.frames is None) == (self.generate is None):
            raise ValueError("give exactly one of 'frames' (files) and 'generate'")
        if self.frames is not None and not self.frames:
            raise ValueError("'frames' is empty")
        return self


def generate_frames(spec: GenerateFrames) -> list[Atoms]:
    """`spec.n_frames` strained and rattled copies of a crystal (deterministic by seed)."""
    base = spec.atoms(where="generate")
    rng = np.random.default_rng(spec.seed)
    frames = []
    for _ in range(spec.n_frames):
        atoms = base.copy()
        if spec.random_strain:
            strain = rng.uniform(-spec.random_strain, spec.random_strain, (3, 3))
            strain = (strain + strain.T) / 2
            atoms.set_cell(atoms.cell[:] @ (np.eye(3) + strain), scale_atoms=True)
        if spec.rattle_A:
            atoms.positions += rng.normal(0.0, spec.rattle_A, atoms.positions.shape)
        frames.append(atoms)
    return frames


class LabelWorkflow(WorkflowPlugin[LabelConfig]):
    name = "label"
    description = "label frames (energies, forces, virials) with any engine"
    Config = LabelConfig

    def step_names(self, config: LabelConfig) -> list[str]:
        return [STEP_PREP, STEP_RUN, STEP_COLLECT]

    # -- inputs --------------------------------------------------------------------------
    def frame_files(self, config: LabelConfig, ctx: BuildContext) -> list[Path]:
        """The frame files of this run; generated frames are written into the run dir."""
        if config.generate is not None:
            import ase.io

            path = ctx.run_dir / "inputs" / GENERATED_FRAMES
            path.parent.mkdir(parents=True, exist_ok=True)
            ase.io.write(path, generate_frames(config.generate), format="extxyz")
            return [path]
        files = []
        for entry in config.frames or []:
            path = Path(entry).expanduser()
            path = path if path.is_absolute() else (ctx.config_dir / path)
            if not path.exists():
                raise MissingInputError(f"frames: file not found: {entry} (looked at {path})")
            files.append(path.resolve())
        return files

    def _frames(self, config: LabelConfig, ctx: BuildContext, *, write: bool
                ) -> tuple[list[Path], int, list[str]]:
        """(frame files, number of frames, elements). `write=False` (check) writes nothing:
        the run dir may not exist yet."""
        import dpdata

        from opshelf.core.ops.labelling import read_frames, union_type_map

        if config.generate is not None and not write:
            frames = [dpdata.System(atoms, fmt="ase/structure")
                      for atoms in generate_frames(config.generate)]
            return [], len(frames), union_type_map(frames)
        files = self.frame_files(config, ctx)
        frames = [frame for path in files for frame in read_frames(path, config.frames_format)]
        return files, len(frames), union_type_map(frames)

    def check(self, config: LabelConfig, ctx: BuildContext) -> None:
        super().check(config, ctx)
        _, _, elements = self._frames(config, ctx, write=False)
        engine = load_engine(config.engine)
        reason = engine.unsupported_reason(config.task)
        if reason is not None:
            raise ConfigError(reason)
        engine.check(elements, config.task)

    # -- workflow ------------------------------------------------------------------------
    def build(self, config: LabelConfig, ctx: BuildContext) -> Workflow:
        from dflow import Workflow, upload_artifact

        from opshelf.core.fanout import fan_out_steps

        files, n_frames, type_map = self._frames(config, ctx, write=True)
        steps = fan_out_steps(
            label_declaration(config.steps), mode=ctx.mode, n_items=n_frames,
            artifacts={"frames": upload_artifact(files)},
            parameters={"fmt": config.frames_format,
                        "engine": config.engine.model_dump(mode="json"),
                        "task": config.task.model_dump(mode="json"),
                        "type_map": type_map, "min_success_ratio": config.min_success_ratio})
        workflow = Workflow(name="label", id=ctx.workflow_id)
        for step in steps.values():
            workflow.add(step)
        return workflow

    # -- results -------------------------------------------------------------------------
    def results_inputs(self, config: LabelConfig, workflow: Workflow) -> dict[str, Any]:
        from opshelf.core.dflow_build import find_step

        collect = find_step(workflow, STEP_COLLECT)
        return {name: collect.outputs.artifacts[name] for name in ("data", "failures", "summary")}

    def write_results(self, config: LabelConfig, inputs: dict[str, Path],
                      results_dir: Path) -> list[str]:
        results = results_dir
        results.mkdir(parents=True, exist_ok=True)
        data_dir = results / "data"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        shutil.copytree(inputs["data"], data_dir)
        for name in ("failures", "summary"):
            shutil.copyfile(inputs[name], results / f"{name}.json")
        summary = json.loads((results / "summary.json").read_text())
        plot_labels(summary, results / PLOT_FILE)
        lines = [
            f"labelled {summary['n_succeeded']} of {summary['n_tasks']} tasks "
            f"({summary['n_frames']} frames) -> {data_dir} (deepmd/npy)",
            f"plot: {results / PLOT_FILE}",
        ]
        if summary["n_failed"]:
            lines.append(f"{summary['n_failed']} failed tasks, with reasons: "
                         f"{results / 'failures.json'}")
        return lines


def label_declaration(steps: StepsConfig) -> FanOut:
    """The `label` graph, prep-tasks -> run-task (one sliced step per frame) ->
    collect-labels, declared with core's fan-out builder (imports dflow)."""
    from opshelf.core.fanout import (
        REQUIRED,
        Fan,
        FanOut,
        Stage,
        from_input,
        from_prep,
        from_run,
    )
    from opshelf.core.ops import CollectLabels, PrepEngineTasks, RunEngineTask

    return FanOut(
        block_id="",
        parameters={"engine": REQUIRED, "task": {}, "fmt": "auto", "type_map": [],
                    "min_success_ratio": 1.0},
        artifacts=("frames",),
        prep=Stage(STEP_PREP, PrepEngineTasks, steps.for_step(STEP_PREP),
                   parameters={n: from_input(n) for n in ("fmt", "engine", "task", "type_map")},
                   artifacts={"frames": from_input("frames")}),
        run=Stage(STEP_RUN, RunEngineTask, steps.for_step(STEP_RUN),
                  parameters={"task_name": from_prep("task_names")},
                  artifacts={"task_path": from_prep("task_paths")}),
        fan=Fan(over="task_names", sliced_parameters=("task_name",),
                sliced_artifacts=("task_path",), output_artifacts=("labeled_data", "raw_output")),
        collect=Stage(STEP_COLLECT, CollectLabels, steps.for_step(STEP_COLLECT),
                      parameters={"type_map": from_prep("type_map"),
                                  "min_success_ratio": from_input("min_success_ratio")},
                      artifacts={"labeled_data": from_run("labeled_data")}),
    )


def plot_labels(summary: dict[str, Any], path: Path) -> None:
    """Energy per atom and max force of every labelled frame, in task order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energies: list[float] = []
    forces: list[float] = []
    failed_at: list[int] = []
    for task in summary["tasks"]:
        if task["status"] != "succeeded":
            failed_at.append(len(energies))
            continue
        energies.extend(task.get("energy_eV_per_atom") or [])
        forces.extend(task.get("max_force_eV_per_A") or [])
    fig, (ax_e, ax_f) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    ax_e.plot(energies, "o-", ms=3)
    ax_e.set_ylabel("energy (eV/atom)")
    ax_f.plot(forces, "o-", ms=3, color="tab:red")
    ax_f.set_ylabel("max |force| (eV/Å)")
    ax_f.set_xlabel("labelled frame")
    for x in failed_at:
        for ax in (ax_e, ax_f):
            ax.axvline(x - 0.5, color="grey", lw=0.8, ls=":")
    ax_e.set_title(f"{summary['n_frames']} frames labelled, {summary['n_failed']} tasks failed"
                   + (" (dotted: where a failed task sits)" if failed_at else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
