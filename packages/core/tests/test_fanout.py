"""The fan-out builder: the steps, keys, slices and outputs a declaration gives."""

from __future__ import annotations

import pytest

from opshelf.core.execution import StepExecution
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
from opshelf.core.ops import CollectLabels, PrepEngineTasks, RunEngineTask


def labelling(run: StepExecution, collect_from: str = "labeled_data") -> FanOut:
    return FanOut(
        block_id="label", parameters={"engine": REQUIRED, "task": {}, "fmt": "auto"},
        artifacts=("frames",), optional_artifacts=("extra",),
        prep=Stage("prep", PrepEngineTasks, StepExecution(),
                   parameters={n: from_input(n) for n in ("engine", "task", "fmt")},
                   artifacts={"frames": from_input("frames")}),
        run=Stage("run", RunEngineTask, run, parameters={"task_name": from_prep("task_names")},
                  artifacts={"task_path": from_prep("task_paths")}),
        fan=Fan(over="task_names", sliced_parameters=("task_name",),
                sliced_artifacts=("task_path",), output_artifacts=("labeled_data",)),
        collect=Stage("collect", CollectLabels, StepExecution(),
                      parameters={"type_map": from_prep("type_map")},
                      artifacts={"labeled_data": from_run(collect_from)}),
        output_parameters={"n_frames": from_collect("n_frames")},
        output_artifacts={"data": from_collect("data")})


def test_steps_keys_and_slices() -> None:
    steps = FanOutSteps("label-steps", labelling(StepExecution(group_size=2)), n_items=10,
                        key_suffix="-test")
    prep, run, collect = (steps.steps_by_stage[s] for s in ("prep", "run", "collect"))
    block = "{{inputs.parameters.block_id}}"
    assert [prep.key, run.key, collect.key] == [
        f"{block}--prep-test", f"{block}--run-test-{{{{item}}}}", f"{block}--collect-test"]
    assert steps.inputs.parameters["block_id"].value == "label"
    assert steps.inputs.parameters["task"].value == {}
    assert steps.inputs.artifacts["extra"].optional
    slices = run.template.slices
    assert slices.input_parameter == ["task_name"] and slices.output_artifact == ["labeled_data"]
    assert slices.group_size == 2
    assert steps.outputs.artifacts["data"]._from is not None


def test_a_reference_to_a_later_step_is_refused() -> None:
    declaration = labelling(StepExecution())
    bad = FanOut(**{**declaration.__dict__,
                    "prep": Stage("prep", PrepEngineTasks, StepExecution(),
                                  artifacts={"frames": from_run("labeled_data")})})
    with pytest.raises(ValueError, match="later step"):
        FanOutSteps("bad", bad)
