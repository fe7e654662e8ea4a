"""Turn opshelf's step execution config into dflow objects. Build time only.

Imported when a workflow is built (it imports dflow), never inside a step. The one
rule-bearing function is ``resolve_group_size``; everything else maps fields:

    StepExecution              dflow
    retries                -> PythonOPTemplate(retry_on_transient_error=)
    timeout_s              -> PythonOPTemplate(timeout=)
    group_size, pool_size  -> Slices(group_size=, pool_size=)
    continue_on_success_ratio -> Step(continue_on_success_ratio=)
    executor: dispatcher   -> DispatcherExecutor (+ dpdispatcher's check_interval)
    executor: argo         -> image, pull policy, requests/limits, node selector

In local mode opshelf's patches (``opshelf.core.local.patches``) make dflow's debug mode
honour ``retries`` and ``timeout_s``, which stock debug mode ignores.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import TYPE_CHECKING, Any

from dflow import Step
from dflow.plugins.dispatcher import DispatcherExecutor as _DflowDispatcherExecutor
from dflow.python import OP, PythonOPTemplate, Slices

from opshelf.core.errors import ConfigError
from opshelf.core.execution import ArgoExecutor, DispatcherExecutor, Mode, StepExecution
from opshelf.core.images import image_for
from opshelf.core.keys import StepKey
from opshelf.core.secrets import RESOLVE_MACHINE_SOURCE

if TYPE_CHECKING:
    from dflow import Workflow

    from opshelf.core.config import StrictModel
    from opshelf.core.workflow import WorkflowPlugin

#: group_size="auto" in local mode aims at this many groups per CPU: enough groups that
#: a slow one does not leave the other CPUs idle at the end, few enough that the
#: per-step cost (a process, its directories and files) is paid rarely.
AUTO_GROUPS_PER_CPU = 3
_SLICES_KEYS = frozenset({
    "slices", "input_parameter", "input_artifact", "output_parameter", "output_artifact",
    "sub_path", "group_size", "shuffle", "random_seed", "pool_size", "pool_timeout",
    "register_first_only", "create_dir", "raise_for_group",
})


#: Messages of a scheduler that is briefly unreachable or busy (Slurm, PBS, LSF, SSH): the
#: submission is tried again after ``scheduler_retry_wait_s`` instead of failing the step.
TRANSIENT_SCHEDULER_ERRORS = (
    "Unable to contact slurm controller",
    "Socket timed out on send/recv operation",
    "Slurm temporarily unable to accept job",
    "Resource temporarily unavailable",
    "Connection refused",
    "Connection reset by peer",
    "cannot connect to server",  # PBS qsub/qstat
    "LSF is processing your request",
    "Batch system not responding",  # LSF
)

# Python source put into the dispatcher step's script (it runs wherever dflow runs that
# script: this machine in local mode, a pod in Argo mode), so it needs only dpdispatcher.
_RUN_SUBMISSION_SOURCE = r'''
def _opshelf_run_submission(submission, *, clean, check_interval, retry_wait, retries,
                            transient):
    """opshelf: poll every `check_interval` s; retry transient scheduler failures; on a
    failure, report the scheduler's own output (job state, scheduler log, task stderr)."""
    import shlex, sys, time
    import dpdispatcher.utils.utils as dpd_utils

    class _CappedTime:  # dpdispatcher's own retry of sbatch/squeue sleeps 60 s
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            if seconds > retry_wait:
                print(f"opshelf: retrying after {retry_wait} s, not {seconds} s",
                      file=sys.stderr, flush=True)
            time.sleep(min(seconds, retry_wait))

    dpd_utils.time = _CappedTime()

    def cancel_jobs(signum, _frame):
        """SIGTERM/SIGINT (`opshelf stop`, Ctrl-C, a pod's end): the scheduler's jobs of
        this submission are cancelled (Slurm scancel, PBS qdel, LSF bkill, Shell kill)
        before the step ends; dpdispatcher resubmits them when the run is resumed."""
        import signal
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # one cancellation, however many signals
        name = signal.Signals(signum).name
        for job in submission.belonging_jobs:
            if not job.job_id or job.job_state in (JobStatus.finished, JobStatus.failed):
                continue
            try:
                submission.machine.kill(job)
                print(f"opshelf: {name}: cancelled job {job.job_id} ({job.job_hash})",
                      file=sys.stderr, flush=True)
            except Exception as exc:
                print(f"opshelf: {name}: could not cancel job {job.job_id} "
                      f"({job.job_hash}): {type(exc).__name__}: {exc}", file=sys.stderr,
                      flush=True)
        raise SystemExit(128 + signum)

    import signal
    from dpdispatcher.utils.job_status import JobStatus
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, cancel_jobs)

    def scheduler_report():
        lines = []
        try:
            machine = submission.machine
            context = machine.context
            batch = type(machine).__name__
            lines.append(f"scheduler report ({batch}, {context.remote_root}):")
            for job in submission.belonging_jobs:
                lines.append(f"  job {job.job_hash}: scheduler id {job.job_id or '-'}, "
                             f"state {job.job_state!r}, failures {job.fail_count}")
                if batch.startswith("Slurm") and job.job_id:
                    _, _, out, err = context.block_call(
                        "scontrol show job -o " + shlex.quote(str(job.job_id)))
                    lines.append("    " + (out.read().decode(errors="replace").strip()
                                           or err.read().decode(errors="replace").strip()))
            _, _, out, _ = context.block_call(
                "for f in slurm-*.out *.o[0-9]* *.e[0-9]* *_last_err_file */log log; do "
                "[ -f \"$f\" ] && { echo \"--- $f (last 30 lines)\"; tail -n 30 \"$f\"; }; "
                "done; true")
            lines.append(out.read().decode(errors="replace").rstrip())
        except Exception as exc:  # the report must never hide the failure itself
            lines.append(f"(no scheduler report: {type(exc).__name__}: {exc})")
        return "\n".join(lines)

    attempt = 0
    while True:
        try:
            return submission.run_submission(clean=clean, check_interval=check_interval)
        except Exception as exc:
            text, cause = f"{type(exc).__name__}: {exc}", exc.__cause__ or exc.__context__
            while cause is not None:  # dpdispatcher's "Failed to run do_submit" hides why
                text += f"\n  caused by {type(cause).__name__}: {cause}"
                cause = cause.__cause__ or cause.__context__
            # a job's own stderr (quoted after this marker) is no scheduler message
            ours = text.split("Possible remote error message")[0]
            is_transient = any(marker in ours for marker in transient)
            if attempt < retries and is_transient:
                attempt += 1
                print(f"opshelf: transient scheduler failure (attempt {attempt} of "
                      f"{retries}), retrying in {retry_wait} s: {text}",
                      file=sys.stderr, flush=True)
                time.sleep(retry_wait)
                continue
            if is_transient:
                text = (f"the scheduler still failed after {retries} retries of a transient "
                        f"failure, {retry_wait} s apart (retry_count, scheduler_retry_wait_s): "
                        + text)
            report = scheduler_report()
            print(f"opshelf: dispatcher job failed: {text}\n{report}", file=sys.stderr,
                  flush=True)
            raise RuntimeError(f"dispatcher job failed: {text}\n{report}") from exc


'''


class PolledDispatcherExecutor(_DflowDispatcherExecutor):
    """dflow's DispatcherExecutor, made dependable for real schedulers.

    dflow's generated script calls ``submission.run_submission(clean=...)`` and so gets
    dpdispatcher's default of 30 s between polls: a 2 s job took 31 s (FIELD-NOTES). Here
    the call is replaced by one that

    - polls every ``check_interval_s`` (dpdispatcher's ``check_interval``);
    - retries a transient scheduler failure (``TRANSIENT_SCHEDULER_ERRORS``: sbatch or
      squeue refused while the controller is down or busy) up to ``transient_retries``
      times, ``scheduler_retry_wait_s`` apart (dpdispatcher's own retry of those waits
      60 s; it is capped to the same wait). The submission is persisted by dpdispatcher,
      so a retry resumes it: finished tasks are not run again;
    - on a failure, writes the scheduler's view into the step log and the error: job
      ids and states (``scontrol show job`` for Slurm), the scheduler output file and
      the task's stderr.

    A job the scheduler ends (``scancel``, node failure) is resubmitted by dpdispatcher
    up to the machine's ``retry_count`` times. The step itself stopped (SIGTERM or SIGINT:
    ``opshelf stop``, Ctrl-C, the end of an Argo pod) cancels its submission's unfinished
    jobs through dpdispatcher's ``Machine.kill`` first: a stopped run leaves no job queued
    or running on the cluster.
    """

    def __init__(self, *args: Any, check_interval_s: float = 2.0,
                 scheduler_retry_wait_s: float = 10.0, transient_retries: int = 3,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_interval_s = check_interval_s
        self.scheduler_retry_wait_s = scheduler_retry_wait_s
        self.transient_retries = transient_retries

    def render(self, template: Any) -> Any:
        rendered = super().render(template)
        script = getattr(rendered, "script", None)
        if rendered is template or not isinstance(script, str):
            return rendered
        call = f"\nsubmission.run_submission(clean={self.clean!r})\n"
        if script.count(call) != 1:
            raise RuntimeError("dflow's dispatcher script no longer calls "
                               "submission.run_submission(clean=...) once at top level: "
                               "update PolledDispatcherExecutor")
        ours = (f"\n_opshelf_run_submission(submission, clean={self.clean!r}, "
                f"check_interval={self.check_interval_s!r}, "
                f"retry_wait={self.scheduler_retry_wait_s!r}, "
                f"retries={self.transient_retries!r}, "
                f"transient={TRANSIENT_SCHEDULER_ERRORS!r})\n")
        head, tail = script.split(call)
        script = head + "\n" + _RUN_SUBMISSION_SOURCE + ours + tail
        # remote_profile's {env: NAME} references are read in the step's memory only
        load = "\nmachine = Machine.load_from_dict(json.loads("
        if script.count(load) != 1:
            raise RuntimeError("dflow's dispatcher script no longer builds its Machine with "
                               "Machine.load_from_dict(json.loads(...)): update "
                               "PolledDispatcherExecutor")
        head, tail = script.split(load)
        rendered.script = (head + "\n" + RESOLVE_MACHINE_SOURCE
                           + "\nmachine = _opshelf_machine(json.loads(" + tail)
        return rendered


def resolve_group_size(execution: StepExecution, n_items: int | None, mode: Mode,
                       cpus: int | None = None) -> int:
    """Slices per step of a fan-out.

    An integer group_size is used as given. "auto": in local mode, with a known item
    count n, ``ceil(n / (AUTO_GROUPS_PER_CPU * cpus))`` (so about 3 groups per CPU, and
    1 while n <= 3 * cpus); with an unknown count, with a dispatcher or Argo executor,
    or in Argo mode: 1 (each slice its own job or pod, which the scheduler spreads).
    """
    if isinstance(execution.group_size, int):
        return execution.group_size
    local = mode == "local" and execution.executor.kind == "local"
    if not local or n_items is None or n_items <= 0:
        return 1
    cpus = cpus or os.cpu_count() or 1
    return max(1, math.ceil(n_items / (AUTO_GROUPS_PER_CPU * cpus)))


def _slices(slices: Mapping[str, Any] | None, execution: StepExecution, group_size: int,
            where: str) -> Slices | None:
    if slices is None:
        return None
    unknown = sorted(set(slices) - _SLICES_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown Slices keys {unknown}; known: {sorted(_SLICES_KEYS)}")
    kwargs = dict(slices)
    kwargs.setdefault("pool_size", execution.pool_size)
    if "group_size" not in kwargs and group_size > 1:
        kwargs["group_size"] = group_size
    if kwargs.get("group_size") and kwargs["pool_size"] is None:
        # dflow calls execute() once per slice only when pool_size is set; without it a
        # group's OP would receive lists
        kwargs["pool_size"] = 1
    return Slices(**kwargs)


def _timeout(timeout_s: float | None) -> float | int | None:
    if timeout_s is None:
        return None
    return int(timeout_s) if float(timeout_s).is_integer() else timeout_s


def _resources(executor: ArgoExecutor) -> dict[str, str] | None:
    res: dict[str, str] = {}
    if executor.cpu:
        res["cpu"] = executor.cpu
    if executor.memory:
        res["memory"] = executor.memory
    return res or None


def python_op_template(op_class: type[OP] | OP, execution: StepExecution, *,
                       slices: Mapping[str, Any] | None = None, mode: Mode = "local",
                       image: str | None = None) -> PythonOPTemplate:
    """A PythonOPTemplate for `op_class` configured by `execution`.

    `slices`: dflow Slices keyword arguments; its group_size, when absent, comes from
    ``execution.group_size`` ("auto" counts as 1 here: the item count is unknown; use
    make_step for the automatic rule).
    """
    name = getattr(op_class, "__name__", type(op_class).__name__)
    executor = execution.executor
    if mode == "local" and executor.kind == "argo":
        raise ConfigError(f"step with OP {name}: executor kind 'argo' runs only in a cluster "
                          "(export the workflow for Argo), not in local mode")
    group_size = execution.group_size if isinstance(execution.group_size, int) else 1
    kwargs: dict[str, Any] = {
        "slices": _slices(slices, execution, group_size, f"OP {name}"),
        "retry_on_transient_error": execution.retries or None,
        "timeout": _timeout(execution.timeout_s),
        # steps import dflow from their environment; uploading it needs an object store
        "upload_dflow": False,
    }
    if mode == "argo":
        argo = executor if isinstance(executor, ArgoExecutor) else ArgoExecutor()
        # the package image of the OP (opshelf.core.images) unless the config names one
        kwargs["image"] = argo.image or image or image_for(op_class)
        kwargs["image_pull_policy"] = argo.image_pull_policy
        requests = _resources(argo)
        limits = dict(requests or {})
        if argo.gpu:
            limits["nvidia.com/gpu"] = str(argo.gpu)
        kwargs["requests"] = requests
        kwargs["limits"] = limits or None
        kwargs["node_selector"] = dict(argo.node_selector) or None
    return PythonOPTemplate(op_class, **kwargs)


def dispatcher_executor(executor: DispatcherExecutor, *, mode: Mode = "local"
                        ) -> PolledDispatcherExecutor:
    """dflow's DispatcherExecutor for an opshelf dispatcher executor config.

    The machine and resources dicts are dpdispatcher's, used as given (dflow's SSH
    defaults are not merged in); the job runs ``executor.python`` or, when unset, this
    interpreter in local mode and ``python3`` in Argo mode (this machine's interpreter
    path means nothing on the cluster the pod submits to). In Argo mode the step's pod
    (dflow's ``dispatcher_image``: opshelf-core's image) runs dpdispatcher, which submits
    the job to the scheduler.
    """
    machine = {"local_root": ".", **deepcopy(executor.machine)}
    machine.setdefault("retry_count", executor.retry_count)
    python = executor.python or (sys.executable if mode == "local" else "python3")
    dispatcher = PolledDispatcherExecutor(
        machine_dict=machine,
        resources_dict=deepcopy(executor.resources),
        remote_command=[python],
        check_interval_s=executor.poll_interval_s,
        scheduler_retry_wait_s=executor.scheduler_retry_wait_s,
        transient_retries=executor.retry_count,
    )
    dispatcher.machine_dict = machine  # replace, do not merge with dflow's SSH defaults
    return dispatcher


def _literal_len(with_param: Any) -> int | None:
    if isinstance(with_param, (list, tuple)):
        return len(with_param)
    return None


def make_step(name: str, op_class: type[OP] | OP, execution: StepExecution, *,
              parameters: dict[str, Any] | None = None,
              artifacts: dict[str, Any] | None = None, key: str | StepKey | None = None,
              slices: dict[str, Any] | None = None, with_param: Any = None,
              with_sequence: Any = None, n_items: int | None = None, mode: Mode = "local",
              image: str | None = None) -> Step:
    """A dflow Step running `op_class`, configured by `execution`.

    `slices` holds dflow Slices keyword arguments and makes the step a fan-out over
    `with_param` / `with_sequence`. `n_items` (or the length of a literal `with_param`)
    lets group_size="auto" pack the fan-out (see ``resolve_group_size``). group_size and
    pool_size only apply to a fan-out (a step with `slices`); other steps ignore them, so
    a `steps.default` group size does not make every step an error.
    """
    if n_items is None:
        n_items = _literal_len(with_param)
    group_size = resolve_group_size(execution, n_items, mode)
    sliced = None
    if slices is not None:
        sliced = dict(slices)
        if group_size > 1:
            sliced.setdefault("group_size", group_size)
    try:
        template = python_op_template(op_class, execution, slices=sliced, mode=mode,
                                      image=image)
    except ConfigError as exc:
        raise ConfigError(f"step {name!r}: {exc}") from None
    executor = None
    if isinstance(execution.executor, DispatcherExecutor):
        executor = dispatcher_executor(execution.executor, mode=mode)
    step_kwargs: dict[str, Any] = {}
    if execution.continue_on_success_ratio is not None:
        step_kwargs["continue_on_success_ratio"] = execution.continue_on_success_ratio
    return Step(
        name, template, parameters=parameters, artifacts=artifacts,
        key=None if key is None else str(key), with_param=with_param, with_sequence=with_sequence, executor=executor,
        **step_kwargs,
    )


#: name and key of the step `results_step` appends
RESULTS_STEP = "results"


def find_step(workflow: Workflow, key: str) -> Step:
    """The top-level step of `workflow` with `key` (parallel groups searched too)."""
    steps = workflow.entrypoint.steps if workflow.entrypoint is not None else []
    for item in steps:
        for step in item if isinstance(item, list) else [item]:
            if getattr(step, "key", None) == key:
                return step
    raise KeyError(f"workflow {workflow.name!r} has no top-level step with key {key!r}")


def results_step(plugin: WorkflowPlugin, workflow_ref: str, config: StrictModel,
                 workflow: Workflow, *, mode: Mode = "argo") -> Step | None:
    """The final step that writes a run's results where no driver runs `collect` (Argo):
    core's WriteResults OP in the workflow's image, on the artifacts the plugin names in
    `results_inputs` (any number, one dflow dict-of-artifacts input); None when it names
    none. Those in `optional_results_inputs` may be missing (their step failed)."""
    from opshelf.core.ops.results import INPUT_NAME, WriteResults

    inputs = plugin.results_inputs(config, workflow)
    if not inputs:
        return None
    bad = [name for name in inputs if not INPUT_NAME.match(name)]
    if bad:
        raise ConfigError(f"workflow {plugin.name!r}: results_inputs names {bad}: use letters, "
                          "digits, '-' and '_' (not only digits), at most 191 characters")
    optional = sorted(set(plugin.optional_results_inputs(config)) & set(inputs))
    names = list(inputs)
    step = make_step(
        RESULTS_STEP, WriteResults, StepExecution(), key=RESULTS_STEP, mode=mode,
        parameters={"workflow": workflow_ref, "config": config.model_dump(mode="json"),
                    "names": names, "optional": optional},
        artifacts={"inputs": dict(inputs)},
        image=image_for(plugin) if mode == "argo" else None)
    for name in optional:
        # Argo skips an optional argument it cannot resolve (a failed step's output)
        part = f"dflow_inputs_{name}"
        step.inputs.artifacts[part].optional = True
        step.template.inputs.artifacts[part].optional = True
    return step


__all__: Sequence[str] = [
    "AUTO_GROUPS_PER_CPU", "PolledDispatcherExecutor", "RESULTS_STEP",
    "TRANSIENT_SCHEDULER_ERRORS", "dispatcher_executor", "find_step", "make_step",
    "python_op_template", "resolve_group_size", "results_step",
]
