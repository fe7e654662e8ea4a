"""Live progress of a run while `opshelf run`/`resume` watches it.

On a terminal: one bar (rich) with steps done/known, the running steps' names, the time
elapsed and an estimate of the time left. Elsewhere (a log file, CI): one plain line per
event (a step started, succeeded or failed), and a heartbeat line when nothing happened for
a while, so a log shows the run is alive. The steps are read from the run's step dirs, as
`opshelf status` reads them; a workflow that adds steps as it goes (cl's iterations) has a
total that grows, so the total is "known so far" and the estimate is a rate extrapolation.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from opshelf.core.rundir import RunDir, StepInfo

if TYPE_CHECKING:
    from rich.progress import Progress

#: seconds without an event after which a plain log gets a heartbeat line
HEARTBEAT_S = 60.0
#: running steps named on the bar (then "+N more")
SHOWN_RUNNING = 3


def fmt_elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def estimate_left(elapsed_s: float, done: int, total: int) -> float | None:
    """Seconds left if the remaining known steps go at the rate the finished ones went
    (None before the first step is done)."""
    if done <= 0 or total <= done:
        return None if done <= 0 else 0.0
    return elapsed_s / done * (total - done)


def running_names(steps: dict[str, StepInfo], shown: int = SHOWN_RUNNING) -> str:
    keys = sorted(k for k, i in steps.items() if i.phase == "Running")
    text = ", ".join(keys[:shown])
    return text + (f" +{len(keys) - shown} more" if len(keys) > shown else "")


def bar_text(steps: dict[str, StepInfo], elapsed: float, done: int, done_before: int = 0
             ) -> str:
    """What the bar says after the elapsed time: what the run is doing and the estimate
    (from the rate of the steps done since this attempt started: `done_before` were
    done already)."""
    if not steps:
        return "starting: the driver builds the workflow"
    if done == len(steps):
        return "finishing: next steps or the results being written"
    left = estimate_left(elapsed, done - done_before, len(steps) - done_before)
    running = running_names(steps)
    return ((f"~{fmt_elapsed(left)} left" if left is not None else "estimating")
            + (f"  running: {running}" if running else ""))


def _changed_at(item: tuple[str, StepInfo]) -> tuple[float, str]:
    """When the step's phase file was written (events print in the order they happened)."""
    try:
        return (item[1].path / "phase").stat().st_mtime, item[0]
    except FileNotFoundError:
        return float("inf"), item[0]


class RunProgress:
    """Call `update()` every poll; use as a context manager (the bar is cleared on exit)."""

    def __init__(self, run: RunDir, out: TextIO, *, tty: bool | None = None) -> None:
        self.run = run
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.start = time.monotonic()
        self.last_line = self.start
        self.phases: dict[str, str] = {}
        self.done_before = 0
        self.bar: Progress | None = None
        self.task: int | None = None

    def __enter__(self) -> RunProgress:
        # a resumed run's finished steps are no news, and its estimate counts only the
        # steps this attempt finishes
        self.phases = {k: i.phase for k, i in self.run.step_phases().items()}
        self.done_before = sum(p == "Succeeded" for p in self.phases.values())
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn(f"[bold]{self.run.name}[/]"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.description}"),
                                console=Console(file=self.out), transient=True,
                                auto_refresh=False)
            self.bar.start()
            self.task = self.bar.add_task("starting", total=None)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self) -> None:
        steps = self.run.step_phases()
        elapsed = time.monotonic() - self.start
        done = sum(i.phase == "Succeeded" for i in steps.values())
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, total=len(steps) or None, completed=done,
                            description=f"{fmt_elapsed(elapsed)} elapsed, "
                            + bar_text(steps, elapsed, done, self.done_before))
            self.bar.refresh()
            return
        for line in self.events(steps, elapsed, done):
            print(line, file=self.out, flush=True)
            self.last_line = time.monotonic()
        if time.monotonic() - self.last_line >= HEARTBEAT_S:
            print(self.summary_line(steps, elapsed, done), file=self.out, flush=True)
            self.last_line = time.monotonic()

    def events(self, steps: dict[str, StepInfo], elapsed: float, done: int) -> list[str]:
        """A line per step whose phase changed to Running, Succeeded or Failed since the
        last call."""
        changed = [(key, info) for key, info in steps.items()
                   if self.phases.get(key) != info.phase and info.phase != "Pending"]
        lines = []
        for key, info in sorted(changed, key=_changed_at):
            self.phases[key] = info.phase
            verb = {"Running": "started", "Succeeded": "done", "Failed": "FAILED"}.get(
                info.phase, info.phase.lower())
            lines.append(f"[{self.run.name}] {fmt_elapsed(elapsed)}  {verb} {key}  "
                         f"({done}/{len(steps)} steps done)")
        return lines

    def summary_line(self, steps: dict[str, StepInfo], elapsed: float, done: int) -> str:
        running = running_names(steps)
        left = estimate_left(elapsed, done - self.done_before, len(steps) - self.done_before)
        return (f"[{self.run.name}] {fmt_elapsed(elapsed)}  {done}/{len(steps)} steps done"
                + (f", ~{fmt_elapsed(left)} left" if left is not None else "")
                + (f"; running: {running}" if running else ""))
