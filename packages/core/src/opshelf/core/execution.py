"""Step execution configuration: where and how each step of a workflow runs.

Every workflow config has a `steps` block:

    steps:
      default: {retries: 1}                 # applies to every step
      run-fp:                               # a step name, checked when the workflow is built
        executor: {kind: dispatcher, machine: {...}, resources: {...}, poll_interval_s: 2}
        group_size: 4

`local` (dflow's debug mode through opshelf's runner) is the default executor. These are
plain models: turning them into dflow objects happens in `opshelf.core.dflow_build`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from opshelf.core.bounds import GpuCount, GroupSizeOrAuto, PoolSizeOrAll, RetryCount, TimeoutS
from opshelf.core.config import StrictModel
from opshelf.core.errors import ConfigError

#: where a workflow runs: "local" (dflow's debug mode on this machine) or "argo" (a manifest
#: for a Kubernetes cluster)
Mode = Literal["local", "argo"]


class LocalExecutor(StrictModel):
    """Run on this machine, in the caller's interpreter and venv (dflow debug mode)."""

    kind: Literal["local"] = Field("local", description="run the step on this machine")


class DispatcherExecutor(StrictModel):
    """Run through dpdispatcher: Slurm, PBS, LSF, Shell, over SSH or locally."""

    kind: Literal["dispatcher"] = Field(
        "dispatcher", description="run the step as a batch job through dpdispatcher")
    machine: dict[str, Any] = Field(
        description="dpdispatcher Machine: batch_type (Slurm, PBS, LSF, Shell, ...), "
        "context_type (LocalContext, SSHContext, ...), local_root, remote_root, remote_profile")
    resources: dict[str, Any] = Field(
        default_factory=dict,
        description="dpdispatcher Resources: number_node, cpu_per_node, gpu_per_node, queue_name, ...")
    poll_interval_s: TimeoutS = Field(2.0, description="how often to poll the scheduler (dpdispatcher's check_interval)")
    retry_count: RetryCount = Field(3, description="dpdispatcher's own resubmissions of a failed job; "
                             "also the retries of a transient scheduler failure (sbatch refused)")
    scheduler_retry_wait_s: TimeoutS = Field(
        10.0, description="wait before retrying a transient scheduler failure")
    python: str | None = Field(None, description="interpreter on the remote side; the local one when unset")


class ArgoExecutor(StrictModel):
    """Run as a pod of an Argo Workflow (dflow's default mode)."""

    kind: Literal["argo"] = Field("argo", description="run the step as a pod of an Argo "
                                  "Workflow (opshelf export-argo)")
    image: str | None = Field(None, description="container image; the step's package image pinned to its version when unset")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Kubernetes imagePullPolicy of the step's container")
    cpu: str | None = Field(None, description="Kubernetes CPU request/limit, e.g. '4'")
    memory: str | None = Field(None, description="Kubernetes memory request/limit, e.g. '8Gi'")
    gpu: GpuCount | None = Field(None, description="nvidia.com/gpu limit")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes nodeSelector labels of the step's pod")


Executor = Annotated[LocalExecutor | DispatcherExecutor | ArgoExecutor, Field(discriminator="kind")]


class StepExecution(StrictModel):
    """How one step runs."""

    executor: Executor = Field(default_factory=LocalExecutor,
                               description="where the step runs: kind local (default), "
                               "dispatcher (Slurm, PBS, ...) or argo")
    retries: RetryCount = Field(0, description="retries of a step that fails with a transient error")
    timeout_s: TimeoutS | None = Field(None, description="wall-time limit of one step (one slice group)")
    group_size: GroupSizeOrAuto = Field(
        "auto", description="slices packed into one step of a fan-out; 'auto' picks by executor "
        "(local: a few groups per CPU; elsewhere: 1)")
    pool_size: PoolSizeOrAll | None = Field(None, description="inside a group, run slices in a process pool of this size (-1: all at once)")
    continue_on_success_ratio: float | None = Field(
        None, gt=0, le=1, description="a fan-out succeeds when at least this fraction of its slices succeed")


class StepExecutionPatch(StrictModel):
    """A per-step override: only the keys given replace the default's."""

    executor: Executor | None = Field(None, description="where the step runs (see "
                                      "StepExecution); unset: the default's")
    retries: RetryCount | None = Field(None, description="retries of a step that fails with a "
                                "transient error; unset: the default's")
    timeout_s: TimeoutS | None = Field(None, description="wall-time limit of one step (one "
                                    "slice group); unset: the default's")
    group_size: GroupSizeOrAuto | None = Field(
        None, description="slices packed into one step of a fan-out (one batch job with a "
        "dispatcher executor); unset: the default's")
    pool_size: PoolSizeOrAll | None = Field(None, description="inside a group, run slices in a process "
                                  "pool of this size; unset: the default's")
    continue_on_success_ratio: float | None = Field(
        None, gt=0, le=1, description="a fan-out succeeds when at least this fraction of its "
        "slices succeed; unset: the default's")


class StepsConfig(StrictModel):
    """`default` plus overrides keyed by step name (flat in the file, see the module doc)."""

    default: StepExecution = Field(default_factory=StepExecution,
                                   description="how every step runs unless overridden")
    overrides: dict[str, StepExecutionPatch] = Field(
        default_factory=dict, description="per step name (written flat in the file: "
        "`steps: {run-fp: {...}}`), only the keys given replace the default's")

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "overrides" not in data:
            data = dict(data)
            default = data.pop("default", {})
            return {"default": default, "overrides": data}
        return data

    def for_step(self, name: str) -> StepExecution:
        patch = self.overrides.get(name)
        if patch is None:
            return self.default
        merged = self.default.model_dump()
        merged.update(patch.model_dump(exclude_unset=True))
        return StepExecution.model_validate(merged)

    def check_names(self, known: Iterable[str], where: str = "steps") -> None:
        """Raise ConfigError for an override naming a step the workflow does not have."""
        known = sorted(set(known))
        bad = [name for name in self.overrides if name not in known]
        if not bad:
            return
        msgs = []
        for name in bad:
            hint = difflib.get_close_matches(name, known, n=1)
            msgs.append(f"{where}: unknown step name {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        msgs.append(f"{where}: the steps of this workflow are: {', '.join(known)}")
        raise ConfigError("\n".join(msgs))

    def uses(self, kind: str) -> bool:
        execs = [self.default.executor] + [p.executor for p in self.overrides.values() if p.executor]
        return any(e.kind == kind for e in execs)
