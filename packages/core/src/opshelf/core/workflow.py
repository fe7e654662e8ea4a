"""The workflow plugin contract: what a reference workflow gives the opshelf CLI.

A workflow package registers a `WorkflowPlugin` subclass in the `opshelf.workflows`
entry-point group. The CLI and the local runner only talk to workflows through it.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from opshelf.core.config import StrictModel, load_config
from opshelf.core.errors import UserError
from opshelf.core.execution import Mode, StepsConfig
from opshelf.core.plugins import load_entry_point

if TYPE_CHECKING:  # dflow is imported only when a workflow is built
    import argparse
    from collections.abc import Sequence

    from dflow import Workflow


@dataclass
class BuildContext:
    """What a workflow needs to know when it builds its dflow Workflow."""

    run_dir: Path
    #: directory of the config file: relative paths in the config resolve against it
    config_dir: Path
    #: "local" (dflow debug mode) or "argo" (a manifest for a cluster)
    mode: Mode = "local"
    #: dflow workflow id: deterministic, the run's name
    workflow_id: str = "opshelf"
    extra: dict[str, Any] = field(default_factory=dict)


#: exit status of `opshelf run`/`resume` when every step succeeded but the workflow did not
#: reach its goal (a concurrent-learning loop that stopped at max iterations unconverged)
EXIT_NOT_CONVERGED = 3


@dataclass(frozen=True)
class Outcome:
    """Whether a finished run reached its goal, in one line that says what happened."""

    reached: bool
    summary: str


#: the config model of a workflow plugin
ConfigT = TypeVar("ConfigT", bound=StrictModel)


class WorkflowPlugin(ABC, Generic[ConfigT]):
    """Base class of every reference workflow (and of core's small `label` workflow).

    Subclassed with the workflow's config model, ``class Cl(WorkflowPlugin[ClConfig])``: every
    hook then receives that type (``config: ClConfig``), with no isinstance check."""

    #: entry-point name, e.g. "cl", "alloy", "lameval", "label"
    name: ClassVar[str]
    #: one line for `opshelf list`
    description: ClassVar[str] = ""
    #: the strict, typed config model; must have a `steps: StepsConfig` field
    Config: type[ConfigT]

    def load_config(self, path: str | Path) -> ConfigT:
        return load_config(path, self.Config)

    @abstractmethod
    def step_names(self, config: ConfigT) -> list[str]:
        """Names usable as keys of the config's `steps` block."""

    def check(self, config: ConfigT, ctx: BuildContext) -> None:
        """Validate everything that can be validated before any work starts (files,
        executables, engine settings). Raise UserError subclasses. The default checks the
        step names of the `steps` block."""
        steps: StepsConfig = config.steps  # type: ignore[attr-defined]
        steps.check_names(self.step_names(config))

    @abstractmethod
    def build(self, config: ConfigT, ctx: BuildContext) -> Workflow:
        """The dflow Workflow for this config (not submitted)."""

    def collect(self, config: ConfigT, ctx: BuildContext, workflow: Workflow) -> list[str]:
        """After a successful run: gather results into `ctx.run_dir / 'results'`.
        Returns lines for the final summary (what was made and where). The default runs
        `write_results` on the local copies of the artifacts named by `results_inputs` (what
        the results step does in an Argo run), so both modes write the same results; nothing
        when the workflow names none."""
        inputs = self.results_inputs(config, workflow)
        if not inputs:
            return []
        local = {name: step_output_artifacts(ctx, workflow, artifact.step.key)[artifact.name]
                 for name, artifact in inputs.items()}
        return self.write_results(config, local, ctx.run_dir / "results")

    def results_inputs(self, config: ConfigT, workflow: Workflow) -> dict[str, Any]:
        """Where an exported (Argo) run gets its results: output artifacts of steps of
        `workflow` (dflow ``step.outputs.artifacts[...]``) by the names `write_results`
        reads. `opshelf export-argo` then ends the workflow with a `results` step (core's
        WriteResults OP, in this workflow's image) that calls `write_results` on them.
        Empty (the default): no results step; the run's outputs stay in the artifact store."""
        return {}

    def optional_results_inputs(self, config: ConfigT) -> set[str]:
        """Names in `results_inputs` whose artifact may be missing when the run ends (a step
        that failed under ``continue_on_failed``): the results step runs without them and
        `write_results` gets only the others. Any other missing artifact fails the step.
        Default: none."""
        return set()

    def write_results(self, config: ConfigT, inputs: dict[str, Path],
                      results_dir: Path) -> list[str]:
        """Write the results into `results_dir` from `inputs` (local paths of the artifacts
        named by `results_inputs`; a list of paths for an artifact that holds several);
        return summary lines. Runs inside the results step of an Argo run; `collect`
        usually calls it too, so both modes write the same results."""
        raise NotImplementedError(f"workflow {self.name!r} names results_inputs but does "
                                  "not implement write_results")

    def outcome(self, config: ConfigT, ctx: BuildContext) -> Outcome | None:
        """After a run whose steps all succeeded: whether it reached its scientific goal
        (concurrent learning: every stage converged). None (the default): the workflow has
        no such goal beyond its steps succeeding. A goal not reached ends the run with
        status 'unconverged' and exit status EXIT_NOT_CONVERGED; its summary is the
        run's last line."""
        return None

    def status_table(self, run_dir: Path) -> str | None:
        """An optional workflow-specific status table (e.g. per iteration). `opshelf status`
        calls it only for a workflow given as `module:Class`; an installed workflow
        registers a function of the run dir in the `opshelf.status` entry-point group
        instead (in a module without dflow or science imports: status answers at once)."""
        return None

    def report(self, run_dir: Path) -> Path:
        """Write a self-contained HTML report; return its path."""
        from opshelf.core.errors import UserError

        raise UserError(f"workflow {self.name!r} has no report")

    def compare(self, run_dirs: Sequence[Path]) -> str:
        """HTML that compares the answers of several finished runs of this workflow (a
        table, a plot), shown above their reports side by side by `opshelf report RUN1
        RUN2 ...`. Default: nothing (the reports alone)."""
        return ""

    def add_cli_commands(self, commands: argparse._SubParsersAction) -> None:
        """Commands of this workflow, run as `opshelf <workflow> <command> ...` (importers
        of other tools' inputs, ...): add a parser per command to `commands`, each with
        `set_defaults(func=callable(args) -> exit code)`. Default: none."""
        return None


def step_output_artifacts(ctx: BuildContext, workflow: Workflow, key: str) -> dict[str, Path]:
    """Local paths of the output artifacts of the step with `key` in a local-mode run."""
    from opshelf.core.step_outputs import local_step_outputs

    # The dflow workdir is the run dir or one folder below it (opshelf runs: run_dir/dflow).
    found = [*ctx.run_dir.glob(f"{workflow.id}/{key}"), *ctx.run_dir.glob(f"*/{workflow.id}/{key}")]
    if not found:
        raise FileNotFoundError(f"step {key!r} of run {workflow.id} not found under {ctx.run_dir}")
    outputs = local_step_outputs(found[0].parent.parent, workflow, key)
    return {name: outputs.artifact_items(name)[0] for name in outputs.artifacts}


def resolve_workflow(ref: str) -> WorkflowPlugin:
    """A workflow plugin by entry-point name (`label`) or import path (`pkg.mod:Class`)."""
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        if not all(part.isidentifier() for part in [*module_name.split("."), attr]):
            raise UserError(f"workflow {ref!r}: not an installed workflow name (see `opshelf "
                            "list`) nor an import path module.name:Class")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UserError(f"cannot import workflow {ref!r}: {exc}") from None
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise UserError(f"cannot import workflow {ref!r}: module {module_name!r} has no "
                            f"attribute {attr!r}") from None
    else:
        obj = load_entry_point("opshelf.workflows", ref, what="workflow")
    if isinstance(obj, type) and issubclass(obj, WorkflowPlugin):
        return obj()
    if isinstance(obj, WorkflowPlugin):
        return obj
    raise UserError(f"workflow {ref!r} is not a WorkflowPlugin (got {obj!r})")
