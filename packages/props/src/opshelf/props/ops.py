"""dflow OPs of opshelf-props: make -> run (one sliced step per batch of tasks) -> post.

- `MakeProperty`: structure + property params + engine -> task dirs in batches + a context
- `RunPropertyTasks`: one batch (all of a property's tasks for an engine that packs them,
  e.g. LAMMPS: one process; else one task) -> labelled outputs
- `PostProperty`: context + labelled task outputs -> results (JSON, plot) + structure
- `PropertySteps`: the three as one super-OP (one property); `PropertiesSteps`: relax ->
  every property block of the relaxed structure (`opshelf.props.plan`), the super-OP that
  `build_props_workflow` and the alloy workflow compose.
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, List

from dflow import Step, Steps, Workflow, upload_artifact
from dflow.python import OP, OPIO, Artifact, BigParameter, FatalError, OPIOSign, Parameter

from opshelf.core.config import validate_into
from opshelf.core.dflow_build import Mode, make_step
from opshelf.core.engine import Engine, EngineSpec, load_engine
from opshelf.core.execution import StepExecution, StepsConfig
from opshelf.core.fanout import (
    REQUIRED,
    Fan,
    FanOut,
    FanOutSteps,
    Stage,
    from_collect,
    from_input,
    from_prep,
    from_run,
)
from opshelf.core.keys import StepKey
from opshelf.props.base import STRUCTURE_FILE, PropertyFailed, read_structure
from opshelf.props.ondisk import make_property, n_batches, post_property
from opshelf.props.plan import Block, plan_blocks
from opshelf.props.registry import get_property, parse_params
from opshelf.props.relax import RELAXED_FILE
from opshelf.props.run import run_batch
from opshelf.props.runner import compute_property

STEP_MAKE = "make"
STEP_RUN = "run"
STEP_POST = "post"
#: the one step of a property on an engine that packs tasks (ComputeProperty)
STEP_COMPUTE = "compute"
PHASES = (STEP_MAKE, STEP_RUN, STEP_POST)


#: Libraries make and post import lazily (seconds each, sympy through pymatgen's elasticity
#: alone ~1.5 s): core's local runner preloads them once in its fork server, not per step.
PRELOAD_MODULES = ("ase.io", "ase.build", "ase.lattice.cubic", "scipy.interpolate",
                   "pymatgen.io.ase", "pymatgen.symmetry.analyzer", "pymatgen.core.surface",
                   "pymatgen.analysis.eos", "pymatgen.analysis.elasticity", "phonopy",
                   "matplotlib.pyplot")


class MakeProperty(OP):
    """Structure (any file ASE reads) + `property` params + `engine` -> one task dir per
    calculation and the context dir `post` needs. The engine is checked first."""

    preload_modules = PRELOAD_MODULES

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "structure": Artifact(Path),
            "property": BigParameter(dict),
            "engine": BigParameter(dict),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "task_names": Parameter(List[str]),
            "task_paths": Artifact(List[Path]),
            "batch_names": Parameter(List[str]),
            "batch_paths": Artifact(List[Path]),
            "context": Artifact(Path),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        engine = load_engine(validate_into(EngineSpec, ip["engine"], where="input 'engine'"))
        params = parse_params(ip["property"], where="input 'property'")
        atoms = read_structure(ip["structure"])
        written = make_property(get_property(params.type), params, atoms, engine,
                                Path("tasks"), Path("context"))
        return OPIO({"task_names": written.names, "task_paths": written.paths,
                     "batch_names": written.batch_names, "batch_paths": written.batch_paths,
                     "context": Path("context")})


class RunPropertyTasks(OP):
    """One batch of a property's tasks (`run_batch`: one program start for an engine that
    packs tasks) -> their labelled outputs and run dirs. A failed task is recorded in its
    report (read by `post`); the step still succeeds."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "batch_name": Parameter(str),
            "batch": Artifact(Path),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "labeled_data": Artifact(Path),
            "raw_output": Artifact(Path),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        name = ip["batch_name"]
        run_dir, labelled_dir = Path("run") / name, Path("labeled") / name
        run_batch(Path(ip["batch"]), run_dir, labelled_dir)
        return OPIO({"labeled_data": labelled_dir, "raw_output": run_dir})


class PostProperty(OP):
    """Context + every task's labelled output -> `results` (<type>.json, plot), `result`
    (the same dict) and `structure` (the relaxed one for relax, else the input)."""

    preload_modules = PRELOAD_MODULES

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "context": Artifact(Path),
            "labeled_data": Artifact(List[Path]),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "results": Artifact(Path),
            "result": BigParameter(dict),
            "structure": Artifact(Path),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        context = Path(ip["context"])
        return _post_outputs(context, lambda out: post_property(
            context, [Path(p) for p in ip["labeled_data"]], out))


def _post_outputs(context: Path, run: Any) -> OPIO:
    """PostProperty's outputs: the results folder, the result, the structure after (the
    relaxed one for relax, else the input). `run` gives the result; PropertyFailed (too
    few tasks succeeded: retrying cannot help) becomes a FatalError."""
    out = Path("results")
    try:
        result = run(out)
    except PropertyFailed as exc:
        raise FatalError(str(exc)) from exc
    structure = out / RELAXED_FILE
    if not structure.is_file():
        structure = Path("structure") / STRUCTURE_FILE
        structure.parent.mkdir(exist_ok=True)
        shutil.copyfile(context / STRUCTURE_FILE, structure)
    return OPIO({"results": out, "result": result, "structure": structure})


class ComputeProperty(OP):
    """make -> run -> post of one property in one step (`compute_property`, the serial
    driver): for an engine that packs tasks (LAMMPS), whose tasks all run in one program
    start anyway, so that a property costs one step instead of three. Inputs as
    MakeProperty's, outputs as PostProperty's."""

    preload_modules = PRELOAD_MODULES

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return MakeProperty.get_input_sign()

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return PostProperty.get_output_sign()

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        engine = load_engine(validate_into(EngineSpec, ip["engine"], where="input 'engine'"))
        params = parse_params(ip["property"], where="input 'property'")
        atoms = read_structure(ip["structure"])
        work = Path("work")
        return _post_outputs(work / "context", lambda out: compute_property(
            params, atoms, engine, work, results_dir=out))


class PropertySteps(FanOutSteps):
    """make -> run (one sliced step per batch) -> post, keys `<block_id>--make` etc.

    Inputs: artifact `structure`; parameters `property` (params dict with its type),
    `engine` (EngineSpec dict), `block_id`. Outputs: artifacts `results`, `structure`;
    parameter `result`.
    """

    def __init__(self, name: str, make: StepExecution, run: StepExecution,
                 post: StepExecution, *, mode: Mode = "local",
                 n_batches_hint: int | None = None) -> None:
        declaration = FanOut(
            block_id="props",
            parameters={"property": REQUIRED, "engine": REQUIRED},
            artifacts=("structure",),
            prep=Stage(STEP_MAKE, MakeProperty, make,
                       parameters={n: from_input(n) for n in ("property", "engine")},
                       artifacts={"structure": from_input("structure")}),
            run=Stage(STEP_RUN, RunPropertyTasks, run,
                      parameters={"batch_name": from_prep("batch_names")},
                      artifacts={"batch": from_prep("batch_paths")}),
            fan=Fan(over="batch_names", sliced_parameters=("batch_name",),
                    sliced_artifacts=("batch",), output_parameters=(),
                    output_artifacts=("labeled_data", "raw_output")),
            collect=Stage(STEP_POST, PostProperty, post,
                          artifacts={"context": from_prep("context"),
                                     "labeled_data": from_run("labeled_data")}),
            output_parameters={"result": from_collect("result")},
            output_artifacts={n: from_collect(n) for n in ("results", "structure")},
        )
        super().__init__(name, declaration, mode=mode, n_items=n_batches_hint)


class PropertyTemplates:
    """`PropertySteps` templates, one per block name and number of batches (which sets the
    run step's group size), shared by every structure and interaction of a workflow."""

    def __init__(self, steps: StepsConfig, mode: Mode) -> None:
        self.steps, self.mode = steps, mode
        self.made: dict[tuple[str, int], PropertySteps] = {}

    def __call__(self, block: str, n_batches: int) -> PropertySteps:
        if (block, n_batches) not in self.made:
            self.made[(block, n_batches)] = PropertySteps(
                f"{block}-{n_batches}-steps",
                *(self.steps.for_step(f"{block}-{phase}") for phase in PHASES),
                mode=self.mode, n_batches_hint=n_batches)
        return self.made[(block, n_batches)]


def count_batches(block: Block, structure: Path, engine: Engine) -> int:
    """How many run steps `block` makes (sizes the fan-out's groups at build time)."""
    if block.is_relax:
        return 1
    n_tasks = get_property(block.params.type).count_tasks(read_structure(structure),
                                                         block.params)
    return n_batches(engine, n_tasks)


class PropertiesSteps(Steps):
    """relax (when planned) -> every other block of the plan in parallel, on one structure
    with one engine: one `PropertySteps` (make -> run batches -> post) per block, or, for an
    engine that packs tasks (LAMMPS), one `ComputeProperty` step per block, keyed
    `<block>--compute` (`result_step_key` names the step holding a block's results).

    Input: artifact `structure`. Outputs: each block's results folder, an artifact named by
    its key (optional: a failed block has none, when `continue_on_failed`). Block steps are
    keyed `<key_prefix>--<block>` (``cu--eam--eos``; just ``eos`` without a prefix), their
    steps `<...>--make`, `--run-000000`, `--post`; `steps` overrides are named
    `<block>-make|run|post`.
    """

    def __init__(self, name: str, blocks: Sequence[Block], engine: EngineSpec,
                 structure_file: Path, templates: PropertyTemplates, *,
                 key_prefix: str = "", continue_on_failed: bool = True) -> None:
        from dflow import InputArtifact, Inputs, OutputArtifact, Outputs

        loaded = load_engine(engine)
        super().__init__(name=name, inputs=Inputs(artifacts={"structure": InputArtifact()}),
                         outputs=Outputs(artifacts={
                             b.key: OutputArtifact(optional=continue_on_failed)
                             for b in blocks}))
        engine_dict = engine.model_dump(mode="json")
        source: Any = self.inputs.artifacts["structure"]
        parallel = []
        for block in blocks:
            key = str(StepKey.of(key_prefix, block.key)) if key_prefix else block.key
            parameters = {"engine": engine_dict, "property": block.params.model_dump(mode="json")}
            if loaded.packs_tasks:  # the whole property in one step (ComputeProperty)
                step = make_step(key, ComputeProperty, templates.steps.for_step(
                    f"{block.key}-{STEP_RUN}"), key=StepKey.of(key, STEP_COMPUTE),
                    parameters=parameters, artifacts={"structure": source}, mode=templates.mode)
            else:
                step = Step(key, templates(block.key, count_batches(block, structure_file, loaded)),
                            key=key, artifacts={"structure": source},
                            parameters={"block_id": key, **parameters})
            step.continue_on_failed = continue_on_failed and not block.is_relax
            self.outputs.artifacts[block.key]._from = step.outputs.artifacts["results"]
            if block.is_relax:
                self.add(step)
                source = step.outputs.artifacts["structure"]
            else:
                parallel.append(step)
        if parallel:
            self.add(parallel)


def result_step_key(block_id: str, engine: Engine) -> StepKey:
    """The key of the step whose `results` output holds block `block_id`'s results."""
    return StepKey.of(block_id, STEP_COMPUTE if engine.packs_tasks else STEP_POST)


def _engine_spec(engine: EngineSpec | dict[str, Any]) -> EngineSpec:
    return validate_into(EngineSpec, engine, where="engine") if isinstance(engine, dict) \
        else engine


def build_props_workflow(structure: str | Path, engine: EngineSpec | dict[str, Any],
                         properties: Sequence[Any], *, relax: Any = None,
                         steps: StepsConfig | None = None, mode: Mode = "local",
                         workflow_id: str | None = None, name: str = "props") -> Workflow:
    """A Workflow of one `PropertiesSteps`: relax (when `relax` is given) -> every property
    of the relaxed structure, in parallel. Steps are named `<block>-make`, `<block>-run`,
    `<block>-post` for `steps` overrides, and keyed `<block>--make`,
    `<block>--run-000000`, `<block>--post`."""
    structure = Path(structure).resolve()
    read_structure(structure)
    blocks = plan_blocks(properties, relax)
    templates = PropertyTemplates(steps or StepsConfig(), mode)
    props = PropertiesSteps(f"{name}-properties", blocks, _engine_spec(engine), structure,
                            templates, continue_on_failed=False)
    workflow = Workflow(name=name, id=workflow_id)
    workflow.add(Step("properties", props, key="properties",
                      artifacts={"structure": upload_artifact(structure)}))
    return workflow


def step_names(properties: Sequence[Any], relax: bool) -> list[str]:
    """Every step name `steps` overrides may use."""
    blocks = plan_blocks(properties, {} if relax else None)
    return [f"{b.key}-{phase}" for b in blocks for phase in PHASES]


def run_props_locally(structure: str | Path, engine: EngineSpec | dict[str, Any],
                      properties: Sequence[Any], workdir: str | Path, *, relax: Any = None,
                      steps: StepsConfig | None = None, workflow_id: str = "props"
                      ) -> dict[str, dict[str, Any]]:
    """Build the props workflow, run it in dflow's local mode (core's `run_locally`) and
    copy each block's results into `workdir/results/<block>/`. Returns {block: result}."""
    import json

    from opshelf.core.local import run_locally, use_local_mode
    from opshelf.core.workflows.outputs import local_step_outputs

    workdir = Path(workdir).resolve()
    use_local_mode(workdir / "dflow")  # before upload_artifact: no object store here
    workflow = build_props_workflow(structure, engine, properties, relax=relax, steps=steps,
                                    workflow_id=workflow_id)
    phase = run_locally(workflow, workdir / "dflow")
    if phase != "Succeeded":
        raise RuntimeError(f"props workflow {workflow_id} ended {phase}; step logs under "
                           f"{workdir / 'dflow' / workflow_id}")
    results: dict[str, dict[str, Any]] = {}
    loaded = load_engine(_engine_spec(engine))
    for block in plan_blocks(properties, relax):
        outputs = local_step_outputs(workdir / "dflow", workflow,
                                     str(result_step_key(block.key, loaded)))
        source = outputs.artifact_items("results")[0]
        target = workdir / "results" / block.key
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        results[block.key] = json.loads(next(target.glob("*.json")).read_text())
    return results
