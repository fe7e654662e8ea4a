"""Reading and managing runs from their directories: `opshelf status`, `runs`, `stop`, `logs`.

Nothing here imports dflow or pydantic: each command answers in a fraction of a second. A
workflow's own status table comes from its `opshelf.status` entry point (a function of the
run directory in a module that imports neither); a workflow without one falls back to its
plugin's `status_table`, which costs the plugin's imports.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from opshelf.core.errors import UserError
from opshelf.core.keys import SEPARATOR
from opshelf.core.process import tail
from opshelf.core.rundir import RunDir, RunRecord, StepInfo, phase_counts

#: entry-point group of the fast status tables: name = workflow, value = `module:function`
#: taking the run directory and returning the table (str) or None
STATUS_GROUP = "opshelf.status"
#: phase shown for a step whose phase file still says Running while no driver is alive
STOPPED_PHASE = "Stopped"
#: order of the phases in `opshelf status`
PHASE_ORDER = ("Succeeded", "Running", "Pending", "Failed", STOPPED_PHASE)


def live_phases(run: RunDir, *, driver_alive: bool) -> dict[str, StepInfo]:
    """The run's steps with their phases; without a live driver nothing is running, so a
    step whose phase file still says Running (the driver was killed) is Stopped."""
    steps = run.step_phases()
    if driver_alive:
        return steps
    return {k: (StepInfo(i.key, i.name, STOPPED_PHASE, i.path) if i.phase == "Running" else i)
            for k, i in steps.items()}


# -- status ------------------------------------------------------------------------------------

@dataclass
class FailedStep:
    key: str
    name: str
    log_tail: str


@dataclass
class RunStatusReport:
    run: RunDir
    record: RunRecord
    status: str
    driver_pid: int | None
    counts: dict[str, int]
    failed: list[FailedStep] = field(default_factory=list)
    table: str | None = None
    #: keys of the steps running now
    running: list[str] = field(default_factory=list)

    def format(self) -> str:
        r = self.record
        lines = [f"run       {self.run.name}  ({self.run.path})",
                 f"workflow  {r.workflow}",
                 f"status    {self.status}"
                 + (f"  (driver pid {self.driver_pid} alive)" if self.driver_pid else
                    "  (no driver running)"),
                 f"created   {r.created}",
                 f"attempts  {len(r.attempts)}"]
        for i, a in enumerate(r.attempts, 1):
            lines.append(f"  {i}. {'resume' if a.resume else 'start '} {a.start} -> "
                         f"{a.end or '...'}  exit {a.exit if a.exit is not None else '-'}")
        if r.reuse_from:
            lines.append(f"reuses    finished steps of {r.reuse_from}")
        if r.error:
            lines.append("error     " + r.error.strip().replace("\n", "\n          "))
        if r.outcome:
            lines.append(f"outcome   {r.outcome}")
        lines.append("steps     " + format_counts(self.counts))
        if self.running:
            lines.append("running   " + ", ".join(self.running))
        for step in self.failed:
            lines.append(f"failed step {step.key} ({step.name}); last lines of its log:")
            lines += ["    " + line for line in (step.log_tail or "(empty log)").splitlines()]
        if self.status in ("stopped", "killed", "failed"):
            lines.append(f"resume    opshelf resume {self.run.path}")
        if self.table:
            lines += ["", self.table]
        return "\n".join(lines)


def format_counts(counts: dict[str, int]) -> str:
    """`succeeded 3  running 1  pending 0  failed 0` (+ `stopped N` when any)."""
    phases = [p for p in PHASE_ORDER if p != STOPPED_PHASE or counts.get(p)]
    phases += sorted(set(counts) - set(PHASE_ORDER))
    return "  ".join(f"{p.lower()} {counts.get(p, 0)}" for p in phases)


def run_status(run: RunDir, *, log_lines: int = 15) -> RunStatusReport:
    record = run.read()
    driver = run.driver_process()
    steps = live_phases(run, driver_alive=driver is not None)
    failed = [FailedStep(info.key, info.name, tail(info.path / "log.txt", log_lines))
              for info in sorted(steps.values(), key=lambda i: i.key) if info.phase == "Failed"]
    return RunStatusReport(run=run, record=record, status=run.effective_status(),
                           driver_pid=driver.pid if driver else None,
                           counts=dict(phase_counts(steps)), failed=failed,
                           table=status_table(record, run.path),
                           running=sorted(k for k, i in steps.items() if i.phase == "Running"))


def status_table(record: RunRecord, run_dir: Path) -> str | None:
    """The workflow's own table: the function run.json names (found when the run was made),
    else its `opshelf.status` entry point; for a workflow given as `module:Class` (not
    installed), its plugin's `status_table` (slower: the plugin module's imports)."""
    ref = record.status_table or status_table_ref(record.workflow_ref)
    if ref is not None:
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)(run_dir)
    if ":" not in record.workflow_ref:
        return None  # an installed workflow registers its table as an entry point, or has none
    from opshelf.core.workflow import resolve_workflow

    try:
        return resolve_workflow(record.workflow_ref).status_table(run_dir)
    except UserError as exc:  # plugin uninstalled since the run: the rest is still useful
        return f"(no workflow status table: {exc})"


def status_table_ref(workflow: str) -> str | None:
    """`module:function` of the `opshelf.status` entry point of `workflow`, if it has one."""
    from opshelf.core.plugins import entry_point_value

    return entry_point_value(STATUS_GROUP, workflow)


# -- runs --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSummary:
    name: str
    workflow: str
    status: str
    created: str
    age_s: float
    size_bytes: int
    done: int
    total: int


def list_runs(root: Path) -> list[RunSummary]:
    """Every run under `root` (a directory holding run.json), oldest first."""
    if not root.is_dir():
        raise UserError(f"no runs directory {root} (set --runs-dir or $OPSHELF_RUNS_DIR)")
    out = []
    now = time.time()
    for record_path in sorted(root.glob("*/run.json")):
        run = RunDir(record_path.parent.resolve())
        try:
            record = run.read()
        except UserError as exc:
            out.append(RunSummary(run.name, "?", f"unreadable: {exc}", "", 0.0, 0, 0, 0))
            continue
        steps = run.step_phases()
        out.append(RunSummary(
            name=run.name, workflow=record.workflow, status=run.effective_status(),
            created=record.created, age_s=now - _timestamp(record.created, record_path),
            size_bytes=tree_size(run.path), done=phase_counts(steps)["Succeeded"],
            total=len(steps)))
    return sorted(out, key=lambda r: -r.age_s)


def _timestamp(iso: str, fallback: Path) -> float:
    try:
        return _dt.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return fallback.stat().st_mtime


def tree_size(path: Path) -> int:
    """Disk use of the files under `path` in bytes, as `du` counts it (symlinks not followed;
    a hard-linked file once)."""
    total, seen = 0, set()
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue  # removed while we walk: a running step's temporary file
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total


def format_runs(runs: list[RunSummary]) -> str:
    return text_table(("RUN", "WORKFLOW", "STATUS", "STEPS DONE", "AGE", "SIZE"),
                      [(r.name, r.workflow, r.status, f"{r.done}/{r.total}", human_age(r.age_s),
                        human_size(r.size_bytes)) for r in runs])


def human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# -- stop --------------------------------------------------------------------------------------

#: seconds `opshelf stop` waits for the driver to record the stop before killing the group
STOP_GRACE_S = 30.0


def stop_run(run: RunDir, *, grace_s: float = STOP_GRACE_S) -> str:
    """Stop a running run cleanly: SIGTERM to its driver, which stops its steps and records
    'stopped' (resumable). A driver still alive after `grace_s` loses its whole process
    group to SIGKILL and the run is recorded 'killed'. Returns what happened, in one line."""
    driver = run.driver_process()
    if driver is None:
        status = run.effective_status()
        raise UserError(f"run {run.name} is not running (status {status}); nothing to stop")
    pgid = run.read().driver_pgid or driver.pid
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    # the driver, and every step it leaves ending (a dispatcher step cancels its jobs)
    while time.monotonic() < deadline and (run.driver_process() is not None
                                           or run.leftover_processes()):
        time.sleep(0.1)
    left = run.leftover_processes()
    if run.driver_process() is None and not left and run.read().status != "running":
        return f"stopped run {run.name}; continue it with: opshelf resume {run.path}"
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    import psutil

    for proc in left:  # a program in a session of its own carries the run's marker
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    if run.read().status == "running":
        run.end_attempt(exit_code=128 + signal.SIGKILL, status="killed",
                        error=f"did not stop within {grace_s:g} s of SIGTERM: killed (opshelf stop)")
    return (f"run {run.name} did not stop within {grace_s:g} s: killed its processes; "
            f"continue it with: opshelf resume {run.path}")


# -- logs --------------------------------------------------------------------------------------

def step_logs(run: RunDir, step: str | None) -> list[Path]:
    """The driver log (no `step`), or the log files of the step whose key is `step` (or
    of every step whose key starts with it / whose name is it: `run-fp` gives each slice)."""
    if step is None:
        if not run.log_path.is_file():
            raise UserError(f"run {run.name} has no driver log yet ({run.log_path})")
        return [run.log_path]
    steps = run.step_phases()
    chosen = ([steps[step]] if step in steps else
              [i for k, i in sorted(steps.items()) if k.startswith(step) or i.name == step])
    if not chosen:
        known = ", ".join(sorted(steps)) or "none yet"
        raise UserError(f"run {run.name} has no step {step!r}; its steps: {known}")
    return [path for info in chosen for path in _log_files(info.path)]


def _log_files(step_dir: Path) -> list[Path]:
    """A step's log (stdout and stderr of its OP, log.txt) and its programs' logs (files
    named *.log, *.out or *.err in its work dir, as `run_command` writes them)."""
    logs = [step_dir / "log.txt"] if (step_dir / "log.txt").is_file() else []
    workdir = step_dir / "workdir"
    if workdir.is_dir():
        logs += sorted(p for pattern in ("*.log", "*.out", "*.err")
                       for p in workdir.rglob(pattern) if p.is_file())
    return logs


def format_logs(run: RunDir, paths: list[Path], *, lines: int | None) -> str:
    """Each log under a `==> path <==` header (as `tail` prints several files)."""
    out = []
    for path in paths:
        text = tail(path, lines) if lines is not None else path.read_text(errors="replace")
        shown = path.relative_to(run.path) if path.is_relative_to(run.path) else path
        out.append(f"==> {shown} <==\n{text.rstrip() or '(empty)'}")
    return "\n\n".join(out)


# -- helpers of the workflows' status tables ---------------------------------------------------

def run_steps(run_dir: Path) -> dict[str, StepInfo]:
    """The steps of the run at `run_dir` with live phases (Stopped when no driver lives)."""
    run = RunDir(run_dir)
    return live_phases(run, driver_alive=run.driver_process() is not None)


def group_phases(steps: dict[str, StepInfo], depth: int) -> dict[tuple[str, ...], Counter[str]]:
    """Phase counts of the steps grouped by the first `depth` blocks of their keys
    (``cu--eam--eos--run-000003`` at depth 3: ``("cu", "eam", "eos")``); steps with a
    shorter key are left out."""
    groups: dict[tuple[str, ...], Counter[str]] = {}
    for key, info in steps.items():
        parts = key.split(SEPARATOR)
        if len(parts) > depth:
            groups.setdefault(tuple(parts[:depth]), Counter())[info.phase] += 1
    return groups


def group_state(counts: Counter[str]) -> str:
    """One word for a group of steps: failed, stopped, running, done or pending, with the
    steps done out of those known when it is not done."""
    total, done = sum(counts.values()), counts["Succeeded"]
    for phase in ("Failed", STOPPED_PHASE, "Running"):
        if counts[phase]:
            return f"{phase.lower()} ({done}/{total} steps done)"
    return "done" if done == total else f"pending ({done}/{total} steps done)"


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in (header, *rows))
