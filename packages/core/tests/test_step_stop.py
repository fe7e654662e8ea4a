"""A stop signal waits for the running step's last lines (opshelf.core.local.stepstop).

The process reading a step's output (here: the test, with a handler that raises, as the
driver's does) gets SIGTERM while the step, signalled too, still writes what it did about the
stop. The end-to-end case (a dispatcher step's "cancelled job" lines in log.txt after
`opshelf stop`): test_dispatcher_stop.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from opshelf.core.local import stepstop
from opshelf.core.local.stepstop import deferred_stop

#: a step that, on SIGTERM, takes a while to clean up, then says what it did and exits
STEP = """
import signal, sys, time
def on_term(signum, frame):
    time.sleep(0.3)
    print("cancelled job 4242", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term if sys.argv[1] == "polite" else signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


class Stopped(BaseException):
    pass


@pytest.fixture
def stop_handler() -> Iterator[None]:
    """SIGTERM/SIGINT raise Stopped, as the driver's handler raises its stop."""
    def handler(signum: int, frame: object) -> None:
        raise Stopped(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, previous in old.items():
        signal.signal(sig, previous)


def start_step(stepdir: Path, mode: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", STEP, mode], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    (stepdir / "pid").write_text(str(proc.pid))  # as dflow's exec_pod records it
    return proc


def test_the_stop_waits_for_the_steps_last_lines(tmp_path: Path, stop_handler: None) -> None:
    step = SimpleNamespace(stepdir=str(tmp_path))
    proc = start_step(tmp_path, "polite")
    read = b""
    with pytest.raises(Stopped), deferred_stop(step):
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the process group's signal, to the reader
        assert proc.stdout is not None
        read = proc.stdout.read()  # until the step ends
        proc.wait()
        (tmp_path / "phase").write_text("Failed")  # what dflow writes on exit status 143
    assert read == b"cancelled job 4242\n"
    assert (tmp_path / "phase").read_text() == "Running"  # stopped, not failed
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler is back: raises again
    with pytest.raises(Stopped):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)


def test_no_step_process_no_wait(tmp_path: Path, stop_handler: None) -> None:
    """The control: before the step's process exists, the stop is immediate (stock)."""
    step = SimpleNamespace(stepdir=str(tmp_path))
    (tmp_path / "pid").write_text(str(os.getpid()))  # an earlier attempt's: no child of ours
    start = time.monotonic()
    with pytest.raises(Stopped), deferred_stop(step):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert time.monotonic() - start < 2


def test_a_step_that_does_not_end_is_waited_for_only_the_grace(
        tmp_path: Path, stop_handler: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stepstop, "STOP_LOG_GRACE_S", 0.5)
    step = SimpleNamespace(stepdir=str(tmp_path))
    proc = start_step(tmp_path, "deaf")
    start = time.monotonic()
    try:
        with pytest.raises(Stopped), deferred_stop(step):
            os.kill(os.getpid(), signal.SIGTERM)
            assert proc.stdout is not None
            proc.stdout.read()  # the step ignores SIGTERM and would run 60 s
    finally:
        proc.kill()
        proc.wait()
    assert 0.4 < time.monotonic() - start < 5


def test_nothing_is_held_without_a_python_stop_handler(tmp_path: Path) -> None:
    """A process whose SIGTERM is the default (not the driver or its pool) is left as is."""
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    with deferred_stop(SimpleNamespace(stepdir=str(tmp_path))) as hold:
        assert hold is None
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
