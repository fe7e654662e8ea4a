"""Run a dflow Workflow on this machine: dflow's debug mode, made dependable.

``run_locally`` configures debug mode, applies ``patches``, starts the run's fork server
(``forkserver``), submits the workflow synchronously in this process and returns its
final phase. State lives in ``<workdir>/<workflow id>/``: one directory per step (named by
its key when it has one) holding ``phase``, ``log.txt``, inputs and outputs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opshelf.core.errors import UserError
from opshelf.core.local import forkserver, patches
from opshelf.core.local.launcher_client import SOCKET_ENV, STARTING_ENV
from opshelf.core.local.stepmain import SYSPATH_ENV

if TYPE_CHECKING:
    from dflow import Workflow

logger = logging.getLogger(__name__)

#: Called with {step key: phase} about once per `progress_interval_s` and at the end.
ProgressCallback = Callable[[dict[str, str]], None]
CopyMethod = Literal["copy", "link", "symlink"]
#: Seconds to wait for the fork server's "ready" line (it imports dflow and the OPs).
SERVER_START_TIMEOUT_S = 120.0
FINAL_PHASES = ("Succeeded", "Failed")
#: Set to "0" to run every step in a fresh interpreter instead of forking it from the
#: run's fork server (e.g. for an OP library that must not be imported before a fork).
FORKSERVER_SWITCH_ENV = "OPSHELF_LOCAL_FORKSERVER"
#: In the run's workdir: the modules its last fork server preloaded (JSON list), so that a
#: resume can start the next one before it has built the workflow (`prestart_forkserver`)
FORKSERVER_MODULES_FILE = "forkserver.modules.json"


# ----------------------------------------------------------------------------- state


def workflow_dir(workdir: str | os.PathLike[str], workflow_id: str) -> Path:
    return Path(workdir) / workflow_id


def workflow_phase(workdir: str | os.PathLike[str], workflow_id: str) -> str | None:
    """The workflow's status file: Running, Succeeded, Failed (None: never started)."""
    try:
        return (workflow_dir(workdir, workflow_id) / "status").read_text().strip() or None
    except FileNotFoundError:
        return None


def step_phases(workdir: str | os.PathLike[str], workflow_id: str) -> dict[str, str]:
    """{step key: phase} for every step directory of the run, sorted by key.

    The key is the step's ``key`` when the workflow gave it one, otherwise dflow's
    generated ``<workflow id>-<step name>-<random>``. Phases: Pending, Running,
    Succeeded, Failed, Skipped. A phase file caught while dflow rewrites it reads as
    "Unknown".
    """
    wfdir = workflow_dir(workdir, workflow_id)
    phases: dict[str, str] = {}
    if not wfdir.is_dir():
        return phases
    for entry in sorted(wfdir.iterdir()):
        phase_file = entry / "phase"
        if entry.is_dir() and not entry.is_symlink() and phase_file.is_file():
            phases[entry.name] = phase_file.read_text().strip() or "Unknown"
    return phases


# ------------------------------------------------------------------------- fork server


def op_modules(workflow: Workflow) -> list[str]:
    """Modules defining the Python OPs of `workflow` (what the fork server preloads)."""
    from dflow.python import OP

    found: list[str] = []
    seen: set[int] = set()

    def visit_template(template: Any) -> None:
        if template is None or id(template) in seen:
            return
        seen.add(id(template))
        op_class = getattr(template, "op_class", None)
        if op_class is not None:
            cls = type(op_class) if isinstance(op_class, OP) else op_class
            func = getattr(cls, "func", None) or getattr(op_class, "func", None)
            module = getattr(func, "__module__", None) or cls.__module__
            if module not in ("__main__", "__mp_main__") and module not in found:
                found.append(module)
        for step in getattr(template, "steps", None) or []:
            for s in step if isinstance(step, list) else [step]:
                visit_step(s)
        for task in getattr(template, "tasks", None) or []:
            visit_step(task)

    def visit_step(step: Any) -> None:
        visit_template(getattr(step, "template", None))
        for extra in ("prepare_step", "check_step"):
            if getattr(step, extra, None) is not None:
                visit_step(getattr(step, extra))

    visit_template(workflow.entrypoint)
    return found


#: The keys of an EngineSpec dict (opshelf.core.engine): a step parameter holding a dict
#: with a `name` of an installed engine and no other keys names an engine.
_ENGINE_SPEC_KEYS = frozenset({"name", "settings", "profile"})


def _walk_templates(workflow: Workflow) -> Iterator[Any]:
    """Every template of `workflow` and every step (each once), depth first."""
    seen: set[int] = set()
    stack: list[Any] = [workflow.entrypoint]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.append(getattr(item, "template", None))
        for extra in ("prepare_step", "check_step"):
            stack.append(getattr(item, extra, None))
        for step in getattr(item, "steps", None) or []:
            stack.extend(step if isinstance(step, list) else [step])
        stack.extend(getattr(item, "tasks", None) or [])


def declared_modules(workflow: Workflow) -> list[str]:
    """Modules the workflow's OP classes and engines ask the fork server to preload.

    - an OP class's ``preload_modules`` (class attribute, module names): libraries its
      ``execute`` imports lazily (pymatgen, phonopy, ...);
    - every engine named by a step parameter (an EngineSpec dict, at any depth of a dict
      or list value): the module of its ``opshelf.engines`` entry point and the engine
      class's ``preload_modules``. Without this each step that runs an engine task paid
      the import of the engine and of what it reads its results with.
    """
    from dflow.python import OP

    from opshelf.core.plugins import _entry_points

    engines = _entry_points("opshelf.engines")
    found: list[str] = []
    named: set[str] = set()

    def add(modules: Any) -> None:
        for module in modules or ():
            if isinstance(module, str) and module not in found:
                found.append(module)

    def scan(value: Any, depth: int = 0) -> None:
        if depth > 8:
            return
        if isinstance(value, dict):
            name = value.get("name")
            if isinstance(name, str) and name in engines and set(value) <= _ENGINE_SPEC_KEYS:
                named.add(name)
            for item in value.values():
                scan(item, depth + 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                scan(item, depth + 1)

    for item in _walk_templates(workflow):
        op_class = getattr(item, "op_class", None)
        if op_class is not None:
            add(getattr(type(op_class) if isinstance(op_class, OP) else op_class,
                        "preload_modules", ()))
        inputs = getattr(item, "inputs", None)
        for parameter in (getattr(inputs, "parameters", None) or {}).values():
            scan(getattr(parameter, "value", None))
    for name in sorted(named):
        add([engines[name].module])
        try:
            add(getattr(engines[name].load(), "preload_modules", ()))
        except Exception as exc:  # the step that uses it reports the error itself
            logger.warning("engine %r does not load (%r); not preloading it", name, exc)
    return found


def preload_modules(workflow: Workflow) -> list[str]:
    """What the fork server of `workflow` imports before it serves: the OP modules, then
    the modules its OPs and engines declare (``declared_modules``)."""
    modules = op_modules(workflow)
    return modules + [m for m in declared_modules(workflow) if m not in modules]


def _extra_sys_path() -> list[str]:
    """Entries of this interpreter's sys.path that a fresh one would not have (a test
    directory pytest inserted, a PYTHONPATH, ...): steps must import what we import."""
    import site

    fresh = set(site.getsitepackages() + [site.getusersitepackages()])
    fresh.update(p for p in sys.path if p.startswith(sys.base_prefix) or p.startswith(sys.prefix))
    return [p for p in sys.path if p and p not in fresh and os.path.isdir(p)]


class ForkServerProcess:
    """The fork server of one run, as seen from the driver."""

    def __init__(self, proc: subprocess.Popen[bytes], socket_path: str, sock_dir: str | None,
                 log_path: Path, modules: list[str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.proc = proc
        self.socket_path = socket_path
        self._sock_dir = sock_dir
        self.log_path = log_path
        self.modules = list(modules or [])
        self.env = dict(env or {})

    @classmethod
    def start(cls, modules: list[str], log_path: Path, env: Mapping[str, str]
              ) -> ForkServerProcess | None:
        """Start it and wait until it serves. None (after a logged warning naming the
        log) when it cannot start: steps then run in fresh interpreters, slower."""
        return cls.launch(modules, log_path, env).ready()

    @classmethod
    def launch(cls, modules: list[str], log_path: Path, env: Mapping[str, str]
               ) -> ForkServerProcess:
        """Start it without waiting: a step launched before it serves waits for it
        (`launcher_client`'s STARTING_ENV); `ready()` waits here instead."""
        # AF_UNIX paths are limited to 107 bytes: beside the log when the path is short
        # enough (nothing is left behind in /tmp by a killed run), else a private tmp dir
        # (one per driver process: two runs may share a directory)
        socket_path = str(log_path.with_name(f"forkserver-{os.getpid()}.sock"))
        sock_dir = None
        if len(socket_path.encode()) > 100:
            sock_dir = tempfile.mkdtemp(prefix="opshelf-fs-")
            socket_path = os.path.join(sock_dir, "socket")
        elif os.path.exists(socket_path):
            os.unlink(socket_path)  # left by a killed run whose pid we now have
        log = open(log_path, "ab")
        try:
            # same process group as the driver (no new session): killpg reaches it
            proc = subprocess.Popen(
                [sys.executable, "-m", "opshelf.core.local.forkserver",
                 "--socket", socket_path, *modules],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                cwd=log_path.parent, env=dict(env),
            )
        finally:
            log.close()
        log_path.with_name(FORKSERVER_MODULES_FILE).write_text(json.dumps(modules))
        return cls(proc, socket_path, sock_dir, log_path, modules, env)

    def ready(self) -> ForkServerProcess | None:
        """Wait until it serves: itself, or None (after a logged warning) when it cannot."""
        server, log_path = self, self.log_path
        ready = server._wait_ready()
        if not ready:
            logger.warning("opshelf fork server did not start (see %s); local steps run in "
                           "fresh interpreters instead, about 0.3 s slower each", log_path)
            server.stop()
            return None
        return server

    def _wait_ready(self) -> bool:
        import selectors

        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=SERVER_START_TIMEOUT_S):
                return False
        line = self.proc.stdout.readline()
        self.proc.stdout.close()
        return line == forkserver.READY_LINE

    def stop(self) -> None:
        """Close its stdin (it stops serving and reaps its children), then wait. A server
        still importing (the workflow ended before any step needed it) served nothing and
        is killed."""
        if not os.path.exists(self.socket_path) and self.proc.poll() is None:
            logger.info("opshelf fork server %s stopped before it served", self.proc.pid)
            self.proc.kill()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            import psutil

            try:  # its children first: a killed server no longer reaps them
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            logger.warning("opshelf fork server %s did not stop; killing it and %d process(es) "
                           "it forked: %s", self.proc.pid, len(children),
                           ", ".join(str(c.pid) for c in children) or "none")
            for child in children:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode not in (0, -9):
            logger.warning("opshelf fork server exited with status %s (see %s)",
                           self.proc.returncode, self.log_path)
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
        elif os.path.exists(self.socket_path):
            os.unlink(self.socket_path)


# ---------------------------------------------------------------------------- progress

# A progress thread must never be inside its callback (holding a stdout or logging
# lock) while dflow forks a pool worker, or the worker could deadlock on that lock.
# Every fork waits for this lock; the thread holds it while it reports.
_FORK_GUARD = threading.RLock()  # re-entrant: a callback that forks must not deadlock
_fork_hooks_registered = False


def _register_fork_guard() -> None:
    global _fork_hooks_registered
    if not _fork_hooks_registered:
        os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                            after_in_child=_FORK_GUARD.release)
        _fork_hooks_registered = True


@contextmanager
def _progress_reporter(progress: ProgressCallback | None, workdir: Path, workflow_id: str,
                       interval_s: float) -> Iterator[None]:
    if progress is None:
        yield
        return
    _register_fork_guard()
    stop = threading.Event()
    failed: list[BaseException] = []

    def report() -> None:
        while not stop.wait(interval_s):
            with _FORK_GUARD:
                try:
                    progress(step_phases(workdir, workflow_id))
                except Exception as exc:  # a broken display must not break the run
                    logger.warning("progress callback failed, no more progress: %r", exc)
                    failed.append(exc)
                    return

    thread = threading.Thread(target=report, name="opshelf-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if not failed:
            progress(step_phases(workdir, workflow_id))


# ------------------------------------------------------------------------------- run


def use_local_mode(workdir: str | os.PathLike[str]) -> None:
    """Switch dflow to local (debug) mode for BUILDING a workflow that will run in `workdir`.

    Building must already happen in debug mode: otherwise a Step uploads Python packages to
    an object store, and `upload_artifact` copies files to `<debug_workdir>/upload/...`,
    where debug_workdir defaults to the current directory (it littered source trees).
    """
    from dflow import config

    path = Path(workdir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    config["mode"] = "debug"
    config["debug_workdir"] = str(path)


@contextmanager
def _dflow_debug_config(workdir: Path, copy_method: CopyMethod) -> Iterator[None]:
    from dflow import config

    saved = dict(config)
    config["mode"] = "debug"
    config["debug_workdir"] = str(workdir)
    config["debug_copy_method"] = copy_method
    config["detach"] = False  # synchronous: run_locally returns the final phase
    if config.get("debug_pool_workers") is None:
        config["debug_pool_workers"] = os.cpu_count() or 1
    try:
        yield
    finally:
        config.clear()
        config.update(saved)


@contextmanager
def _environ(updates: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _pid_never_used() -> int:
    """A pid the kernel never hands out (pids are < pid_max)."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 4194304  # Linux's upper limit of pid_max


def _prepare_resume(wfdir: Path) -> None:
    """Let dflow restart the run in `wfdir`, unless another live process runs it.

    dflow restarts a workflow only when the process in ``<wfdir>/pid`` is not
    *running*, as psutil sees it: our own process always is (so resubmitting from the
    same process did nothing), while a live driver blocked on I/O is "sleeping" (so
    dflow would start a second driver on the same files). We decide here instead.
    """
    import psutil

    pid_file = wfdir / "pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        pid = None
    if pid is not None and pid != os.getpid() and (wfdir / "status").exists() \
            and (wfdir / "status").read_text().strip() == "Running":
        try:
            proc = psutil.Process(pid)
            # a pid reused by a later process is not our driver
            alive = proc.create_time() <= pid_file.stat().st_mtime + 1 and \
                proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if alive:
            raise UserError(f"run {wfdir} is still running in process {pid}; "
                            "stop it before resuming")
    pid_file.write_text(str(_pid_never_used()))


def _step_env() -> dict[str, str]:
    """What a step's environment adds to ours (the fork server's too)."""
    return {
        "PATH": patches.step_path(os.environ.get("PATH")),
        SYSPATH_ENV: os.pathsep.join(_extra_sys_path()),
    }


def prestart_forkserver(workdir: str | os.PathLike[str]) -> ForkServerProcess | None:
    """Start the fork server of a run being resumed, with the modules its last server
    preloaded, before the workflow is built: its imports (1-4 s) overlap the driver's own
    imports and build instead of following them. Give it to `run_locally`, which uses it
    when the built workflow wants the same modules and otherwise replaces it. None when
    the run never started a server or the fork server is switched off."""
    record = Path(workdir) / FORKSERVER_MODULES_FILE
    if os.environ.get(FORKSERVER_SWITCH_ENV, "1") == "0" or not record.is_file():
        return None
    try:
        modules = json.loads(record.read_text())
    except ValueError as exc:
        logger.warning("ignoring %s (%r): the fork server starts after the build", record, exc)
        return None
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        logger.warning("ignoring %s (not a list of module names)", record)
        return None
    return ForkServerProcess.launch(modules, Path(workdir) / "forkserver.log",
                                    {**os.environ, **_step_env()})


def _forkserver_for(workflow: Workflow, workdir: Path, step_env: Mapping[str, str],
                    started: ForkServerProcess | None) -> ForkServerProcess | None:
    """`started` when it preloads what `workflow` needs, else a new server (or None when
    the fork server is switched off). Not waited for: its imports overlap dflow's start
    (a resume's walk over the finished steps); the first steps wait for it."""
    if os.environ.get(FORKSERVER_SWITCH_ENV, "1") == "0":
        if started is not None:
            started.stop()
        return None
    modules = preload_modules(workflow)
    env = {**os.environ, **step_env}
    if started is not None:
        if started.modules == modules and started.env == env and started.proc.poll() is None:
            return started
        logger.info("the fork server started early preloads other modules or has another "
                    "environment; starting another")
        started.stop()
    return ForkServerProcess.launch(modules, workdir / "forkserver.log", env)


def run_locally(workflow: Workflow, workdir: str | os.PathLike[str], *, resume: bool = False,
                progress: ProgressCallback | None = None, copy_method: CopyMethod = "copy",
                progress_interval_s: float = 1.0,
                forkserver: ForkServerProcess | None = None) -> str:
    """Run `workflow` on this machine in dflow's debug mode; return "Succeeded" or "Failed".

    Steps run under this interpreter (``sys.executable``) with this venv's bin/ first on
    PATH, through a fork server that has imported dflow, the workflow's OP modules and
    the modules its OPs and engines declare (``preload_modules``).
    Up to ``os.cpu_count()`` steps of a fan-out run at once (unless dflow's
    ``debug_pool_workers`` is set).

    The workflow's id names its directory ``<workdir>/<id>`` (the workflow's name when
    it has no id). ``resume=False`` refuses an existing directory; ``resume=True``
    continues it, skipping every step whose phase is Succeeded (a step is matched by
    its key, or by its position in its parent). ``copy_method``: how a step receives its
    input artifacts; "copy" (default) keeps a step that edits an input in place from
    corrupting the step that produced it, "link"/"symlink" save space and time.
    ``OPSHELF_LOCAL_FORKSERVER=0`` in the environment runs every step in a fresh
    interpreter instead of the fork server.

    `progress` is called from a helper thread with ``step_phases(...)`` every
    `progress_interval_s` and once at the end; forks wait while it runs. `forkserver`: one
    started by `prestart_forkserver` (run_locally stops it in every case).
    """
    try:
        return _run_locally(workflow, Path(workdir).resolve(), resume, progress, copy_method,
                            progress_interval_s, forkserver)
    finally:
        if forkserver is not None:
            forkserver.stop()  # a no-op when it was used (and stopped) or replaced


def _run_locally(workflow: Workflow, workdir: Path, resume: bool,
                 progress: ProgressCallback | None, copy_method: CopyMethod,
                 progress_interval_s: float, started: ForkServerProcess | None) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    if workflow.id is None:
        workflow.id = workflow.name
    wfdir = workflow_dir(workdir, workflow.id)
    if wfdir.exists():
        if not resume:
            raise UserError(f"{wfdir} already exists: resume that run or choose another "
                            "workflow id or directory")
        _prepare_resume(wfdir)

    patches.apply()
    if workflow_phase(workdir, workflow.id) == "Succeeded":
        return "Succeeded"  # dflow would only say so; no need to start a server
    step_env: dict[str, str] = _step_env()
    server = _forkserver_for(workflow, workdir, step_env, started)
    if server is not None:
        step_env[SOCKET_ENV] = server.socket_path
        step_env[STARTING_ENV] = f"{server.proc.pid}:{SERVER_START_TIMEOUT_S}"
    try:
        with _dflow_debug_config(workdir, copy_method), _environ(step_env), \
                _progress_reporter(progress, workdir, workflow.id, progress_interval_s):
            submitted = time.monotonic()
            workflow.submit()
            logger.info("workflow %s ended in %.1f s", workflow.id, time.monotonic() - submitted)
    finally:
        if server is not None:
            server.stop()
    phase = workflow_phase(workdir, workflow.id)
    return phase if phase in FINAL_PHASES else "Failed"
