"""Run management through the `opshelf` command: `runs`, `stop` (then `resume`), `logs`,
`steps`, `status` after a kill, and the progress a person reads while a run goes.

The workflow is tests/wfdata/ledgerwf.py (a chain then a fan-out; every step appends its
key to a ledger, so a test counts real executions; values from `expected_values`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "wfdata"))
from ledgerwf import LedgerConfig, expected_values
from runhelp import LEDGER_WF, cli_env, ledger_counts, opshelf, opshelf_argv, write_config

from opshelf.core.local.progress import RunProgress, estimate_left
from opshelf.core.local.runs import group_state, human_size, tree_size
from opshelf.core.rundir import RunDir


def _config(tmp_path: Path, **values: object) -> tuple[Path, LedgerConfig]:
    values = {"ledger": "ledger.txt", **values}
    return write_config(tmp_path / "c.yaml", **values), LedgerConfig.model_validate(values)


def _wait_for_running(run_path: Path, timeout_s: float = 90) -> RunDir:
    """Until the detached run has a step Running; returns the run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (run_path / "run.json").is_file():
            run = RunDir(run_path)
            if any(i.phase == "Running" for i in run.step_phases().values()):
                return run
        time.sleep(0.02)
    raise AssertionError(f"no step of {run_path} started in {timeout_s} s")


def test_runs_lists_every_run_with_workflow_status_steps_age_and_size(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cfg, _ = _config(tmp_path, chain=2, fanout=2, sleep_s=0.0)
    assert opshelf("run", LEDGER_WF, str(cfg), "--name", "a1", runs_dir=runs).returncode == 0
    bad, _ = _config(tmp_path, chain=2, fanout=2, sleep_s=0.0, fail_key="chain-001")
    assert opshelf("run", LEDGER_WF, str(bad), "--name", "b2", runs_dir=runs).returncode == 1
    res = opshelf("runs", runs_dir=runs)
    assert res.returncode == 0, res.stderr
    head, *rows = res.stdout.splitlines()
    assert head.split() == ["RUN", "WORKFLOW", "STATUS", "STEPS", "DONE", "AGE", "SIZE"]
    by_name = {row.split()[0]: row.split() for row in rows}
    # 2 chain + 2 fan steps all done; the failed run: chain-000 done, chain-001 failed
    assert by_name["a1"][1:4] == ["ledger", "succeeded", "4/4"]
    assert by_name["b2"][1:4] == ["ledger", "failed", "1/2"]
    listing = json.loads(opshelf("runs", "--json", runs_dir=runs).stdout)
    sizes = {r["name"]: r["size_bytes"] for r in listing}
    assert sizes["a1"] == tree_size(runs / "a1") > 0
    assert all(0 <= r["age_s"] < 600 for r in listing)
    empty = opshelf("runs", runs_dir=tmp_path / "nothing-here")
    assert empty.returncode == 2 and "no runs directory" in empty.stderr


def test_stop_ends_a_detached_run_cleanly_and_resume_finishes_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cfg, config = _config(tmp_path, chain=2, fanout=1, sleep_s=3.0)
    res = opshelf("run", LEDGER_WF, str(cfg), "--name", "s1", "--detach", runs_dir=runs)
    assert res.returncode == 0, res.stderr
    run = _wait_for_running(runs / "s1")
    try:
        live = json.loads(opshelf("status", "s1", "--json", runs_dir=runs).stdout)
        stop = opshelf("stop", "s1", runs_dir=runs)
    finally:
        if run.driver_process() is not None:  # the test failed: leave nothing behind
            os.killpg(run.read().driver_pgid or 0, signal.SIGKILL)
    assert live["status"] == "running" and live["running_steps"] == ["chain-000"]
    assert stop.returncode == 0, stop.stderr
    assert "stopped run s1" in stop.stderr and "opshelf resume" in stop.stderr
    record = run.read()
    assert record.status == "stopped" and "SIGTERM" in (record.error or "")
    assert run.driver_process() is None and run.leftover_processes() == []
    status = opshelf("status", "s1", runs_dir=runs).stdout
    assert "status    stopped" in status and "running 0" in status
    again = opshelf("stop", "s1", runs_dir=runs)
    assert again.returncode == 2 and "not running (status stopped)" in again.stderr
    res = opshelf("resume", "s1", runs_dir=runs)
    assert res.returncode == 0, res.stderr
    assert json.loads((run.results_dir / "values.json").read_text()) == expected_values(config)
    counts = ledger_counts(tmp_path / "ledger.txt")
    assert set(counts) == set(expected_values(config)) and max(counts.values()) == 1


def test_status_after_a_kill_counts_no_step_as_running(tmp_path: Path) -> None:
    """SIGKILL leaves the step dirs saying Running: with no driver alive they are stopped."""
    runs = tmp_path / "runs"
    cfg, _ = _config(tmp_path, chain=1, fanout=3, sleep_s=3.0)
    res = opshelf("run", LEDGER_WF, str(cfg), "--name", "k1", "--detach", runs_dir=runs)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 90
    run = RunDir(runs / "k1")
    while True:  # chain-000 done, fan-out slices running
        phases = Counter(i.phase for i in run.step_phases().values())
        if phases["Succeeded"] == 1 and phases["Running"] >= 1:
            break
        assert time.monotonic() < deadline, run.step_phases()
        time.sleep(0.02)
    os.killpg(run.read().driver_pgid or 0, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while run.driver_process() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    on_disk = Counter(i.phase for i in run.step_phases().values())
    assert on_disk["Running"] >= 1 and on_disk["Succeeded"] == 1, on_disk  # as the kill left it
    report = json.loads(opshelf("status", "k1", "--json", runs_dir=runs).stdout)
    assert report["status"] == "killed"
    assert report["steps"] == {"Succeeded": 1, "Stopped": on_disk["Running"],
                               **({"Pending": on_disk["Pending"]} if on_disk["Pending"] else {})}
    text = opshelf("status", "k1", runs_dir=runs).stdout
    assert "running 0" in text and f"stopped {on_disk['Running']}" in text
    assert "opshelf resume" in text


def test_logs_shows_the_driver_log_and_a_steps_log(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cfg, _ = _config(tmp_path, chain=2, fanout=2, sleep_s=0.0, fail_key="chain-001")
    assert opshelf("run", LEDGER_WF, str(cfg), "--name", "l1", runs_dir=runs).returncode == 1
    driver = opshelf("logs", "l1", runs_dir=runs)
    assert driver.returncode == 0, driver.stderr
    assert "==> driver.log <==" in driver.stdout and "running ledger as l1" in driver.stdout
    step = opshelf("logs", "l1", "chain-001", runs_dir=runs)
    assert step.returncode == 0, step.stderr
    assert "chain-001/log.txt <==" in step.stdout and "fails on purpose" in step.stdout
    tail = opshelf("logs", "l1", "chain-001", "--tail", "1", runs_dir=runs).stdout
    assert len(tail.strip().splitlines()) == 2  # the header and one line
    unknown = opshelf("logs", "l1", "chain-009", runs_dir=runs)
    assert unknown.returncode == 2 and "no step 'chain-009'" in unknown.stderr
    assert "chain-000" in unknown.stderr  # names the steps there are


def test_steps_lists_the_names_a_steps_block_may_set(tmp_path: Path) -> None:
    cfg, _ = _config(tmp_path)
    res = opshelf("steps", LEDGER_WF, str(cfg))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["chain", "fan"]  # LedgerWorkflow.step_names
    (tmp_path / "typo.yaml").write_text("ledger: l.txt\nchian: 3\n")
    bad = opshelf("steps", LEDGER_WF, str(tmp_path / "typo.yaml"))
    assert bad.returncode == 2 and "chian" in bad.stderr


def test_progress_is_a_line_per_event_when_not_a_terminal(tmp_path: Path) -> None:
    cfg, _ = _config(tmp_path, chain=2, fanout=2, sleep_s=0.3)
    res = subprocess.run(opshelf_argv("run", LEDGER_WF, str(cfg), "--name", "p1"),
                         capture_output=True, text=True, env=cli_env(tmp_path / "runs"),
                         timeout=180)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("[p1]")]
    done = [line for line in lines if "  done " in line]
    # each of the 4 steps finishes once: one line each (a step too quick for the 0.5 s poll
    # may never be seen Running, but its end is always seen)
    assert sorted(line.split("  done ")[1].split()[0] for line in done) == [
        "chain-000", "chain-001", "fan-0", "fan-1"]
    assert done[-1].endswith("(4/4 steps done)")


def test_progress_bar_on_a_terminal_names_running_steps_and_estimates(tmp_path: Path) -> None:
    """The bar's text, rendered by rich to a fake terminal, from a run dir's step phases."""
    import io

    wf = tmp_path / "r1" / "dflow" / "r1"
    for key, phase in {"a-000": "Succeeded", "a-001": "Running", "a-002": "Pending"}.items():
        (wf / key).mkdir(parents=True)
        for name, text in (("type", "Pod"), ("phase", phase), ("name", key)):
            (wf / key / name).write_text(text)
    (tmp_path / "r1" / "run.json").write_text(json.dumps({
        "workflow": "x", "workflow_ref": "x", "run_id": "r1", "created": "2026-01-01T00:00:00",
        "source_config": "c.yaml"}))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    with RunProgress(RunDir(tmp_path / "r1"), out) as bar:
        assert bar.done_before == 1  # done before this attempt: not in its rate
        bar.update()
        assert "estimating" in out.getvalue()
        bar.done_before = 0  # as if a-000 finished in this attempt
        bar.start -= 30  # 30 s elapsed, 1 of 3 done: 60 s left at that rate
        bar.update()
        rendered = out.getvalue()
    assert "1/3" in rendered and "running: a-001" in rendered
    assert "0:00:30 elapsed" in rendered and "~0:01:00 left" in rendered
    assert estimate_left(30.0, 0, 3) is None and estimate_left(30.0, 3, 3) == 0.0


def test_group_state_and_sizes() -> None:
    assert group_state(Counter({"Succeeded": 3})) == "done"
    assert group_state(Counter({"Succeeded": 1, "Running": 2})) == "running (1/3 steps done)"
    assert group_state(Counter({"Succeeded": 1, "Failed": 1, "Running": 1})).startswith("failed")
    assert group_state(Counter({"Pending": 2})) == "pending (0/2 steps done)"
    assert [human_size(n) for n in (512, 2048, 3 * 1024**3)] == ["512 B", "2.0 KiB", "3.0 GiB"]


def test_bar_says_what_the_run_does_before_and_after_its_known_steps(tmp_path: Path) -> None:
    from opshelf.core.local.progress import bar_text
    from opshelf.core.rundir import StepInfo

    assert bar_text({}, 5.0, 0) == "starting: the driver builds the workflow"
    done = {"a": StepInfo("a", "a", "Succeeded", tmp_path)}
    assert bar_text(done, 5.0, 1).startswith("finishing")
