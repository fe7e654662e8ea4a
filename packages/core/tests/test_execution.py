"""StepsConfig: the `steps` block of every workflow config."""

from __future__ import annotations

import pytest

from opshelf.core.config import validate_into
from opshelf.core.errors import ConfigError
from opshelf.core.execution import DispatcherExecutor, LocalExecutor, StepsConfig


def test_flat_form_and_for_step_merge() -> None:
    steps = validate_into(StepsConfig, {
        "default": {"retries": 2, "timeout_s": 60},
        "run-task": {"group_size": 4, "executor": {"kind": "dispatcher",
                                                   "machine": {"batch_type": "Shell"}}},
    })
    assert set(steps.overrides) == {"run-task"}
    run = steps.for_step("run-task")
    assert run.group_size == 4
    assert isinstance(run.executor, DispatcherExecutor)
    assert run.retries == 2 and run.timeout_s == 60  # kept from default
    other = steps.for_step("collect")
    assert other.group_size == "auto" and isinstance(other.executor, LocalExecutor)
    assert steps.uses("dispatcher") and not steps.uses("argo")


def test_an_override_keeps_explicit_values_only() -> None:
    steps = validate_into(StepsConfig, {"default": {"retries": 3}, "prep": {"timeout_s": 5}})
    assert steps.for_step("prep").retries == 3


def test_empty_steps_block() -> None:
    steps = validate_into(StepsConfig, {})
    assert steps.for_step("anything").retries == 0


def test_check_names_suggests() -> None:
    steps = validate_into(StepsConfig, {"run-tsk": {"retries": 1}})
    with pytest.raises(ConfigError) as info:
        steps.check_names(["prep-tasks", "run-task", "collect-labels"])
    message = str(info.value)
    assert "unknown step name 'run-tsk'; did you mean 'run-task'?" in message
    assert "the steps of this workflow are: collect-labels, prep-tasks, run-task" in message
    validate_into(StepsConfig, {"run-task": {}}).check_names(["run-task"])


def test_bad_values_name_the_key() -> None:
    # one error naming both accepted forms (not one per branch of int | 'auto')
    with pytest.raises(ConfigError, match=r"config: invalid configuration: default\.group_size: "
                       r"outside the accepted values: 'auto' or \[1, 1e\+06\] slices \(got 0\)$"):
        validate_into(StepsConfig, {"default": {"group_size": 0}})
    with pytest.raises(ConfigError, match=r"unknown key 'retry' in overrides.run-task; did you mean 'retries'\?"):
        validate_into(StepsConfig, {"run-task": {"retry": 1}})
    with pytest.raises(ConfigError, match=r"executor"):
        validate_into(StepsConfig, {"default": {"executor": {"kind": "slurm"}}})
