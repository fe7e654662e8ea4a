"""The dispatcher executor on failures, with dpdispatcher's Shell batch (no scheduler needed):
a failing job is reported with the scheduler's view, and the script opshelf renders retries
only scheduler messages. Real Slurm runs of the same paths: tests/test_slurm_dispatch.py."""

from __future__ import annotations

from pathlib import Path

from dflow import Workflow
from test_local_exec import Inc

from opshelf.core.dflow_build import TRANSIENT_SCHEDULER_ERRORS, make_step
from opshelf.core.execution import StepExecution
from opshelf.core.local import run_locally, step_phases


def shell_execution(tmp_path: Path, **executor: object) -> StepExecution:
    return StepExecution.model_validate({"executor": {
        "kind": "dispatcher", "poll_interval_s": 0.5,
        "machine": {"batch_type": "Shell", "context_type": "LocalContext",
                    "remote_root": str(tmp_path / "remote")},
        "resources": {"group_size": 1, "envs": {"PYTHONPATH": str(Path(__file__).parent)}},
        **executor}})


def test_rendered_script_polls_and_retries_transient_failures(tmp_path: Path) -> None:
    execution = shell_execution(tmp_path, retry_count=4, scheduler_retry_wait_s=7.5)
    step = make_step("inc", Inc, execution, parameters={"x": 1}, key="inc")
    script = step.executor.render(step.template).script
    assert "\nsubmission.run_submission(" not in script  # dflow's own call is replaced
    call = next(line for line in script.splitlines()
                if line.startswith("_opshelf_run_submission(submission"))
    assert "check_interval=0.5" in call and "retry_wait=7.5" in call and "retries=4" in call
    assert repr(TRANSIENT_SCHEDULER_ERRORS) in call
    compile(script, "dispatcher-step", "exec")  # still valid Python


def test_a_failed_job_is_reported_with_the_scheduler_view(tmp_path: Path) -> None:
    # The job's interpreter does not exist: the job runs and fails; no resubmission.
    execution = shell_execution(tmp_path, retry_count=0, python="/nonexistent/bin/python3")
    wf = Workflow("dispatch-fail")
    wf.add(make_step("inc", Inc, execution, parameters={"x": 1}, key="inc"))
    assert run_locally(wf, tmp_path / "runs") == "Failed"
    assert step_phases(tmp_path / "runs", "dispatch-fail")["inc"] == "Failed"
    log = "\n".join(p.read_text(errors="replace")
                    for p in (tmp_path / "runs" / "dispatch-fail" / "inc").glob("log*.txt"))
    assert "dispatcher job failed" in log and "scheduler report (Shell" in log
    assert "/nonexistent/bin/python3" in log  # the job's own stderr, quoted in the report
