"""The on-disk layout and recorded state of one opshelf run.

    <runs_root>/<run_name>/
        config.yaml     the user's config file, copied verbatim (the run is reproducible from it)
        run.json        workflow, run id (== dflow workflow id), status, driver pid/group, attempts
        dflow/          dflow's debug workdir; the workflow's step dirs are in dflow/<run_id>/
        results/        what the workflow's collect() gathered
        driver.log      stdout/stderr of every driver attempt, appended

No dflow import here: `opshelf status` must stay fast.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from opshelf.core.errors import UserError

if TYPE_CHECKING:  # imported where used: `opshelf status` stays fast
    import psutil
    from filelock import FileLock

#: env var naming the default runs directory (else ./opshelf-runs)
RUNS_DIR_ENV = "OPSHELF_RUNS_DIR"
DEFAULT_RUNS_DIR = "opshelf-runs"
#: set by the driver in its environment, inherited by every process of the run
RUN_MARKER_ENV = "OPSHELF_RUN_DIR"

#: 'unconverged': every step succeeded, the workflow's goal was not reached (WorkflowPlugin.outcome)
#: 'stopped': the driver stopped on request (Ctrl-C, `opshelf stop`) and recorded it;
#: 'killed': the driver died without recording it (SIGKILL, the OOM killer, a lost node)
RunStatus = Literal["created", "running", "succeeded", "unconverged", "failed", "stopped",
                    "killed"]
#: statuses of a run that ran to its end: nothing left to resume
FINISHED = ("succeeded", "unconverged")

# dflow uses the workflow id in Kubernetes names and file names: keep run names DNS-label-like.
_RUN_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def default_runs_root() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class Attempt:
    """One driver process: the first launch or a resume."""

    start: str
    pid: int
    end: str | None = None
    #: driver exit code: 0 succeeded, 1 workflow failed, 3 unconverged, 130/143 interrupted;
    #: None while running or killed
    exit: int | None = None
    resume: bool = False


@dataclass
class RunRecord:
    """Contents of run.json. A plain dataclass read with `json` (no pydantic import):
    `opshelf status` and `opshelf runs` read it and must answer in a fraction of a second."""

    workflow: str
    #: entry-point name or "module:Class" import path, as given to `opshelf run`
    workflow_ref: str
    run_id: str
    created: str
    #: the config file the user gave (the run uses its copy, config.yaml)
    source_config: str
    status: RunStatus = "created"
    driver_pid: int | None = None
    #: the driver runs in its own session: its process group holds every step process
    driver_pgid: int | None = None
    #: psutil create_time of the driver, to tell it from a later process reusing the pid
    driver_create_time: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    #: for `opshelf rerun`: the dflow workflow dir of the run whose finished steps may be reused
    reuse_from: str | None = None
    error: str | None = None
    #: the workflow's own one-line verdict on a finished run (WorkflowPlugin.outcome)
    outcome: str | None = None
    #: `module:function` of the workflow's status table (its `opshelf.status` entry point),
    #: found when the run was made: `opshelf status` imports it without a look at every
    #: installed distribution's entry points
    status_table: str | None = None

    @classmethod
    def from_json(cls, text: str, *, source: Path | str = "run.json") -> RunRecord:
        """Parse run.json; a file that is not one (hand-edited, truncated) is a UserError
        naming it."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("attempts", []), list):
                raise TypeError("not a JSON object with a list of attempts")
            attempts = [Attempt(**a) for a in data.pop("attempts", [])]
            record = cls(**data, attempts=attempts)
        except (ValueError, TypeError) as exc:
            raise UserError(f"{source} is not an opshelf run record: {exc}") from None
        wrong = [name for name in ("workflow", "workflow_ref", "run_id", "created",
                                   "source_config") if not isinstance(getattr(record, name), str)]
        if wrong or record.status not in get_args(RunStatus):
            raise UserError(f"{source} is not an opshelf run record: "
                            + (f"{', '.join(wrong)} must be text" if wrong else
                               f"unknown status {record.status!r}; expected one of "
                               f"{', '.join(get_args(RunStatus))}"))
        return record

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


@dataclass(frozen=True)
class RunDir:
    path: Path

    # -- layout -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def record_path(self) -> Path:
        return self.path / "run.json"

    @property
    def dflow_dir(self) -> Path:
        return self.path / "dflow"

    @property
    def results_dir(self) -> Path:
        return self.path / "results"

    @property
    def log_path(self) -> Path:
        return self.path / "driver.log"

    def workflow_dir(self) -> Path:
        """dflow's directory of this run's workflow (step dirs, status, pid)."""
        return self.dflow_dir / self.read().run_id

    # -- creation and lookup ------------------------------------------------------------------
    @staticmethod
    def new_path(runs_root: Path, workflow: str, name: str | None = None) -> Path:
        """Where a new run goes; nothing is created. `name` defaults to
        `<workflow>-<YYYYmmdd-HHMMSS>` (with `-2`, `-3`... for runs started in the same second)."""
        if name is not None:
            check_run_name(name)
            path = runs_root / name
            if path.exists():
                raise UserError(f"a run named {name!r} already exists: {path}")
            return path
        stem = f"{_slug(workflow)}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        path, i = runs_root / stem, 1
        while path.exists():
            i += 1
            path = runs_root / f"{stem}-{i}"
        return path

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        workflow: str,
        workflow_ref: str,
        config_file: Path,
        reuse_from: Path | None = None,
        status_table: str | None = None,
    ) -> RunDir:
        """Make the run directory at `path` (from `new_path`) and its run.json."""
        path.mkdir(parents=True)
        run = cls(path.resolve())
        shutil.copyfile(config_file, run.config_path)
        run.dflow_dir.mkdir()
        run.results_dir.mkdir()
        run.write(RunRecord(
            workflow=workflow, workflow_ref=workflow_ref, run_id=run.name, created=now_iso(),
            source_config=str(config_file.resolve()),
            reuse_from=str(reuse_from) if reuse_from else None, status_table=status_table))
        return run

    @classmethod
    def open(cls, ref: str | Path, runs_root: Path | None = None) -> RunDir:
        """A run given as a path or as a run name under `runs_root` (default runs dir)."""
        candidates = [Path(ref)]
        if not Path(ref).is_absolute():
            candidates.append((runs_root or default_runs_root()) / ref)
        for cand in candidates:
            if (cand / "run.json").is_file():
                return cls(cand.resolve())
        where = runs_root or default_runs_root()
        known = sorted(p.parent.name for p in where.glob("*/run.json")) if where.is_dir() else []
        raise UserError(
            f"no run {str(ref)!r}: not a run directory, and no run of that name in {where}"
            + (f" (runs there: {', '.join(known)})" if known else ""))

    # -- run.json -----------------------------------------------------------------------------
    def _lock(self) -> FileLock:
        from filelock import FileLock

        return FileLock(str(self.path / ".run.json.lock"))

    def read(self) -> RunRecord:
        return RunRecord.from_json(self.record_path.read_text(encoding="utf-8", errors="replace"),
                                   source=self.record_path)

    def write(self, record: RunRecord) -> None:
        tmp = self.record_path.with_suffix(".json.tmp")
        tmp.write_text(record.to_json())
        os.replace(tmp, self.record_path)  # atomic: a reader never sees half a file

    def update(self, **changes: object) -> RunRecord:
        with self._lock():
            record = replace(self.read(), **changes)  # type: ignore[arg-type]
            self.write(record)
            return record

    def start_attempt(self, *, pid: int, resume: bool) -> RunRecord:
        with self._lock():
            record = self.read()
            record.attempts.append(Attempt(start=now_iso(), pid=pid, resume=resume))
            record.status = "running"
            record.error = None
            self.write(record)
            return record

    def end_attempt(self, *, exit_code: int, status: RunStatus, error: str | None = None,
                    outcome: str | None = None) -> None:
        with self._lock():
            record = self.read()
            if record.attempts:
                record.attempts[-1].end = now_iso()
                record.attempts[-1].exit = exit_code
            record.status = status
            record.error = error
            record.outcome = outcome
            self.write(record)

    # -- live state ---------------------------------------------------------------------------
    def driver_process(self) -> psutil.Process | None:
        """The driver process of this run when it is alive (a zombie counts as dead)."""
        import psutil

        record = self.read()
        if record.driver_pid is None:
            return None
        try:
            proc = psutil.Process(record.driver_pid)
            if record.driver_create_time is not None and abs(
                    proc.create_time() - record.driver_create_time) > 1.0:
                return None  # the pid was reused by another process
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.NoSuchProcess:
            return None

    def effective_status(self) -> RunStatus:
        """run.json's status, corrected to 'killed' when it says running but no driver lives."""
        record = self.read()
        if record.status == "running" and self.driver_process() is None:
            return "killed"
        return record.status

    def leftover_processes(self) -> list[psutil.Process]:
        """Processes left behind by this run's drivers: members of the driver's process group,
        and any process carrying the run's marker in its environment (programs started
        in a session of their own, e.g. through run_command, are found this way)."""
        import psutil

        record = self.read()
        marker = str(self.path)
        born_after = (record.driver_create_time or 0.0) - 1.0
        out = []
        for proc in psutil.process_iter(["pid", "create_time", "status"]):
            # a zombie has exited already; it waits for a parent that may never reap it
            if proc.pid == os.getpid() or proc.info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            try:
                in_group = (record.driver_pgid is not None
                            and os.getpgid(proc.pid) == record.driver_pgid
                            and (proc.info.get("create_time") or 0.0) >= born_after)
                if in_group or proc.environ().get(RUN_MARKER_ENV) == marker:
                    out.append(proc)
            except (ProcessLookupError, psutil.Error, PermissionError):
                continue
        return out

    def step_phases(self) -> dict[str, StepInfo]:
        """Leaf steps (pods) of the workflow: key -> StepInfo, read from dflow's step dirs."""
        try:
            wfdir = self.workflow_dir()
        except FileNotFoundError:
            return {}
        return read_step_phases(wfdir)


@dataclass(frozen=True)
class StepInfo:
    key: str
    name: str
    phase: str
    path: Path


def read_step_phases(wfdir: Path) -> dict[str, StepInfo]:
    """Every pod step under a dflow debug workflow dir with its phase (Pending, Running,
    Succeeded, Failed). Super-steps (Steps/DAG) are left out: they only group pods."""
    out: dict[str, StepInfo] = {}
    if not wfdir.is_dir():
        return out
    for entry in os.scandir(wfdir):
        if not entry.is_dir(follow_symlinks=False):
            continue
        stepdir = Path(entry.path)
        try:
            if (stepdir / "type").read_text().strip() != "Pod":
                continue
            phase = (stepdir / "phase").read_text().strip()
            name = (stepdir / "name").read_text().strip()
        except FileNotFoundError:
            continue  # a step dir being created right now
        out[entry.name] = StepInfo(key=entry.name, name=name, phase=phase or "Pending",
                                   path=stepdir)
    return out


def phase_counts(steps: dict[str, StepInfo]) -> Counter[str]:
    return Counter(info.phase for info in steps.values())


def check_run_name(name: str) -> None:
    if not _RUN_NAME.match(name):
        raise UserError(
            f"invalid run name {name!r}: use lowercase letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters (it becomes the dflow workflow id)")


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return slug[:40] or "run"
