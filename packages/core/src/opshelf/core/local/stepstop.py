"""A stop signal waits for the running step's last lines to reach its log.txt.

In dflow's debug mode the process that runs a step (the driver, or a worker of its pool)
copies the step's stdout/stderr into ``<stepdir>/log.txt`` line by line. `opshelf stop`
(and Ctrl-C) signal the run's whole process group: that process stopped at once, while the
step, signalled too, was still writing what it did about the stop (a dispatcher step's
"cancelled job <id>" lines), which then went nowhere.

`deferred_stop(step)` around one step: a SIGTERM/SIGINT that arrives while the step's
process lives (a child of this process, pid in ``<stepdir>/pid``) is held until the step has
ended, at most STOP_LOG_GRACE_S, then this process's own handler runs (the driver's raises
its stop). The step received the signal itself from the process group. A signal before the
step started or after it ended is not held. Only where a Python handler stops the process
(the driver and its forked pool workers): elsewhere nothing changes. The phase file keeps
"Running" for a step ended by the stop (as before: `opshelf status` shows it stopped, and
`resume` runs it again), not the "Failed" dflow writes on its exit status.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: seconds a stopping process keeps copying a running step's output into its log.txt
#: (`opshelf stop` waits 30 s before SIGKILL; the fork server gives its steps 5 s)
STOP_LOG_GRACE_S = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _live_step_child(stepdir: str | None) -> bool:
    """Whether the step's process (dflow's `<stepdir>/pid`) is a child of this one (a pid
    file left by an earlier attempt names none). One that has exited but is not reaped yet
    counts: what it wrote is still to be read from the pipe."""
    import psutil

    if not stepdir:
        return False
    try:
        pid = int(Path(stepdir, "pid").read_text().strip())
        proc = psutil.Process(pid)
        return proc.ppid() == os.getpid()
    except (FileNotFoundError, ValueError, psutil.Error):
        return False


class _Hold:
    def __init__(self, step: Any, handlers: dict[int, Callable[..., Any]]) -> None:
        self.step, self.handlers = step, handlers
        self.signum: int | None = None
        self.done = False
        self.alarm_handler: Any = None

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return  # held already: one stop
        if not _live_step_child(getattr(self.step, "stepdir", None)):
            self.release(signum, frame)
            return
        self.signum = signum
        self.alarm_handler = signal.signal(signal.SIGALRM, self.on_grace_over)
        signal.setitimer(signal.ITIMER_REAL, STOP_LOG_GRACE_S)

    def on_grace_over(self, _signum: int, frame: Any) -> None:
        assert self.signum is not None
        self.release(self.signum, frame)

    def restore(self) -> None:
        if self.alarm_handler is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.alarm_handler)
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)

    def release(self, signum: int, frame: Any) -> None:
        """This process's own handler, once (it raises the driver's stop)."""
        self.restore()
        self.done = True
        self.handlers[signum](signum, frame)


@contextmanager
def deferred_stop(step: Any) -> Iterator[_Hold | None]:
    """Hold a stop signal while `step` (a dflow Step in exec_pod) runs its process; yields
    the hold (its `signum` set once a signal is held), None where nothing is held."""
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    if (threading.current_thread() is not threading.main_thread()
            or not all(callable(h) for h in handlers.values())):
        yield None
        return
    hold = _Hold(step, handlers)  # type: ignore[arg-type]
    for sig in STOP_SIGNALS:
        signal.signal(sig, hold.on_signal)
    try:
        yield hold
    finally:
        if hold.signum is not None and not hold.done:
            _keep_running_phase(getattr(step, "stepdir", None))
            hold.release(hold.signum, None)
        elif not hold.done:
            hold.restore()


def _keep_running_phase(stepdir: str | None) -> None:
    """dflow wrote "Failed" for the step the stop ended: it was stopped, not failed."""
    if not stepdir:
        return
    phase = Path(stepdir, "phase")
    try:
        if phase.read_text().strip() == "Failed":
            phase.write_text("Running")
    except FileNotFoundError:
        pass
