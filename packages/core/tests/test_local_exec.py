"""opshelf's local runner end to end: real dflow debug-mode runs of tiny OPs.

The OPs live in this module: the run's fork server imports it (pytest put this
directory on sys.path, and run_locally passes such entries on to the steps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dflow import Workflow, argo_range
from dflow.python import OP, OPIO, FatalError, OPIOSign, TransientError

from opshelf.core.dflow_build import make_step
from opshelf.core.execution import StepExecution
from opshelf.core.local import run as local_run
from opshelf.core.local import run_locally, step_phases


class Inc(OP):
    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"x": int})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"y": int})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        return OPIO({"y": ip["x"] + 1})


class Square(OP):
    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"x": int})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"y": int, "pid": int})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        return OPIO({"y": ip["x"] ** 2, "pid": os.getpid()})


class SeesPreloaded(OP):
    """Reports which modules were imported before its execute ran (by the fork server)."""

    preload_modules = ("xml.dom.minidom",)

    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"engine": dict})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"preloaded": list})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        names = ["xml.dom.minidom", "opshelf.core.engines.ase_engine", "ase.io"]
        return OPIO({"preloaded": [n for n in names if n in sys.modules]})


class Total(OP):
    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"values": list})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"total": int, "n": int})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        values = [int(v) for v in ip["values"]]
        return OPIO({"total": sum(values), "n": len(values)})


class FailUntilMarker(OP):
    """Raises TransientError (or FatalError) until the marker file exists; creates it."""

    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"marker": str, "fatal": bool})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"attempts": int})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        marker = Path(ip["marker"])
        if ip["fatal"]:
            raise FatalError(f"deliberate fatal failure, marker {marker}")
        if not marker.exists():
            marker.write_text("1")
            raise TransientError("deliberate transient failure")
        return OPIO({"attempts": int(marker.read_text()) + 1})


class WhoAmI(OP):
    @classmethod
    def get_input_sign(cls):
        return OPIOSign({})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"executable": str, "path": str})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        return OPIO({"executable": sys.executable, "path": os.environ["PATH"]})


class Sleep(OP):
    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"seconds": float})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"slept": float})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        time.sleep(ip["seconds"])
        return OPIO({"slept": ip["seconds"]})


LOCAL = StepExecution()
VENV_BIN = str(Path(sys.executable).parent)


def output(workdir: Path, wf_id: str, key: str, name: str):
    text = (workdir / wf_id / key / "outputs" / "parameters" / name).read_text()
    try:
        return json.loads(text)
    except ValueError:
        return text


def launch_record(workdir: Path, wf_id: str, key: str) -> dict:
    return json.loads((workdir / wf_id / key / "launcher.json").read_text())


def chain(wf_id: str, n: int, first: int = 0) -> Workflow:
    wf = Workflow(wf_id)
    prev = None
    for i in range(n):
        x = prev.outputs.parameters["y"] if prev is not None else first
        prev = make_step(f"inc{i}", Inc, LOCAL, parameters={"x": x}, key=f"inc-{i:03d}")
        wf.add(prev)
    return wf


def fanout(wf_id: str, n: int, execution: StepExecution) -> Workflow:
    wf = Workflow(wf_id)
    square = make_step("square", Square, execution, parameters={"x": list(range(n))},
                       slices={"input_parameter": ["x"], "output_parameter": ["y", "pid"]},
                       with_param=argo_range(n), n_items=n, key="square-{{item}}")
    wf.add(square)
    wf.add(make_step("total", Total, LOCAL, parameters={"values": square.outputs.parameters["y"]},
                     key="total"))
    return wf


def test_chain_of_20_steps(tmp_path: Path) -> None:
    phase = run_locally(chain("chain", 20, first=5), tmp_path)
    assert phase == "Succeeded"
    phases = step_phases(tmp_path, "chain")
    assert list(phases) == [f"inc-{i:03d}" for i in range(20)]
    assert set(phases.values()) == {"Succeeded"}
    # 5 + 20 increments, each step a separate process
    assert output(tmp_path, "chain", "inc-019", "y") == 25
    assert launch_record(tmp_path, "chain", "inc-019")["via"] == "forkserver"


def test_fork_server_preloads_declared_modules_and_named_engines(tmp_path: Path) -> None:
    engine = {"name": "ase", "settings": {"calculator": "emt"}}
    wf = Workflow(name="preload", id="preload")
    wf.add(make_step("sees", SeesPreloaded, StepExecution(), key="sees",
                     parameters={"engine": engine}))
    modules = local_run.preload_modules(wf)
    # the OP's module, what it declares, the engine's module and what the engine declares
    assert modules[0] == __name__
    for name in ("xml.dom.minidom", "opshelf.core.engines.ase_engine", "ase.io"):
        assert name in modules
    # a dict that merely has a "name" (extra keys) is no engine spec
    other = Workflow(name="other", id="other")
    other.add(make_step("sees", SeesPreloaded, StepExecution(), key="sees",
                        parameters={"engine": {"name": "ase", "colour": "red"}}))
    assert "opshelf.core.engines.ase_engine" not in local_run.preload_modules(other)
    assert run_locally(wf, tmp_path) == "Succeeded"
    assert output(tmp_path, "preload", "sees", "preloaded") == [
        "xml.dom.minidom", "opshelf.core.engines.ase_engine", "ase.io"]


@pytest.mark.slow  # 20 x 100 steps: ~1.5 min on an idle 2-core machine, ~4.5 min loaded
def test_fanout_100_twenty_consecutive_runs(tmp_path: Path) -> None:
    """100 one-slice steps at once, 20 times: the children-file race made 5 of 9 such
    fan-outs fail with stock dflow (FIELD-NOTES). Every run must succeed."""
    one_per_step = StepExecution(group_size=1)
    results = []
    for run in range(20):
        wf_id = f"fan-{run:02d}"
        phase = run_locally(fanout(wf_id, 100, one_per_step), tmp_path)
        total = output(tmp_path, wf_id, "total", "total") if phase == "Succeeded" else None
        results.append((phase, total))
    # sum of i**2 for i < 100 = 99*100*199/6
    assert results == [("Succeeded", 328350)] * 20
    square_dirs = [k for k in step_phases(tmp_path, "fan-19") if k.startswith("square-")]
    assert len(square_dirs) == 100


def test_grouped_fanout(tmp_path: Path) -> None:
    phase = run_locally(fanout("grouped", 100, StepExecution(group_size=10)), tmp_path)
    assert phase == "Succeeded"
    assert output(tmp_path, "grouped", "total", "n") == 100
    assert output(tmp_path, "grouped", "total", "total") == 328350
    groups = [k for k in step_phases(tmp_path, "grouped") if k.startswith("square-")]
    assert len(groups) == 10  # 100 slices, 10 per step


def test_auto_grouping_packs_a_known_fanout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    phase = run_locally(fanout("auto", 60, StepExecution()), tmp_path)
    assert phase == "Succeeded"
    assert output(tmp_path, "auto", "total", "total") == sum(i * i for i in range(60))
    groups = [k for k in step_phases(tmp_path, "auto") if k.startswith("square-")]
    assert len(groups) == 6  # 60 items, 3 groups per CPU x 2 CPUs -> 10 per group


def test_transient_error_is_retried(tmp_path: Path) -> None:
    wf = Workflow("retry")
    wf.add(make_step("flaky", FailUntilMarker, StepExecution(retries=2), key="flaky",
                     parameters={"marker": str(tmp_path / "marker"), "fatal": False}))
    assert run_locally(wf, tmp_path / "runs") == "Succeeded"
    stepdir = tmp_path / "runs" / "retry" / "flaky"
    assert output(tmp_path / "runs", "retry", "flaky", "attempts") == 2
    # the failed attempt's log is kept, with the error that caused the retry
    assert "deliberate transient failure" in (stepdir / "log.attempt-1.txt").read_text()


def test_transient_error_without_retries_fails(tmp_path: Path) -> None:
    wf = Workflow("noretry")
    wf.add(make_step("flaky", FailUntilMarker, LOCAL, key="flaky",
                     parameters={"marker": str(tmp_path / "marker"), "fatal": False}))
    assert run_locally(wf, tmp_path / "runs") == "Failed"
    assert launch_record(tmp_path / "runs", "noretry", "flaky")["returncode"] == 1


def test_failing_step_gives_failed_phase_and_its_log(tmp_path: Path) -> None:
    wf = Workflow("fatal")
    wf.add(make_step("boom", FailUntilMarker, StepExecution(retries=3), key="boom",
                     parameters={"marker": str(tmp_path / "marker"), "fatal": True}))
    wf.add(make_step("after", Inc, LOCAL, parameters={"x": 1}, key="after"))
    assert run_locally(wf, tmp_path) == "Failed"
    phases = step_phases(tmp_path, "fatal")
    assert phases == {"boom": "Failed"}  # the following step never started
    stepdir = tmp_path / "fatal" / "boom"
    assert "deliberate fatal failure" in (stepdir / "log.txt").read_text()
    assert launch_record(tmp_path, "fatal", "boom")["returncode"] == 2  # FatalError
    assert not list(stepdir.glob("log.attempt-*"))  # a fatal error is not retried


def test_step_runs_under_this_interpreter_not_python3_on_path(tmp_path: Path,
                                                              monkeypatch) -> None:
    decoy = tmp_path / "decoy-bin"
    decoy.mkdir()
    for name in ("python3", "python"):
        (decoy / name).write_text("#!/bin/sh\necho decoy python ran >&2\nexit 97\n")
        (decoy / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{decoy}{os.pathsep}{os.environ['PATH']}")
    wf = Workflow("who")
    wf.add(make_step("who", WhoAmI, LOCAL, key="who"))
    assert run_locally(wf, tmp_path / "runs") == "Succeeded"
    assert output(tmp_path / "runs", "who", "who", "executable") == sys.executable
    path = output(tmp_path / "runs", "who", "who", "path").split(os.pathsep)
    assert path[0] == VENV_BIN and path[1] == str(decoy)


def test_without_fork_server_steps_run_in_fresh_interpreters(tmp_path: Path,
                                                             monkeypatch) -> None:
    def dead_server(cls, modules, log_path, env):  # a server that died while importing
        proc = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        proc.wait()
        return cls(proc, str(log_path.with_name("never.sock")), None, log_path)

    monkeypatch.setattr(local_run.ForkServerProcess, "launch", classmethod(dead_server))
    assert run_locally(chain("fresh", 2), tmp_path) == "Succeeded"
    assert output(tmp_path, "fresh", "inc-001", "y") == 2
    assert launch_record(tmp_path, "fresh", "inc-001")["via"] == "subprocess"


def test_resume_skips_succeeded_steps(tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    def build() -> Workflow:
        wf = chain("resume", 3)
        wf.add(make_step("gate", FailUntilMarker, LOCAL, key="gate",
                         parameters={"marker": str(marker), "fatal": False}))
        return wf

    assert run_locally(build(), tmp_path / "runs") == "Failed"  # gate creates the marker
    with pytest.raises(Exception, match="already exists"):
        run_locally(build(), tmp_path / "runs")
    first = {k: launch_record(tmp_path / "runs", "resume", k)["pid"] for k in
             ("inc-000", "inc-001", "inc-002", "gate")}
    assert run_locally(build(), tmp_path / "runs", resume=True) == "Succeeded"
    again = {k: launch_record(tmp_path / "runs", "resume", k)["pid"] for k in first}
    assert {k: again[k] == first[k] for k in first} == {
        "inc-000": True, "inc-001": True, "inc-002": True, "gate": False}
    assert set(step_phases(tmp_path / "runs", "resume").values()) == {"Succeeded"}


def test_timeout_kills_a_step(tmp_path: Path) -> None:
    wf = Workflow("slow")
    wf.add(make_step("sleep", Sleep, StepExecution(timeout_s=1), key="sleep",
                     parameters={"seconds": 60.0}))
    start = time.monotonic()
    assert run_locally(wf, tmp_path) == "Failed"
    assert time.monotonic() - start < 30
    record = launch_record(tmp_path, "slow", "sleep")
    assert record["timed_out"] is True and record["returncode"] == 124


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []
    assert run_locally(chain("progress", 3), tmp_path, progress=seen.append,
                       progress_interval_s=0.05) == "Succeeded"
    assert seen and seen[-1] == {f"inc-{i:03d}": "Succeeded" for i in range(3)}


DRIVER = """
import sys
from dflow import Workflow, argo_range
from opshelf.core.dflow_build import make_step
from opshelf.core.execution import StepExecution
from opshelf.core.local import run_locally
from test_local_exec import Sleep

wf = Workflow("killed")
wf.add(make_step("sleep", Sleep, StepExecution(group_size=1), key="sleep-{{item}}",
                 parameters={"seconds": [120.0, 120.0]}, with_param=argo_range(2),
                 slices={"input_parameter": ["seconds"], "output_parameter": ["slept"]}))
print(run_locally(wf, sys.argv[1]))
"""


def test_killed_run_leaves_no_orphans(tmp_path: Path) -> None:
    import signal
    import subprocess

    import psutil

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    sid = driver.pid  # a new session: its id is the driver's pid

    def session() -> list[psutil.Process]:
        procs = []
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                    procs.append(proc)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        return procs

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        phases = step_phases(tmp_path, "killed")
        if list(phases.values()) == ["Running", "Running"]:
            break
        assert driver.poll() is None, "the driver ended before its steps started"
        time.sleep(0.2)
    else:
        pytest.fail(f"steps did not start: {step_phases(tmp_path, 'killed')}")
    # everything the run started, whichever session or group it may have moved to: driver,
    # its pool workers, the fork server, 2 launcher clients, 2 step children. The fork server
    # starts beside dflow's walk, so under load it may come a little after the steps: wait.
    started: dict[int, psutil.Process] = {}
    for _ in range(50):
        time.sleep(0.2)
        started |= {p.pid: p for p in [*session(), *psutil.Process(sid).children(recursive=True)]}
        if len(started) >= 7:
            break
    assert len(started) >= 7

    def alive() -> list[psutil.Process]:
        procs = []
        for proc in started.values():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    procs.append(proc)
            except psutil.NoSuchProcess:
                continue
        return procs

    os.killpg(sid, signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive() == []


class FailOnThree(OP):
    @classmethod
    def get_input_sign(cls):
        return OPIOSign({"x": int})

    @classmethod
    def get_output_sign(cls):
        return OPIOSign({"y": int})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        if ip["x"] == 3:
            raise FatalError("deliberate failure of item 3")
        return OPIO({"y": ip["x"]})


@pytest.mark.parametrize(("ratio", "expected"), [(0.8, "Succeeded"), (0.95, "Failed")])
def test_continue_on_success_ratio(tmp_path: Path, ratio: float, expected: str) -> None:
    """1 of 10 slices fails: a 0.8 success ratio tolerates it, 0.95 does not."""
    wf = Workflow("ratio")
    wf.add(make_step("items", FailOnThree,
                     StepExecution(group_size=1, continue_on_success_ratio=ratio),
                     parameters={"x": list(range(10))}, with_param=argo_range(10),
                     slices={"input_parameter": ["x"], "output_parameter": ["y"]},
                     key="items-{{item}}"))
    assert run_locally(wf, tmp_path) == expected
    phases = step_phases(tmp_path, "ratio")
    assert phases["items-3"] == "Failed"
    assert sum(p == "Succeeded" for k, p in phases.items() if k.startswith("items-")) == 9


def test_patches_are_idempotent_and_get_children_takes_the_lock(tmp_path: Path) -> None:
    import threading
    from types import SimpleNamespace

    from dflow.step import Step
    from filelock import FileLock

    from opshelf.core.local import patches

    patches.apply()
    patched = (Step.exec_pod, Step.get_children, Step.add_children)
    patches.apply()
    assert (Step.exec_pod, Step.get_children, Step.add_children) == patched

    (tmp_path / "children").write_text('{"0-0": "step-key"}')
    scope = SimpleNamespace(stepdir=str(tmp_path))
    found: list[str | None] = []
    reader = threading.Thread(target=lambda: found.append(Step.get_children(None, scope, "0-0")))
    with FileLock(str(tmp_path / "children") + ".lock"):  # as add_children holds it
        reader.start()
        reader.join(0.5)
        assert reader.is_alive() and found == []  # waiting for the writer
    reader.join(10)
    assert found == ["step-key"]
