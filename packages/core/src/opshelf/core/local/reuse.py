"""Reuse the finished steps of an earlier run (`opshelf rerun RUN NEW_CONFIG`).

dflow's debug mode decides to skip a step in `Step.exec_pod`: when the step's dir already
exists in the workflow dir with phase "Succeeded", its recorded outputs are loaded and the
step does not run. This module wraps `exec_pod` at exactly that point: before dflow looks,
a step that does not exist yet in the new run is looked up in the earlier run (by key, or
for a step without a key by its position in the parent's `children` map) and, when

- the earlier step Succeeded,
- it ran the same OP template (name, image and source of the OP class),
- its recorded input parameters equal the new ones, serialised the way dflow records them,
- and its input artifacts have the same contents (files hashed, symlinks followed),

its dir is copied into the new run (outputs hard-linked where possible, so the new run
does not depend on the old one), and dflow then skips it as if it had finished here.
Any doubt (a file missing, a comparison failing) means the step runs: reuse is an
optimisation, never a reason to fail or to return stale results.

`install()` is applied by every opshelf driver so that every step records the fingerprint
of its template (`opshelf-template` in its dir); `enable(old_workflow_dir)` turns reuse on.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import os
import shutil
import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Any

log = logging.getLogger("opshelf.reuse")

#: environment variable holding the earlier run's dflow workflow dir (inherited by workers)
REUSE_ENV = "OPSHELF_REUSE_FROM"
FINGERPRINT_FILE = "opshelf-template"
REUSED_MARKER = "opshelf-reused-from"

_installed = False


def enable(old_workflow_dir: Path) -> None:
    """Reuse matching Succeeded steps of the workflow in `old_workflow_dir` from now on."""
    if not (old_workflow_dir / "status").is_file():
        from opshelf.core.errors import MissingInputError

        raise MissingInputError(f"cannot reuse steps: {old_workflow_dir} is not a dflow "
                                "workflow directory (no 'status' file)")
    os.environ[REUSE_ENV] = str(old_workflow_dir.resolve())
    install()


def install() -> None:
    """Wrap dflow's `Step.exec_pod` (idempotent)."""
    global _installed
    if _installed:
        return
    from dflow.step import Step

    original = Step.exec_pod

    @functools.wraps(original)
    def exec_pod(self: Any, scope: Any, parameters: Any, item: Any = None,
                 order: Any = None) -> Any:
        source = os.environ.get(REUSE_ENV)
        if source:
            try:
                _seed_from(Path(source), self, scope, parameters, item, order)
            except Exception as exc:  # reuse is an optimisation: on any doubt the step runs
                log.warning("step %s not reused: %s: %s", self.name, type(exc).__name__, exc)
        result = original(self, scope, parameters, item, order)
        stepdir = getattr(self, "stepdir", None)  # set by exec_pod when the step really ran
        if stepdir and os.path.isdir(stepdir):
            Path(stepdir, FINGERPRINT_FILE).write_text(template_fingerprint(self.template))
        return result

    Step.exec_pod = exec_pod
    _installed = True


def template_fingerprint(template: Any) -> str:
    """What identifies the code a step runs: the OP class and its source (or the script of a
    script template) and the image. Not the template's name: dflow adds a random suffix."""
    parts = [f"image={getattr(template, 'image', '')}"]
    op_class = getattr(template, "op_class", None)
    if op_class is not None:
        op_class = op_class if isinstance(op_class, type) else type(op_class)
        try:
            source = inspect.getsource(op_class)
        except (OSError, TypeError):
            source = ""
        parts.append(f"op={op_class.__module__}.{op_class.__qualname__}")
        parts.append("source=" + hashlib.sha256(source.encode()).hexdigest())
    else:
        parts.append("script=" + hashlib.sha256(str(getattr(template, "script", "")).encode())
                     .hexdigest())
    return "\n".join(parts) + "\n"


def _seed_from(source: Path, step: Any, scope: Any, parameters: Any, item: Any,
               order: Any) -> None:
    wfdir = Path(os.getcwd())  # dflow runs every step with the workflow dir as cwd
    registered = True
    if "dflow_key" in parameters:
        step_id = parameters["dflow_key"].value
    else:
        step_id = step.get_children(scope, order)
        if step_id is None:  # first visit in the new run: where was this step last time?
            registered = False
            step_id = _old_child(source, wfdir, scope, order)
            if step_id is None:
                return
    new_dir, old_dir = wfdir / step_id, source / step_id
    if new_dir.exists() or not old_dir.is_dir():
        return
    why_not = _differs(old_dir, step, scope, parameters, item, wfdir)
    if why_not:
        log.info("step %s not reused: %s", step_id, why_not)
        return
    _copy_step_dir(old_dir, new_dir)
    if not registered:
        step.add_children(scope, step_id, order)
    log.warning("step (key: %s) reused from %s", step_id, old_dir)


def _old_child(source: Path, wfdir: Path, scope: Any, order: Any) -> str | None:
    import json

    parent = Path(scope.stepdir) if scope.stepdir else wfdir
    children = source / parent.relative_to(wfdir) / "children"
    if not children.is_file():
        return None
    return json.loads(children.read_text()).get(order)


def _differs(old_dir: Path, step: Any, scope: Any, parameters: Any, item: Any,
             wfdir: Path) -> str | None:
    """Why the earlier step cannot stand in for this one (None: it can)."""
    import jsonpickle

    if _read(old_dir / "phase") != "Succeeded" or _read(old_dir / "type") != "Pod":
        return "the earlier step did not succeed"
    if _read(old_dir / FINGERPRINT_FILE) != template_fingerprint(step.template).strip():
        return "different OP template or code"
    old_pars = old_dir / "inputs" / "parameters"
    old_names = {p.name for p in old_pars.iterdir() if p.is_file()} if old_pars.is_dir() else set()
    if old_names != set(parameters):
        return "different input parameter names"
    for name, par in parameters.items():
        value = par.value if isinstance(par.value, str) else jsonpickle.dumps(par.value)
        if _read(old_pars / name, strip=False) != value:
            return f"input parameter {name!r} changed"
    # Materialise the new inputs exactly as dflow would, then compare contents.
    probe = Path(tempfile.mkdtemp(prefix=".opshelf-reuse-", dir=wfdir))
    try:
        step.record_input_artifacts(str(probe), deepcopy(step.inputs.artifacts), item, scope)
        new_arts, old_arts = probe / "inputs" / "artifacts", old_dir / "inputs" / "artifacts"
        new_names = {p.name for p in new_arts.iterdir()} if new_arts.is_dir() else set()
        old_names = {p.name for p in old_arts.iterdir()} if old_arts.is_dir() else set()
        if new_names != old_names:
            return "different input artifacts"
        for name in sorted(new_names):
            if content_hash(new_arts / name) != content_hash(old_arts / name):
                return f"input artifact {name!r} changed"
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return None


def _read(path: Path, *, strip: bool = True) -> str | None:
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text.strip() if strip else text


def content_hash(path: Path) -> str:
    """sha256 over a file's bytes, or over a directory's relative paths and file bytes
    (symlinks followed, dflow's `.dflow` metadata left out): equal contents give equal
    hashes wherever they live."""
    h = hashlib.sha256()
    if path.is_file():
        _hash_file(h, path)
    elif path.is_dir():
        for root, dirs, files in os.walk(path, followlinks=True):
            # dflow's `.dflow/<uuid>` catalogue files differ on every run for the same data
            dirs[:] = sorted(d for d in dirs if d != ".dflow")
            for name in sorted(files):
                file = Path(root, name)
                h.update(str(file.relative_to(path)).encode() + b"\0")
                _hash_file(h, file)
    else:
        h.update(b"<missing>")
    return h.hexdigest()


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: copy instead
        shutil.copy2(src, dst)


def _copy_step_dir(old_dir: Path, new_dir: Path) -> None:
    """Copy what dflow reads when it skips a step (phase, name, type, inputs, outputs) and
    the log; symlinks are resolved so the new run does not point into the old one.
    The step's workdir is not copied: its outputs are under outputs/."""
    tmp = new_dir.with_name(new_dir.name + ".opshelf-seed")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in ("inputs", "outputs"):
        if (old_dir / name).is_dir():
            shutil.copytree(old_dir / name, tmp / name, symlinks=False,
                            copy_function=_link_or_copy)
    for name in ("name", "type", "log.txt", FINGERPRINT_FILE):
        if (old_dir / name).is_file():
            shutil.copy2(old_dir / name, tmp / name)
    (tmp / REUSED_MARKER).write_text(str(old_dir) + "\n")
    (tmp / "phase").write_text("Succeeded")
    os.replace(tmp, new_dir)  # all at once: dflow never sees a half-seeded step
