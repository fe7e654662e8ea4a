"""Patches that make dflow's debug ("local") mode dependable. ``apply()`` is idempotent.

dflow 1.8.134's debug mode runs every step as a fresh ``python3 script`` and keeps its
state in files under ``debug_workdir``. Each patch below wraps a dflow method (none
copies one) and exists because of a failure seen on this project's machines
(FIELD-NOTES.md):

1. ``Step.get_children`` reads ``<stepdir>/children`` under the FileLock that
   ``add_children`` holds while rewriting it. Unlocked, parallel readers saw an empty
   file and the step died with ``JSONDecodeError`` (5 of 9 100-way fan-outs failed).
2. ``Step.add_children`` writes that file atomically (temporary file + rename), so a
   run killed mid-write leaves the old content, not a truncated file that breaks resume.
3. ``Step.exec_pod`` (one script step):
   - a template whose command is ``["python3"]`` (dflow's default) runs through
     opshelf's launcher under ``sys.executable`` instead of whatever ``python3`` is first
     on PATH (a venv not first on PATH made every step die with ModuleNotFoundError),
     and via the run's fork server (about 0.05 s a step instead of 0.4-0.9 s);
   - the step's PATH starts with ``Path(sys.executable).parent``, so programs of the
     venv (``dp``, ``lmp``) are found;
   - debug mode ignores a template's ``timeout`` and ``retry_on_transient_error``
     (Argo enforces them in a cluster): the launcher enforces the timeout, and this
     wrapper retries a step whose script exited 1 (dflow's TransientError; also any
     uncaught exception, exactly as dflow's Argo retry expression does), keeping each
     failed attempt's log as ``log.attempt-<n>.txt``;
   - the working directory is restored when a step fails (stock dflow leaves it in the
     failed step's workdir, so a following step with ``continue_on_failed`` resolves
     its paths against the wrong directory);
   - a stop signal (``opshelf stop``, Ctrl-C) waits, at most 10 s, for the running step to
     end, so that its last lines (a dispatcher step's cancelled jobs) reach its log.txt
     (``opshelf.core.local.stepstop``).
4. ``Step.exec_steps`` (a Steps template): an *optional* output artifact taken from a
   child step that failed under ``continue_on_failed`` is left out, as Argo does; stock
   debug mode raised AttributeError and failed the whole Steps (alloy's per-structure
   Steps expose each property's results this way). It is recorded as a dangling link,
   which the steps that consume it see as a missing optional artifact.
5. No credential in a step script: dflow embeds its ``config`` and ``s3_config`` (S3 keys
   and token read from the environment) into every script it writes, world-readable.
   ``PythonOPTemplate.render_script`` (build time, and debug mode's re-render per step) and
   every launched template drop them (``opshelf.core.secrets.scrub_step_script``); the step
   process reads them from its environment, as dflow does on import.
6. ``dflow.steps.ProcessPoolExecutor`` (the pool of a Steps' parallel list) pickles each
   submitted call when it is submitted. Stock, the pool's feeder thread pickles a call only
   when a worker frees up, while dflow's main thread already writes the outputs of the steps
   that finished: "RuntimeError: dictionary changed size during iteration", and the step
   whose call it was is marked failed without running (alloy's phonon block under load, with
   5 parallel property blocks on 2 workers). The pool of a sliced step's fan-out
   (``dflow.step.ProcessPoolExecutor``) is the same class and gets the same treatment.
7. A Step's ``parallel_steps`` (the per-item copies a sliced step makes when it runs) are
   left out when the Step is copied or pickled. dflow deep-copies the parent Steps (the
   scope) once the copies exist and hands that copy to every item's call, so each call
   carried all N copies: 0.27 MB a call at N=100, 5.1 MB at N=1000 (5.1 GB pickled for one
   fan-out). Only the fan-out that made them reads them, on the original Step.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import pickle
import sys
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

from opshelf.core.local.stepstop import deferred_stop
from opshelf.core.secrets import scrub_step_script

logger = logging.getLogger(__name__)

#: Template commands replaced by opshelf's launcher.
PYTHON_COMMANDS: tuple[list[str], ...] = (["python3"], ["python"])
LAUNCHER_CLIENT = str(Path(__file__).with_name("launcher_client.py"))
#: Exit status of dflow's TransientError (FatalError exits 2).
TRANSIENT_EXIT = 1

_PATCHED_MARK = "__opshelf_patched__"


def launcher_command(timeout_s: float | None = None) -> list[str]:
    """The argv prefix that runs a step script (dflow appends the script path).

    ``-S -I``: the client needs no site-packages and ignores PYTHON* variables, so it
    starts in ~0.02 s.
    """
    argv = [sys.executable, "-S", "-I", LAUNCHER_CLIENT]
    if timeout_s is not None:
        argv += ["--timeout", repr(float(timeout_s))]
    return argv


def step_path(path: str | None) -> str:
    """PATH for a step: this interpreter's bin directory first."""
    bin_dir = str(Path(sys.executable).parent)
    parts = [p for p in (path or "").split(os.pathsep) if p]
    if parts[:1] == [bin_dir]:
        return os.pathsep.join(parts)
    return os.pathsep.join([bin_dir, *parts])


def template_timeout_s(template: Any) -> float | None:
    """dflow stores a template's timeout as '<seconds>s' (Argo's duration string)."""
    value = getattr(template, "timeout", None)
    if value is None:
        return None
    text = str(value).strip()
    return float(text[:-1] if text.endswith("s") else text)


def _launch_template(template: Any) -> Any:
    """A shallow copy of `template` that runs through the launcher with the right PATH."""
    launched = copy.copy(template)
    envs = dict(getattr(template, "envs", None) or {})
    envs["PATH"] = step_path(envs.get("PATH", os.environ.get("PATH")))
    launched.envs = envs
    if isinstance(getattr(template, "script", None), str):
        launched.script = scrub_step_script(template.script)
    if list(getattr(template, "command", None) or []) in PYTHON_COMMANDS:
        launched.command = launcher_command(template_timeout_s(template))
    return launched


def read_launch_record(stepdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the launcher recorded about the last run of a step (None: not launched by it)."""
    try:
        return json.loads(Path(stepdir, "launcher.json").read_text())
    except FileNotFoundError:
        return None


def _is_transient(record: dict[str, Any] | None, template: Any) -> bool:
    if record is None:
        return False
    if record.get("timed_out"):
        return bool(getattr(template, "timeout_as_transient_error", False))
    return record.get("returncode") == TRANSIENT_EXIT


def _wrap_exec_pod(exec_pod: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(exec_pod)
    def exec_pod_launched(self: Any, scope: Any, parameters: Any, item: Any = None,
                          order: Any = None) -> Any:
        template = self.template
        retries = int(getattr(template, "retry_on_transient_error", None) or 0)
        cwd = os.getcwd()
        self.template = _launch_template(template)
        try:
            for attempt in range(1, retries + 2):
                try:
                    with deferred_stop(self):
                        return exec_pod(self, scope, parameters, item, order)
                except RuntimeError:
                    stepdir = getattr(self, "stepdir", None)
                    record = read_launch_record(stepdir) if stepdir else None
                    if attempt > retries or not _is_transient(record, template):
                        raise
                    log = Path(stepdir, "log.txt")
                    if log.exists():
                        log.replace(Path(stepdir, f"log.attempt-{attempt}.txt"))
                    os.remove(Path(stepdir, "launcher.json"))
                    logger.warning("step %s (%s) failed with a transient error, retry %d of %d",
                                   self.name, stepdir, attempt, retries)
                    os.chdir(cwd)
        finally:
            self.template = template
            os.chdir(cwd)

    setattr(exec_pod_launched, _PATCHED_MARK, True)
    return exec_pod_launched


def _wrap_get_children(get_children: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(get_children)
    def get_children_locked(self: Any, scope: Any, order: Any) -> Any:
        if scope.stepdir is None:
            return get_children(self, scope, order)
        from filelock import FileLock

        with FileLock(os.path.join(scope.stepdir, "children") + ".lock"):
            return get_children(self, scope, order)

    setattr(get_children_locked, _PATCHED_MARK, True)
    return get_children_locked


def _add_children_atomic(self: Any, scope: Any, step_id: str, order: str) -> None:
    """dflow's add_children (record that `order` of this scope ran as step `step_id`),
    written through a temporary file and a rename."""
    if scope.stepdir is None:
        return
    from filelock import FileLock

    children_file = os.path.join(scope.stepdir, "children")
    with FileLock(children_file + ".lock"):
        try:
            with open(children_file) as fh:
                children = json.load(fh)
        except FileNotFoundError:
            children = {}
        if order in children:
            return
        children[order] = step_id
        tmp = f"{children_file}.tmp-{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(children, fh)
        os.replace(tmp, children_file)


setattr(_add_children_atomic, _PATCHED_MARK, True)


#: where a missing optional output artifact of a Steps points (never created)
MISSING_ARTIFACT = os.path.join(os.sep, "opshelf-missing-optional-artifact")


class _OptionalFrom:
    """Stands in for an optional output artifact's ``_from`` during a Steps' run in debug
    mode: dflow evaluates it as a ``from_expression``; a source without a local path
    (its step failed) gives a path that does not exist instead of an AttributeError."""

    def __init__(self, source: Any, name: str) -> None:
        self.source, self.name = source, name

    def eval(self, scope: Any) -> str:
        from dflow.step import get_var

        try:
            return get_var(self.source, scope).local_path
        except AttributeError:
            logger.warning("optional output artifact %r: its source %s has none (failed)",
                           self.name, self.source)
            return os.path.join(MISSING_ARTIFACT, self.name)


def _wrap_exec_steps(exec_steps: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(exec_steps)
    def exec_steps_optional_outputs(self: Any, scope: Any, parameters: Any, *args: Any,
                                    **kwargs: Any) -> Any:
        outputs = getattr(getattr(self.template, "outputs", None), "artifacts", None) or {}
        swapped = {name: art._from for name, art in outputs.items()
                   if art.optional and art._from is not None and art.from_expression is None
                   and not str(art._from).startswith("{{workflow.")}
        for name, source in swapped.items():
            outputs[name]._from, outputs[name].from_expression = None, _OptionalFrom(source, name)
        try:
            return exec_steps(self, scope, parameters, *args, **kwargs)
        finally:
            for name, source in swapped.items():
                outputs[name]._from, outputs[name].from_expression = source, None

    setattr(exec_steps_optional_outputs, _PATCHED_MARK, True)
    return exec_steps_optional_outputs


def _wrap_render_script(render_script: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(render_script)
    def render_script_scrubbed(self: Any) -> Any:
        result = render_script(self)
        if isinstance(getattr(self, "script", None), str):
            self.script = scrub_step_script(self.script)
        return result

    setattr(render_script_scrubbed, _PATCHED_MARK, True)
    return render_script_scrubbed


def _call_pickled(payload: bytes) -> Any:
    """Run a call that `EagerPicklingPool.submit` pickled (in a pool worker)."""
    fn, args, kwargs = pickle.loads(payload)
    return fn(*args, **kwargs)


def _eager_pickling_pool(base: type) -> type:
    """`base` (dflow's ProcessPoolExecutor) whose `submit` pickles the call at once, in
    the submitting thread, so later changes to the objects it reaches cannot race it."""

    class EagerPicklingPool(base):  # type: ignore[misc,valid-type]
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            payload = bytes(ForkingPickler.dumps((fn, args, kwargs)))
            return super().submit(_call_pickled, payload)

    setattr(EagerPicklingPool, _PATCHED_MARK, True)
    return EagerPicklingPool


def _step_state(self: Any) -> dict[str, Any]:
    """A Step's state for copy and pickle, without its fan-out's per-item copies."""
    state = dict(self.__dict__)
    state.pop("parallel_steps", None)
    return state


setattr(_step_state, _PATCHED_MARK, True)


def apply() -> None:
    """Patch dflow's Step in this process (and in processes forked from it)."""
    import dflow.step
    import dflow.steps
    from dflow.python import PythonOPTemplate
    from dflow.step import Step

    for module in (dflow.steps, dflow.step):
        if not getattr(module.ProcessPoolExecutor, _PATCHED_MARK, False):
            module.ProcessPoolExecutor = _eager_pickling_pool(module.ProcessPoolExecutor)
    if not getattr(getattr(Step, "__getstate__", None), _PATCHED_MARK, False):
        Step.__getstate__ = _step_state

    if not getattr(PythonOPTemplate.render_script, _PATCHED_MARK, False):
        PythonOPTemplate.render_script = _wrap_render_script(PythonOPTemplate.render_script)
    if getattr(Step.exec_pod, _PATCHED_MARK, False):
        return
    Step.get_children = _wrap_get_children(Step.get_children)
    Step.add_children = _add_children_atomic
    Step.exec_pod = _wrap_exec_pod(Step.exec_pod)
    Step.exec_steps = _wrap_exec_steps(Step.exec_steps)


def applied() -> bool:
    from dflow.step import Step

    return bool(getattr(Step.exec_pod, _PATCHED_MARK, False))
