"""The results step an exported (Argo) workflow ends with: core's WriteResults OP runs the
workflow's own `write_results` on the artifacts of its finished steps. Run here in local
mode (same OP, same artifacts), it must write what `opshelf run` writes through `collect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dpdata
import pytest
from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter

from opshelf.core.config import StrictModel
from opshelf.core.local.runner import resolve_workflow
from opshelf.core.workflow import BuildContext, WorkflowPlugin

if TYPE_CHECKING:
    from dflow import Workflow


def write_label_config(path: Path) -> Path:
    path.write_text("generate: {element: Cu, n_frames: 2, supercell: [1, 1, 1], "
                    "rattle_A: 0.05, seed: 7}\n"
                    "engine: {name: ase, settings: {calculator: emt}}\n")
    return path


def test_label_results_step_for_export_writes_the_results_of_collect(tmp_path: Path) -> None:
    from opshelf.core.dflow_build import RESULTS_STEP, results_step
    from opshelf.core.local import run_locally, use_local_mode
    from opshelf.core.workflows.outputs import local_step_outputs

    plugin = resolve_workflow("label")
    config = plugin.load_config(write_label_config(tmp_path / "config.yaml"))
    workdir = tmp_path / "wf"
    ctx = BuildContext(run_dir=workdir, config_dir=tmp_path, mode="local",
                       workflow_id="label-results")
    use_local_mode(workdir)
    workflow = plugin.build(config, ctx)
    step = results_step(plugin, "label", config, workflow, mode="local")
    assert step is not None and step.key == RESULTS_STEP
    workflow.add(step)
    assert run_locally(workflow, workdir) == "Succeeded"

    out = local_step_outputs(workdir, workflow, RESULTS_STEP)
    (results,) = out.artifact_items("results")
    summary = json.loads((results / "summary.json").read_text())
    assert (summary["n_tasks"], summary["n_succeeded"], summary["n_failed"]) == (2, 2, 0)
    assert (results / "failures.json").is_file() and (results / "labels.png").stat().st_size > 0
    system = dpdata.MultiSystems.from_file(str(results / "data"), fmt="deepmd/npy")
    assert system.get_nframes() == 2

    # collect (the driver's way, local mode) writes the same files from the same artifacts
    lines = plugin.collect(config, ctx, workflow)
    assert any("labelled 2 of 2 tasks" in line for line in lines)
    collected = workdir / "results"
    assert json.loads((collected / "summary.json").read_text()) == summary
    # + summary.txt: the summary lines, which a local run's driver writes after collect
    assert sorted(p.name for p in [*collected.iterdir(), collected / "summary.txt"]) == \
        sorted(p.name for p in results.iterdir())
    assert (results / "summary.txt").read_text().splitlines() == \
        [line.replace(str(collected), "results") for line in lines]


def test_a_workflow_without_results_inputs_gets_no_results_step() -> None:
    from opshelf.core.dflow_build import results_step
    from opshelf.core.workflow import WorkflowPlugin

    class NoResults(WorkflowPlugin):
        name = "no-results"
        Config = None  # type: ignore[assignment]

        def step_names(self, config):
            return []

        def build(self, config, ctx):
            raise AssertionError("not built here")

    assert results_step(NoResults(), "no-results", None, None) is None  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="write_results"):
        NoResults().write_results(None, {}, Path("."))  # type: ignore[arg-type]


# -- any number of inputs; optional ones from a failed step (continue_on_failed) ---------------
class WriteText(OP):
    """Writes `text` to a file; fails (FatalError) when `fail`."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({"text": str, "fail": Parameter(bool, default=False)})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"file": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        if ip["fail"]:
            raise FatalError("deliberate failure")
        path = Path("text.txt")
        path.write_text(ip["text"])
        return OPIO({"file": path})


class ManyConfig(StrictModel):
    n: int


N_TEXTS = 10  # more than the 8 fixed input slots the results step used to have


class ManyResults(WorkflowPlugin):
    """`N_TEXTS` steps write a text each; `wrapped` (a Steps) hands out the file of a
    step that fails, as an optional output artifact."""

    name = "many-results"
    Config = ManyConfig

    def step_names(self, config: StrictModel) -> list[str]:
        return []

    def build(self, config: StrictModel, ctx: BuildContext) -> Workflow:
        from dflow import OutputArtifact, Outputs, Steps, Workflow

        from opshelf.core.dflow_build import make_step
        from opshelf.core.execution import StepExecution

        workflow = Workflow(name="many", id=ctx.workflow_id)
        workflow.add([make_step(f"text-{i}", WriteText, StepExecution(), key=f"text-{i}",
                                parameters={"text": f"text {i}"}) for i in range(N_TEXTS)])
        wrapped = Steps("wrapped", outputs=Outputs(artifacts={"file": OutputArtifact(
            optional=True)}))
        failing = make_step("failing", WriteText, StepExecution(), key="failing",
                            parameters={"text": "never", "fail": True})
        failing.continue_on_failed = True
        wrapped.add(failing)
        wrapped.outputs.artifacts["file"]._from = failing.outputs.artifacts["file"]
        from dflow import Step

        workflow.add(Step("wrapped", wrapped, key="wrapped"))
        return workflow

    def results_inputs(self, config: StrictModel, workflow: Workflow) -> dict[str, Any]:
        from opshelf.core.dflow_build import find_step

        inputs = {f"text-{i}": find_step(workflow, f"text-{i}").outputs.artifacts["file"]
                  for i in range(N_TEXTS)}
        inputs["wrapped"] = find_step(workflow, "wrapped").outputs.artifacts["file"]
        return inputs

    def optional_results_inputs(self, config: StrictModel) -> set[str]:
        return {"wrapped"}

    def write_results(self, config: StrictModel, inputs: dict[str, Path],
                      results_dir: Path) -> list[str]:
        texts = {name: Path(path).read_text() for name, path in inputs.items()}
        (results_dir / "texts.json").write_text(json.dumps(texts))
        return [f"{len(texts)} texts"]


def test_results_step_takes_any_number_of_inputs_and_skips_a_missing_optional_one(
        tmp_path: Path) -> None:
    """Eleven named inputs through one dict-of-artifacts input; the optional one comes from
    a Steps whose step failed (continue_on_failed): debug mode, like Argo, leaves it out
    (opshelf's patch of dflow's exec_steps) and write_results gets the ten others."""
    from opshelf.core.dflow_build import RESULTS_STEP, results_step
    from opshelf.core.local import run_locally, use_local_mode
    from opshelf.core.workflows.outputs import local_step_outputs

    plugin = ManyResults()
    config = ManyConfig(n=N_TEXTS)
    workdir = tmp_path / "wf"
    ctx = BuildContext(run_dir=workdir, config_dir=tmp_path, workflow_id="many")
    use_local_mode(workdir)
    workflow = plugin.build(config, ctx)
    step = results_step(plugin, f"{__name__}:ManyResults", config, workflow, mode="local")
    assert step is not None
    workflow.add(step)
    assert run_locally(workflow, workdir) == "Succeeded"
    (results,) = local_step_outputs(workdir, workflow, RESULTS_STEP).artifact_items("results")
    assert json.loads((results / "texts.json").read_text()) == {
        f"text-{i}": f"text {i}" for i in range(N_TEXTS)}
    assert (results / "summary.txt").read_text() == f"{N_TEXTS} texts\n"


def test_a_missing_required_input_fails_the_results_step_naming_it() -> None:
    from opshelf.core.ops.results import WriteResults

    op = WriteResults()
    with pytest.raises(FatalError, match=r"no artifact for \['summary'\]"):
        op.execute(OPIO({"workflow": "label", "config": {
            "generate": {"element": "Cu", "n_frames": 1},
            "engine": {"name": "ase", "settings": {"calculator": "emt"}}},
            "names": ["summary"], "optional": [],
            "inputs": {"summary": Path("/nonexistent/summary.json")}}))
