"""Run lifecycle end to end through the `opshelf` command: run, status, failure, Ctrl-C,
SIGKILL + resume (no Succeeded step runs again), and rerun (only changed steps run).

The workflow is tests/wfdata/ledgerwf.py: a chain then a fan-out; every step appends its key
to a ledger outside the run dir, so the tests count real executions. Expected values come
from `expected_values`, computed without dflow (value = prev * mult + add).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "wfdata"))
from ledgerwf import LedgerConfig, expected_values
from runhelp import LEDGER_WF, cli_env, ledger_counts, opshelf, opshelf_argv, write_config

from opshelf.core.rundir import RunDir


def _config(tmp_path: Path, name: str = "c.yaml", **values: object) -> tuple[Path, LedgerConfig]:
    values = {"ledger": "ledger.txt", **values}
    return write_config(tmp_path / name, **values), LedgerConfig.model_validate(values)


def _values(run: RunDir) -> dict[str, int]:
    return json.loads((run.results_dir / "values.json").read_text())


def _start(tmp_path: Path, cfg: Path, name: str) -> tuple[subprocess.Popen[str], RunDir]:
    """`opshelf run` in the foreground, as a user would type it; returns once run.json exists."""
    proc = subprocess.Popen(opshelf_argv("run", LEDGER_WF, str(cfg), "--name", name),
                            env=cli_env(tmp_path / "runs"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    run_json = tmp_path / "runs" / name / "run.json"
    while time.monotonic() < deadline:
        if run_json.is_file() and RunDir(run_json.parent).read().driver_pgid:
            return proc, RunDir(run_json.parent)
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"run did not start: {proc.communicate()}")


def _wait_for(run: RunDir, cond: Callable[[dict[str, str]], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phases = {k: i.phase for k, i in run.step_phases().items()}
        if cond(phases):
            return
        time.sleep(0.01)
    raise AssertionError(f"condition never met; phases: {phases}")


def test_run_succeeds_and_status_reports_it(tmp_path: Path) -> None:
    cfg, config = _config(tmp_path, chain=3, fanout=4, sleep_s=0.05)
    res = opshelf("run", LEDGER_WF, str(cfg), runs_dir=tmp_path / "runs")
    assert res.returncode == 0, res.stderr
    (run_path,) = (tmp_path / "runs").iterdir()
    assert run_path.name.startswith("ledger-")  # <workflow>-<YYYYmmdd-HHMMSS>
    run = RunDir(run_path)
    assert f"results: {run.results_dir}" in res.stderr
    assert _values(run) == expected_values(config)
    assert ledger_counts(tmp_path / "ledger.txt") == {k: 1 for k in expected_values(config)}
    record = run.read()
    assert record.status == "succeeded" and record.run_id == run.name
    assert [(a.exit, a.resume) for a in record.attempts] == [(0, False)]
    assert run.config_path.read_text() == cfg.read_text()
    status = opshelf("status", run.name, runs_dir=tmp_path / "runs")  # by name, via env
    assert status.returncode == 0, status.stderr
    assert "status    succeeded" in status.stdout and "succeeded 7" in status.stdout
    assert "ledger workflow" in status.stdout  # the plugin's status table


def test_failed_step_is_reported_and_resume_does_not_redo_finished_steps(tmp_path: Path) -> None:
    cfg, _ = _config(tmp_path, chain=3, fanout=2, sleep_s=0.05, fail_key="chain-001")
    res = opshelf("run", LEDGER_WF, str(cfg), "--name", "f1", runs_dir=tmp_path / "runs")
    assert res.returncode == 1, res.stderr
    assert "failed" in res.stderr and "opshelf resume" in res.stderr
    status = opshelf("status", "f1", runs_dir=tmp_path / "runs")
    assert "status    failed" in status.stdout
    assert "failed step chain-001" in status.stdout
    assert "fails on purpose" in status.stdout  # the tail of the step's log
    res = opshelf("resume", "f1", runs_dir=tmp_path / "runs")
    assert res.returncode == 1  # the config still makes chain-001 fail
    assert ledger_counts(tmp_path / "ledger.txt") == {"chain-000": 1}
    attempts = RunDir(tmp_path / "runs" / "f1").read().attempts
    assert [(a.exit, a.resume) for a in attempts] == [(1, False), (1, True)]


def test_ctrl_c_stops_the_run_and_resume_refuses_while_it_runs(tmp_path: Path) -> None:
    cfg, config = _config(tmp_path, chain=3, fanout=2, sleep_s=1.0)
    proc, run = _start(tmp_path, cfg, "c1")
    try:
        _wait_for(run, lambda p: p.get("chain-000") == "Running")
        res = opshelf("resume", "c1", runs_dir=tmp_path / "runs")
        assert res.returncode == 2 and "still running" in res.stderr
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does to the launcher
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(run.read().driver_pgid, signal.SIGKILL)
            proc.kill()
    assert proc.returncode == 130, err
    record = run.read()
    assert record.status == "stopped" and "SIGINT" in (record.error or "")
    assert run.leftover_processes() == []
    res = opshelf("resume", "c1", runs_dir=tmp_path / "runs")
    assert res.returncode == 0, res.stderr
    assert _values(run) == expected_values(config)


KILL_POINTS = {
    # chain-000 done, chain-001 running
    "early-chain": lambda p: p.get("chain-000") == "Succeeded" and p.get("chain-001") == "Running",
    # two chain steps done, the third running
    "mid-chain": lambda p: p.get("chain-001") == "Succeeded" and p.get("chain-002") == "Running",
    # inside the fan-out: some slices done, some running
    "fan-out": lambda p: any(v == "Succeeded" for k, v in p.items() if k.startswith("fan-"))
    and any(v == "Running" for k, v in p.items() if k.startswith("fan-")),
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_sigkill_then_resume_runs_no_succeeded_step_again(tmp_path: Path, point: str) -> None:
    cfg, config = _config(tmp_path, chain=4, fanout=6, sleep_s=0.4)
    proc, run = _start(tmp_path, cfg, "k1")
    pgid = run.read().driver_pgid
    assert pgid is not None
    try:
        _wait_for(run, KILL_POINTS[point])
        os.killpg(pgid, signal.SIGKILL)  # the whole run, as the OOM killer or a node loss would
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGKILL, err
    time.sleep(0.2)
    before = {k: i.phase for k, i in run.step_phases().items()}
    done_before = {k for k, v in before.items() if v == "Succeeded"}
    assert done_before and set(expected_values(config)) - done_before, before
    assert run.effective_status() == "killed"
    assert "status    killed" in opshelf("status", str(run.path)).stdout

    res = opshelf("resume", str(run.path))
    assert res.returncode == 0, res.stderr
    counts = ledger_counts(tmp_path / "ledger.txt")
    assert set(counts) == set(expected_values(config))
    ran_again = {k: counts[k] for k in done_before if counts[k] != 1}
    assert ran_again == {}, f"Succeeded before the kill, but ran again: {ran_again}"
    assert _values(run) == expected_values(config)
    record = run.read()
    assert record.status == "succeeded"
    # the launcher saw its driver die by SIGKILL and recorded it
    assert [(a.exit, a.resume) for a in record.attempts] == [(137, False), (0, True)]
    # the resume started its fork server before building the workflow, and used it
    driver_log = run.log_path.read_text()
    assert "started before the build" in driver_log
    assert "starting another" not in driver_log


def test_rerun_runs_only_the_steps_whose_inputs_changed(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    ledger = tmp_path / "ledger.txt"
    cfg1, config1 = _config(tmp_path, "c1.yaml", chain=3, fanout=3, sleep_s=0.05)
    assert opshelf("run", LEDGER_WF, str(cfg1), "--name", "r1", runs_dir=runs).returncode == 0
    # 1) chain-001 gets a new parameter: it and everything downstream of it run again
    ledger.unlink()
    cfg2, config2 = _config(tmp_path, "c2.yaml", chain=3, fanout=3, sleep_s=0.05,
                            offsets={"chain-001": 5})
    res = opshelf("rerun", "r1", str(cfg2), "--name", "r2", runs_dir=runs)
    assert res.returncode == 0, res.stderr
    assert ledger_counts(ledger) == {k: 1 for k in ("chain-001", "chain-002", "fan-0", "fan-1",
                                                    "fan-2")}
    r2 = RunDir(runs / "r2")
    assert _values(r2) == expected_values(config2)
    assert r2.read().reuse_from == str(RunDir(runs / "r1").workflow_dir())
    # the reused step is a copy: the new run does not point into the old one
    reused = r2.workflow_dir() / "chain-000"
    assert (reused / "opshelf-reused-from").is_file()
    for path in (reused / "outputs").rglob("*"):
        assert not path.is_symlink(), path
    # 2) only the fan-out's parameter changes: the whole chain is reused
    ledger.unlink()
    cfg3, config3 = _config(tmp_path, "c3.yaml", chain=3, fanout=3, sleep_s=0.05,
                            offsets={"chain-001": 5}, scale=3)
    res = opshelf("rerun", "r2", str(cfg3), "--name", "r3", runs_dir=runs)
    assert res.returncode == 0, res.stderr
    assert ledger_counts(ledger) == {"fan-0": 1, "fan-1": 1, "fan-2": 1}
    assert _values(RunDir(runs / "r3")) == expected_values(config3)


def test_driver_stops_processes_a_finished_workflow_left_behind() -> None:
    """A stuck leftover (one that even ignores SIGTERM) must not keep the driver alive:
    `reap_leftovers` terminates, then kills, every descendant and names each one."""
    import subprocess
    import sys

    import psutil

    from opshelf.core.local.driver import reap_leftovers

    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"],
                                stdout=subprocess.PIPE, text=True)
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    lines = reap_leftovers(grace_s=1.0)
    assert any(f"pid {stubborn.pid}:" in line and "SIG_IGN" in line for line in lines)
    assert any(f"pid {polite.pid}:" in line for line in lines)
    # reaped by psutil (so Popen.wait would only see ECHILD): gone, the stubborn one by SIGKILL
    assert not psutil.pid_exists(stubborn.pid) and not psutil.pid_exists(polite.pid)
    assert not psutil.Process().children(recursive=True)
    assert reap_leftovers() == []
