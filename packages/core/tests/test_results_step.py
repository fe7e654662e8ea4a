"""The results step an exported (Argo) workflow ends with: core's WriteResults OP runs the
workflow's own `write_results` on the artifacts of its finished steps. Run here in local
mode (same OP, same artifacts), it must write what `opshelf run` writes through `collect`."""

from __future__ import annotations

import json
from pathlib import Path

import dpdata
import pytest

from opshelf.core.local.runner import resolve_workflow
from opshelf.core.workflow import BuildContext


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
    assert sorted(p.name for p in collected.iterdir()) == sorted(p.name for p in results.iterdir())


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
