"""`alloy`: relax every structure with every interaction, then compute every property of
each relaxed structure in parallel, then gather `results.json` and one HTML report.

    for each (structure, interaction), all pairs in parallel, opshelf-props' super-OP
    PropertiesSteps: relax (PropertySteps) -> property blocks in parallel (PropertySteps)

Step keys: `<structure>--<interaction>--<block>--make|run-000003|post`, e.g.
`cu--eam--eos--post`; with an engine that packs tasks (LAMMPS) one step per block,
`cu--eam--eos--compute`. `steps` overrides are keyed by block and phase: `relax-run`,
`elastic-make`, `stacking-fault-post`, ... (the same for every structure and interaction).
A property that fails is recorded in results.json (`failures`) and the others go on.
Each pair's Steps hands out every block's results folder (optional outputs), so an
exported (Argo) run's last step, core's results step, writes the same results/ as
`collect` does locally (`results_inputs`, `write_results`, `write_alloy_results`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opshelf.alloy.config import AlloyConfig, Interaction, StructureSpec
from opshelf.alloy.structures import build_structure, read_structure_file
from opshelf.core.engine import load_engine
from opshelf.core.errors import ConfigError
from opshelf.core.keys import StepKey, block_glob
from opshelf.core.workflow import BuildContext, WorkflowPlugin

if TYPE_CHECKING:
    import argparse

    from ase import Atoms
    from dflow import Workflow

    from opshelf.props.ops import PropertiesSteps, PropertyTemplates


RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
PHASES = ("make", "run", "post")


def pair_key(structure: str, interaction: str) -> str:
    """Key of a (structure, interaction) pair's Steps: ``cu--emt``."""
    return str(StepKey(structure, interaction))


def block_key(structure: str, interaction: str, block: str) -> StepKey:
    """Key of a property block of a pair (``cu--emt--eos``): its steps' block id."""
    return StepKey(pair_key(structure, interaction), block)


def structure_input(structure: str) -> str:
    """Name of a structure among the results step's inputs: ``<structure>--structure``."""
    return str(StepKey(structure, "structure"))


def structure_atoms(spec: StructureSpec, config_dir: Path) -> Atoms:
    if spec.generate is not None:
        return build_structure(spec.generate)
    path = Path(spec.file or "").expanduser()
    return read_structure_file(path if path.is_absolute() else config_dir / path, spec.format)


class AlloyWorkflow(WorkflowPlugin[AlloyConfig]):
    name = "alloy"
    description = ("alloy properties: relax + EOS, elastic, defects, surfaces, stacking "
                   "faults, phonons with several interactions side by side")
    Config = AlloyConfig

    def step_names(self, config: AlloyConfig) -> list[str]:
        blocks = (["relax"] if config.relax is not None else []) + config.block_names()
        return [f"{block}-{phase}" for block in blocks for phase in PHASES]

    # -- checks ----------------------------------------------------------------------------
    def structures(self, config: AlloyConfig, ctx: BuildContext) -> dict[str, Atoms]:
        out = {}
        for spec in config.structures:
            try:
                out[spec.name] = structure_atoms(spec, ctx.config_dir)
            except ConfigError as exc:
                raise type(exc)(f"structure {spec.name!r}: {exc}") from None
        return out

    def check(self, config: AlloyConfig, ctx: BuildContext) -> None:
        """Structures build, every engine finds what it needs for their elements, and every
        property can make its tasks for every structure it is asked for."""
        super().check(config, ctx)
        from opshelf.props import get_property
        from opshelf.props.base import elements_of

        structures = self.structures(config, ctx)
        for interaction in config.interactions:
            engine = load_engine(interaction.engine_spec(ctx.config_dir))
            for name, atoms in structures.items():
                try:
                    engine.check(elements_of(atoms))
                except ConfigError as exc:
                    raise type(exc)(f"interaction {interaction.name!r}, structure {name!r}: "
                                    f"{exc}") from None
        for spec in config.structures:
            for block, params in config.blocks_of(spec):
                try:
                    get_property(params.type).make(structures[spec.name], params)
                except ConfigError as exc:
                    raise ConfigError(f"structure {spec.name!r}, property {block!r}: {exc} "
                                      f"(leave it out with `properties:` on the structure)"
                                      ) from None

    # -- workflow --------------------------------------------------------------------------
    def structure_files(self, config: AlloyConfig, ctx: BuildContext) -> dict[str, Path]:
        """Every structure written to `run_dir/inputs/<name>.extxyz` (what the steps read)."""
        import ase.io

        inputs = ctx.run_dir / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        files = {}
        for name, atoms in self.structures(config, ctx).items():
            files[name] = inputs / f"{name}.extxyz"
            ase.io.write(files[name], atoms, format="extxyz")
        return files

    def build(self, config: AlloyConfig, ctx: BuildContext) -> Workflow:
        from dflow import Step, Workflow, upload_artifact

        files = self.structure_files(config, ctx)
        from opshelf.props.ops import PropertyTemplates

        templates = PropertyTemplates(config.steps, ctx.mode)
        pairs = []
        for spec in config.structures:
            for interaction in config.interactions:
                key = pair_key(spec.name, interaction.name)
                pair = _pair_steps(config, ctx, spec, interaction, files[spec.name], templates)
                pairs.append(Step(key, pair, key=key,
                                  artifacts={"structure": upload_artifact(files[spec.name])}))
        workflow = Workflow(name="alloy", id=ctx.workflow_id)
        workflow.add(pairs)
        return workflow

    # -- results ---------------------------------------------------------------------------
    def block_inputs(self, config: AlloyConfig) -> dict[str, tuple[str, str, str]]:
        """Name in `results_inputs` -> (structure, interaction, block) of every block's
        results folder (``<structure>--<interaction>--<block>``)."""
        out = {}
        for spec in config.structures:
            for interaction in config.interactions:
                blocks = (["relax"] if config.relax is not None else []) + [
                    b for b, _ in config.blocks_of(spec, interaction)]
                for block in blocks:
                    out[str(block_key(spec.name, interaction.name, block))] = (
                        spec.name, interaction.name, block)
        return out

    def results_inputs(self, config: AlloyConfig, workflow: Workflow) -> dict[str, Any]:
        """Every block's results folder (an output artifact of its structure/interaction
        pair's Steps) and every input structure (``<structure>--structure``)."""
        from opshelf.core.dflow_build import find_step

        inputs: dict[str, Any] = {}
        for name, (structure, interaction, block) in self.block_inputs(config).items():
            inputs[name] = find_step(workflow, pair_key(structure, interaction)
                                     ).outputs.artifacts[block]
        for spec in config.structures:
            pair = find_step(workflow, pair_key(spec.name, config.interactions[0].name))
            inputs[structure_input(spec.name)] = pair.inputs.artifacts["structure"].source
        return inputs

    def optional_results_inputs(self, config: AlloyConfig) -> set[str]:
        """A failed property has no results folder; the others are written."""
        return set(self.block_inputs(config))

    def write_results(self, config: AlloyConfig, inputs: dict[str, Path],
                      results_dir: Path) -> list[str]:
        """The results step of an Argo run. Relative potential files in the interactions
        resolve against the step's folder (the pod has not the config's), and a missing
        block's reason is where to look, not its log tail (the logs stay in Argo)."""
        blocks = {where: inputs.get(name) for name, where in self.block_inputs(config).items()}
        structures = {spec.name: inputs[structure_input(spec.name)]
                      for spec in config.structures}
        return write_alloy_results(
            config, Path.cwd(), structures, blocks, results_dir,
            lambda key: (f"no results: step {key} failed or did not run (its log: "
                         f"argo logs WORKFLOW, the nodes named {block_glob(key)})"))

    def collect(self, config: AlloyConfig, ctx: BuildContext, workflow: Workflow) -> list[str]:
        from opshelf.alloy.results import failure_reason
        from opshelf.core.workflows.outputs import local_step_outputs
        from opshelf.props.ops import result_step_key

        workdir = _dflow_workdir(ctx, workflow)
        engines = {i.name: load_engine(i.engine_spec(ctx.config_dir)) for i in config.interactions}
        blocks: dict[tuple[str, str, str], Path | None] = {}
        for structure, interaction, block in self.block_inputs(config).values():
            key = block_key(structure, interaction, block)
            try:
                outputs = local_step_outputs(workdir, workflow, str(
                    result_step_key(str(key), engines[interaction])))
                blocks[(structure, interaction, block)] = outputs.artifact_items("results")[0]
            except (FileNotFoundError, KeyError, IndexError):
                blocks[(structure, interaction, block)] = None
        structures = {spec.name: ctx.run_dir / "inputs" / f"{spec.name}.extxyz"
                      for spec in config.structures}
        return write_alloy_results(
            config, ctx.config_dir, structures, blocks, ctx.run_dir / "results",
            lambda key: failure_reason(workdir / workflow.id, key))

    def report(self, run_dir: Path) -> Path:
        from opshelf.alloy.report import write_report

        results_dir = Path(run_dir) / "results"
        path = results_dir / RESULTS_FILE
        if not path.is_file():
            from opshelf.core.errors import MissingInputError

            raise MissingInputError(f"{path} not found: the run has not finished (opshelf status "
                                    f"{run_dir})")
        return write_report(json.loads(path.read_text()), results_dir, results_dir / REPORT_FILE)

    def compare(self, run_dirs: Sequence[Path]) -> str:
        from opshelf.alloy.report import compare_runs

        return compare_runs({Path(d).name: json.loads((Path(d) / "results" / RESULTS_FILE)
                                                       .read_text()) for d in run_dirs})

    def add_cli_commands(self, commands: argparse._SubParsersAction) -> None:
        from opshelf.alloy.apex import add_import_apex_command

        add_import_apex_command(commands)


def _pair_steps(config: AlloyConfig, ctx: BuildContext, spec: StructureSpec,
                interaction: Interaction, structure_file: Path, templates: PropertyTemplates
                ) -> PropertiesSteps:
    """One structure with one interaction: opshelf-props' `PropertiesSteps` (relax when
    configured -> every property block in parallel; a failed block is recorded and the
    others go on). Outputs: every block's results folder, for the results step of an Argo
    run (optional: a failed block has none)."""
    from opshelf.props.ops import PropertiesSteps
    from opshelf.props.plan import Block

    relax = [Block("relax", config.relax)] if config.relax is not None else []
    blocks = relax + [Block(name, params) for name, params in config.blocks_of(spec, interaction)]
    key = pair_key(spec.name, interaction.name)
    return PropertiesSteps(f"{key}-pair", blocks, interaction.engine_spec(ctx.config_dir),
                           structure_file, templates, key_prefix=key)


def write_alloy_results(config: AlloyConfig, config_dir: Path, structures: dict[str, Path],
                        blocks: dict[tuple[str, str, str], Path | None], results_dir: Path,
                        reason_of: Callable[[str], str]) -> list[str]:
    """`results_dir`: each block's results folder as <structure>/<interaction>/<block>/,
    results.json and the report. `blocks`: (structure, interaction, block) -> its results
    folder, None for a block without one (`reason_of(<block key>)` says why)."""
    from opshelf.alloy.report import answer_line, first_line, write_report
    from opshelf.alloy.results import assemble_results

    results_dir.mkdir(parents=True, exist_ok=True)
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    failures = []
    for (structure, interaction, block), source in blocks.items():
        if source is None:
            failures.append({"structure": structure, "interaction": interaction,
                             "property": block,
                             "reason": reason_of(str(block_key(structure, interaction, block)))})
            continue
        target = results_dir / structure / interaction / block
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        found[(structure, interaction, block)] = json.loads(next(target.glob("*.json")).read_text())
    results = assemble_results(config, config_dir, structures, found, failures)
    (results_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1, sort_keys=True))
    report = write_report(results, results_dir, results_dir / REPORT_FILE)
    lines = [answer_line(results)[0],
             f"results: {results_dir / RESULTS_FILE}", f"report: {report}"]
    for failure in failures:
        lines.append(f"FAILED {failure['structure']} / {failure['interaction']} / "
                     f"{failure['property']}: {first_line(failure['reason'])}")
    return lines


def _dflow_workdir(ctx: BuildContext, workflow: Workflow) -> Path:
    """dflow's debug workdir of the run: run_dir/dflow for opshelf runs."""
    for candidate in (ctx.run_dir / "dflow", ctx.run_dir):
        if (candidate / str(workflow.id)).is_dir():
            return candidate
    raise FileNotFoundError(f"run {workflow.id} not found under {ctx.run_dir}")
