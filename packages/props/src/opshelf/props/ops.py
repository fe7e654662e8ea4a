"""dflow OPs of opshelf-props: make-<property> -> run-<property> (sliced) -> post-<property>.

- `MakeProperty`: structure + property params + engine -> task dirs + a context dir
- core's `RunEngineTask` runs each task dir (a sliced fan-out)
- `PostProperty`: context + labelled task outputs -> results (JSON, plot) + structure
- `PropertySteps`: the three as one super-OP; `build_props_workflow` chains a relax and
  any number of properties of the relaxed structure into one Workflow.
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, List

from dflow import Workflow, upload_artifact
from dflow.python import OP, OPIO, Artifact, BigParameter, FatalError, OPIOSign, Parameter

from opshelf.core.config import validate_into
from opshelf.core.dflow_build import Mode
from opshelf.core.engine import EngineSpec, load_engine
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
from opshelf.core.ops import RunEngineTask
from opshelf.props.base import STRUCTURE_FILE, PropertyFailed, read_structure
from opshelf.props.ondisk import make_property, post_property
from opshelf.props.registry import get_property, parse_params
from opshelf.props.relax import RELAXED_FILE

STEP_MAKE = "make"
STEP_RUN = "run"
STEP_POST = "post"


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
            "context": Artifact(Path),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        engine = load_engine(validate_into(EngineSpec, ip["engine"], where="input 'engine'"))
        params = parse_params(ip["property"], where="input 'property'")
        atoms = read_structure(ip["structure"])
        names, paths = make_property(get_property(params.type), params, atoms, engine,
                                     Path("tasks"), Path("context"))
        return OPIO({"task_names": names, "task_paths": paths, "context": Path("context")})


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
        out = Path("results")
        try:
            result = post_property(Path(ip["context"]), [Path(p) for p in ip["labeled_data"]],
                                   out)
        except PropertyFailed as exc:  # recorded task failures: retrying cannot help
            raise FatalError(str(exc)) from exc
        structure = out / RELAXED_FILE
        if not structure.is_file():
            structure = Path("structure") / STRUCTURE_FILE
            structure.parent.mkdir(exist_ok=True)
            shutil.copyfile(Path(ip["context"]) / STRUCTURE_FILE, structure)
        return OPIO({"results": out, "result": result, "structure": structure})


class PropertySteps(FanOutSteps):
    """make -> run (one sliced step per task) -> post, keys `<block_id>--make` etc.

    Inputs: artifact `structure`; parameters `property` (params dict with its type),
    `engine` (EngineSpec dict), `block_id`. Outputs: artifacts `results`, `structure`;
    parameter `result`.
    """

    def __init__(self, name: str, make: StepExecution, run: StepExecution,
                 post: StepExecution, *, mode: Mode = "local",
                 n_tasks_hint: int | None = None) -> None:
        declaration = FanOut(
            block_id="props",
            parameters={"property": REQUIRED, "engine": REQUIRED},
            artifacts=("structure",),
            prep=Stage(STEP_MAKE, MakeProperty, make,
                       parameters={n: from_input(n) for n in ("property", "engine")},
                       artifacts={"structure": from_input("structure")}),
            run=Stage(STEP_RUN, RunEngineTask, run,
                      parameters={"task_name": from_prep("task_names")},
                      artifacts={"task_path": from_prep("task_paths")}),
            fan=Fan(over="task_names", sliced_parameters=("task_name",),
                    sliced_artifacts=("task_path",),
                    output_artifacts=("labeled_data", "raw_output")),
            collect=Stage(STEP_POST, PostProperty, post,
                          artifacts={"context": from_prep("context"),
                                     "labeled_data": from_run("labeled_data")}),
            output_parameters={"result": from_collect("result")},
            output_artifacts={n: from_collect(n) for n in ("results", "structure")},
        )
        super().__init__(name, declaration, mode=mode, n_items=n_tasks_hint)


def block_names(properties: Sequence[Any]) -> list[str]:
    """Step-key prefixes: the property types, numbered when a type repeats."""
    names: list[str] = []
    for params in properties:
        name, count = params.type.replace("_", "-"), 2
        while name in names:
            name = f"{params.type.replace('_', '-')}-{count}"
            count += 1
        names.append(name)
    return names


def count_tasks(params: Any, structure: Path) -> int:
    """How many tasks `params` makes (sizes the fan-out's groups at build time)."""
    return get_property(params.type).count_tasks(read_structure(structure), params)


def build_props_workflow(structure: str | Path, engine: EngineSpec | dict[str, Any],
                         properties: Sequence[Any], *, relax: Any = None,
                         steps: StepsConfig | None = None, mode: Mode = "local",
                         workflow_id: str | None = None, name: str = "props") -> Workflow:
    """A Workflow: relax (when `relax` is given) -> every property of the relaxed structure,
    in parallel. Steps are named `<block>-make`, `<block>-run`, `<block>-post` for
    `steps` overrides, and keyed `<block>--make`, `<block>--run-000003`, `<block>--post`."""
    engine = validate_into(EngineSpec, engine, where="engine") if isinstance(engine, dict) \
        else engine
    steps = steps or StepsConfig()
    structure = Path(structure).resolve()
    read_structure(structure)
    parsed = [parse_params(p, where=f"properties[{i}]") for i, p in enumerate(properties)]
    relax_params = None if relax is None else parse_params(
        {"type": "relax", **relax} if isinstance(relax, dict) else relax, where="relax")
    workflow = Workflow(name=name, id=workflow_id)
    engine_dict = engine.model_dump(mode="json")
    source: Any = upload_artifact(structure)

    def block(block_id: str, params: Any, structure_artifact: Any) -> Any:
        template = PropertySteps(
            f"{block_id}-steps", steps.for_step(f"{block_id}-{STEP_MAKE}"),
            steps.for_step(f"{block_id}-{STEP_RUN}"), steps.for_step(f"{block_id}-{STEP_POST}"),
            mode=mode, n_tasks_hint=count_tasks(params, structure))
        from dflow import Step

        return Step(block_id, template, key=block_id,
                    parameters={"block_id": block_id,
                                "property": params.model_dump(mode="json"),
                                "engine": engine_dict},
                    artifacts={"structure": structure_artifact})

    if relax_params is not None:
        relax_step = block("relax", relax_params, source)
        workflow.add(relax_step)
        source = relax_step.outputs.artifacts["structure"]
    workflow.add([block(block_id, params, source)
                  for block_id, params in zip(block_names(parsed), parsed)])
    return workflow


def step_names(properties: Sequence[Any], relax: bool) -> list[str]:
    """Every step name `steps` overrides may use."""
    parsed = [parse_params(p) for p in properties]
    blocks = (["relax"] if relax else []) + block_names(parsed)
    return [f"{b}-{s}" for b in blocks for s in (STEP_MAKE, STEP_RUN, STEP_POST)]


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
    parsed = [parse_params(p) for p in properties]
    blocks = (["relax"] if relax is not None else []) + block_names(parsed)
    results: dict[str, dict[str, Any]] = {}
    for block_id in blocks:
        outputs = local_step_outputs(workdir / "dflow", workflow, str(StepKey(block_id, STEP_POST)))
        source = outputs.artifact_items("results")[0]
        target = workdir / "results" / block_id
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        results[block_id] = json.loads(next(target.glob("*.json")).read_text())
    return results
