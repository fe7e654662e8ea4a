"""`assert_op_conformance`: the checks every opshelf OP passes, usable from pytest.

1. Signatures: every input and output sign is a dflow Artifact, Parameter or BigParameter
   with a real type, and `execute` is wrapped in `OP.exec_sign_check` (so dflow enforces
   the signs at run time).
2. It runs: a one-step workflow in dflow's local mode (`opshelf.core.local.run_locally`)
   with `good_inputs` succeeds and produces every declared output.
3. It refuses bad input clearly: each bad input, run in-process, raises an exception whose
   message matches the given pattern (it names the problem).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConformanceError(AssertionError):
    """An OP breaks the opshelf OP contract; the message lists every problem."""


@dataclass(frozen=True)
class BadInput:
    """Inputs that must be rejected: `changes` are laid over the good inputs (a value of
    `REMOVE` drops the key), and the error message must match the regex `match`."""

    changes: Mapping[str, Any]
    match: str
    why: str = ""


#: In `BadInput.changes`: drop this input.
REMOVE = object()


@dataclass
class ConformanceResult:
    """What the good run produced: output parameters and artifact paths, by name."""

    parameters: dict[str, Any]
    artifacts: dict[str, Any]
    workflow_dir: Path


def signature_problems(op_class: type) -> list[str]:
    """Problems with the declared input/output signs of `op_class` (empty: fine)."""
    from dflow.python import OP, Artifact, BigParameter, OPIOSign, Parameter

    problems: list[str] = []
    if not (isinstance(op_class, type) and issubclass(op_class, OP)):
        return [f"{op_class!r} is not a dflow OP subclass"]
    for side, getter in (("input", op_class.get_input_sign), ("output", op_class.get_output_sign)):
        try:
            sign = getter()
        except Exception as exc:
            problems.append(f"get_{side}_sign() raised {type(exc).__name__}: {exc}")
            continue
        if not isinstance(sign, OPIOSign):
            problems.append(f"get_{side}_sign() returns {type(sign).__name__}, not OPIOSign")
            continue
        if side == "output" and not sign:
            problems.append("declares no outputs")
        for name, entry in sign.items():
            if not isinstance(entry, (Artifact, Parameter, BigParameter)):
                problems.append(f"{side} {name!r}: a bare {entry!r}; declare it as "
                                "Artifact(...), Parameter(...) or BigParameter(...)")
                continue
            declared = getattr(entry, "type", None)
            if declared is None or declared is typing.Any or declared is object:
                problems.append(f"{side} {name!r}: no type ({entry!r})")
    if getattr(op_class.execute, "__wrapped__", None) is None:
        problems.append("execute is not decorated with @OP.exec_sign_check")
    return problems


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _run_good(op_class: type, good_inputs: Mapping[str, Any], workdir: Path,
              problems: list[str]) -> ConformanceResult | None:
    from dflow import Workflow, upload_artifact
    from dflow.python import Artifact

    from opshelf.core.dflow_build import make_step
    from opshelf.core.execution import StepExecution
    from opshelf.core.local import run_locally, use_local_mode

    use_local_mode(workdir)

    input_sign = op_class.get_input_sign()
    unknown = sorted(set(good_inputs) - set(input_sign))
    if unknown:
        problems.append(f"good_inputs name undeclared inputs {unknown}")
        return None
    artifacts: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    for name, value in good_inputs.items():
        if isinstance(input_sign[name], Artifact):
            artifacts[name] = upload_artifact(value)
        else:
            parameters[name] = value
    key = "conformance"
    step = make_step(key, op_class, StepExecution(), parameters=parameters, artifacts=artifacts,
                     key=key)
    wf_id = re.sub(r"[^a-z0-9-]", "-", f"conformance-{op_class.__name__.lower()}")
    workflow = Workflow(name=wf_id, id=wf_id)
    workflow.add(step)
    phase = run_locally(workflow, workdir)
    wf_dir = workdir / wf_id
    if phase != "Succeeded":
        log = wf_dir / key / "log.txt"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no log)"
        problems.append(f"the good inputs did not run through dflow's local mode (phase "
                        f"{phase}); step log {log}:\n{tail}")
        return None
    from opshelf.core.workflows.outputs import local_step_outputs

    try:
        produced = local_step_outputs(workdir, workflow, key)
    except FileNotFoundError as exc:
        problems.append(str(exc))
        return None
    result = ConformanceResult({}, {}, wf_dir)
    for name, entry in op_class.get_output_sign().items():
        if isinstance(entry, Artifact):
            path = produced.artifacts.get(name)
            if path is None or not _holds_a_file(path):
                # dflow's local mode turns a path the OP never wrote into an empty folder
                problems.append(f"output artifact {name!r} was not produced (no file in it)")
            else:
                result.artifacts[name] = path
        elif name not in produced.parameters:
            problems.append(f"output parameter {name!r} was not produced")
        else:
            result.parameters[name] = produced.parameters[name]
    return result


def _holds_a_file(path: Path) -> bool:
    if path.is_file():
        return True
    return path.is_dir() and any(p.is_file() and ".dflow" not in p.parts
                                 for p in path.rglob("*"))


def _check_bad(op_class: type, good_inputs: Mapping[str, Any], bad: BadInput, index: int,
               workdir: Path, problems: list[str]) -> None:
    from dflow.python import OPIO

    inputs = {key: copy.deepcopy(value) for key, value in good_inputs.items()}
    for key, value in bad.changes.items():
        if value is REMOVE:
            inputs.pop(key, None)
        else:
            inputs[key] = value
    label = f"bad input #{index}" + (f" ({bad.why})" if bad.why else f" {dict(bad.changes)!r}")
    try:
        with _chdir(workdir / f"bad-input-{index:02d}"):
            op_class().execute(OPIO(inputs))
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        if re.search(bad.match, message) is None:
            problems.append(f"{label}: rejected, but the message does not match "
                            f"{bad.match!r}: {message[:500]}")
        return
    problems.append(f"{label}: accepted; it must raise an error naming the problem")


def assert_op_conformance(
    op_class: type,
    *,
    good_inputs: Mapping[str, Any],
    bad_inputs: Sequence[BadInput] = (),
    workdir: str | os.PathLike[str],
) -> ConformanceResult:
    """Raise ConformanceError listing every way `op_class` breaks the OP contract.

    good_inputs: input name -> value; artifacts as local paths (or lists of paths).
    bad_inputs: each must be rejected with an error message matching its pattern.
    Returns the outputs of the good run for further checks.
    """
    workdir = Path(workdir).resolve()
    problems = signature_problems(op_class)
    if problems:  # running an OP with broken signs only adds noise
        raise ConformanceError(f"{getattr(op_class, '__name__', op_class)}:\n  - "
                               + "\n  - ".join(problems))
    result = _run_good(op_class, good_inputs, workdir / "local", problems)
    for index, bad in enumerate(bad_inputs):
        if not isinstance(bad, BadInput):
            raise TypeError(f"bad_inputs[{index}]: use testing.BadInput(changes, match)")
        _check_bad(op_class, good_inputs, bad, index, workdir, problems)
    if problems:
        raise ConformanceError(f"{op_class.__name__}:\n  - " + "\n  - ".join(problems))
    assert result is not None
    return result
