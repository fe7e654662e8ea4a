"""opshelf.core.dflow_build: StepExecution -> dflow objects, and a real dispatcher step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from dflow import Workflow, argo_range
from test_local_exec import Inc, Square, output

from opshelf.core.dflow_build import (
    PolledDispatcherExecutor,
    make_step,
    python_op_template,
    resolve_group_size,
)
from opshelf.core.errors import ConfigError
from opshelf.core.execution import StepExecution
from opshelf.core.local import run_locally, step_phases


@pytest.mark.parametrize(
    ("execution", "n_items", "mode", "expected"),
    [
        ({}, 1000, "local", 167),  # ceil(1000 / (3 groups x 2 CPUs))
        ({}, 6, "local", 1),  # at most 3 x 2 items: one per step
        ({}, 7, "local", 2),
        ({}, None, "local", 1),  # unknown count
        ({}, 1000, "argo", 1),  # pods are spread by the scheduler
        ({"executor": {"kind": "dispatcher", "machine": {}}}, 1000, "local", 1),
        ({"group_size": 25}, 1000, "local", 25),
        ({"group_size": 25}, None, "argo", 25),
    ],
)
def test_resolve_group_size(execution: dict, n_items: int | None, mode: str,
                            expected: int) -> None:
    got = resolve_group_size(StepExecution.model_validate(execution), n_items, mode, cpus=2)
    assert got == expected


def test_make_step_maps_execution_fields() -> None:
    execution = StepExecution(retries=2, timeout_s=30, continue_on_success_ratio=0.9,
                              group_size=10)
    step = make_step("sq", Square, execution, parameters={"x": list(range(40))},
                     slices={"input_parameter": ["x"], "output_parameter": ["y"]},
                     with_param=argo_range(40), key="sq-{{item}}")
    assert step.template.retry_on_transient_error == 2
    assert step.template.timeout == "30s"
    assert step.continue_on_success_ratio == 0.9
    assert step.template.slices.group_size == 10
    assert step.template.slices.pool_size == 1  # execute() per slice inside a group
    assert step.executor is None  # local


def test_group_size_from_literal_with_param() -> None:
    step = make_step("sq", Square, StepExecution(), parameters={"x": list(range(100))},
                     slices={"input_parameter": ["x"], "output_parameter": ["y"]},
                     with_param=list(range(100)))
    assert step.template.slices.group_size == resolve_group_size(StepExecution(), 100, "local")


def test_unknown_slices_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="input_parameters"):
        python_op_template(Square, StepExecution(), slices={"input_parameters": ["x"]})


def test_argo_mode_sets_image_and_resources() -> None:
    execution = StepExecution.model_validate(
        {"executor": {"kind": "argo", "cpu": "4", "memory": "8Gi", "gpu": 1,
                      "node_selector": {"pool": "gpu"}}})
    template = python_op_template(Inc, execution, mode="argo", image="opshelf-core:0.1.0")
    assert template.image == "opshelf-core:0.1.0"
    assert template.requests == {"cpu": "4", "memory": "8Gi"}
    assert template.limits == {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert template.node_selector == {"pool": "gpu"}


def test_argo_mode_without_image_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'inc'.*image"):
        make_step("inc", Inc, StepExecution(), mode="argo")


def test_argo_executor_in_local_mode_is_a_config_error() -> None:
    execution = StepExecution.model_validate({"executor": {"kind": "argo"}})
    with pytest.raises(ConfigError, match="'inc'.*local mode"):
        make_step("inc", Inc, execution, parameters={"x": 1})


def test_dispatcher_step_polls_at_the_configured_interval(tmp_path: Path) -> None:
    """A real dpdispatcher job (Shell batch, LocalContext). dflow alone polls every 30 s
    (FIELD-NOTES: a 2 s job took 31 s); with poll_interval_s=0.5 the end of the job is seen
    within a poll or two.

    Timed from the job's own end (its output file's mtime) to dpdispatcher noticing it (its
    log's 'finished' line), not over the whole workflow: under load, starting dflow and the
    job's Python takes most of the time and says nothing about polling. Measured here (load
    ~0.2): 1.2 s; with poll_interval_s=30 the same test measured 28.6 s and failed. (With
    30 s polling the latency is 30 s minus the job's run time from submission: the 10 s bound
    fails unless the job itself took over 20 s.)"""
    execution = StepExecution.model_validate({"executor": {
        "kind": "dispatcher", "poll_interval_s": 0.5,
        "machine": {"batch_type": "Shell", "context_type": "LocalContext",
                    "remote_root": str(tmp_path / "remote")},
        "retry_count": 0,
        # the job is a plain interpreter: it must be told where this test's OPs live
        "resources": {"group_size": 1, "envs": {"PYTHONPATH": str(Path(__file__).parent)}}}})
    step = make_step("inc", Inc, execution, parameters={"x": 41}, key="inc")
    assert isinstance(step.executor, PolledDispatcherExecutor)
    rendered = step.executor.render(step.template)
    assert "check_interval=0.5, " in rendered.script
    assert sys.executable in rendered.script  # the job runs this interpreter

    wf = Workflow("dispatch")
    wf.add(step)
    phase = run_locally(wf, tmp_path / "runs")
    assert phase == "Succeeded", step_phases(tmp_path / "runs", "dispatch")
    assert output(tmp_path / "runs", "dispatch", "inc", "y") == 42
    workdir = tmp_path / "runs" / "dispatch" / "inc" / "workdir"
    job_done = (workdir / "tmp" / "outputs" / "parameters" / "y").stat().st_mtime
    seen = _dispatcher_log_time(workdir / "dpdispatcher.log", " finished")
    assert -1 < seen - job_done < 10, (  # -1: the log's clock is read in milliseconds
        f"dpdispatcher saw the job's end {seen - job_done:.1f} s after it (polling every "
        "0.5 s: expected under 10 s)")


def _dispatcher_log_time(log: Path, marker: str) -> float:
    """The time (epoch seconds) of the first line of dpdispatcher's log holding `marker`."""
    import datetime as dt

    for line in log.read_text(encoding="utf-8").splitlines():
        if marker in line:
            stamp = line.split(" - ", 1)[0]
            return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise AssertionError(f"no line with {marker!r} in {log}")
