"""The one fan-out builder: prep -> run (one sliced step per item) -> collect, as dflow Steps.

Every super-OP of the OP packages (opshelf-fp's label, opshelf-md's explore, opshelf-train's
ensemble, opshelf-props' make/run/post) and core's label workflow is declared with it, so
what a fan-out does is decided here once:

- keys: ``<block>--<prep>``, ``<block>--<run>-{{item}}``, ``<block>--<collect>`` (``StepKey``;
  `key_suffix` tells a second use in one block apart, e.g. cl's held-out labelling);
- retries, timeouts, grouping (``group_size``/``pool_size``, "auto" sized by `n_items`),
  executors and ``continue_on_success_ratio``: each step's ``StepExecution`` through
  ``make_step``;
- the run step slices the list the prep step hands out (``Fan.over``) and the per-item
  inputs and outputs it names; dflow gathers the outputs into lists.

``FanOutSteps`` makes a declaration a dflow Steps template (a super-OP a workflow nests);
``fan_out_steps`` lays the same steps out flat for a workflow without blocks (core's label:
top-level keys ``prep-tasks``, ``run-task-000003``, ``collect-labels``).

A declaration says where each OP input comes from with ``Ref``s: ``from_input("engine")``
(an input of the super-OP), ``from_prep("task_paths")``, ``from_run("labeled_data")``; any
other value is passed as given. Imported at build time only (it imports dflow).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dflow import (
    InputArtifact,
    InputParameter,
    Inputs,
    OutputArtifact,
    OutputParameter,
    Outputs,
    Step,
    Steps,
    argo_len,
    argo_sequence,
)
from dflow.python import OP

from opshelf.core.dflow_build import Mode, make_step
from opshelf.core.execution import StepExecution
from opshelf.core.keys import ITEM_FORMAT, StepKey

Source = Literal["input", "prep", "run", "collect"]


@dataclass(frozen=True)
class Ref:
    """Where a value comes from: an input of the super-OP or an output of one of its steps."""

    source: Source
    name: str


def from_input(name: str) -> Ref:
    return Ref("input", name)


def from_prep(name: str) -> Ref:
    return Ref("prep", name)


def from_run(name: str) -> Ref:
    """An output of the fan-out: the list of every slice's value."""
    return Ref("run", name)


def from_collect(name: str) -> Ref:
    return Ref("collect", name)


#: an input parameter of the super-OP without a default
REQUIRED = object()


@dataclass(frozen=True)
class Stage:
    """One step: its name (for `steps` overrides and its key), OP class, execution settings,
    and where each of the OP's inputs comes from (a ``Ref`` or a value)."""

    name: str
    op: type[OP]
    execution: StepExecution
    parameters: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Ref] = field(default_factory=dict)


@dataclass(frozen=True)
class Fan:
    """How the run stage fans out: over the items of the prep output parameter `over`;
    `sliced_parameters`/`sliced_artifacts` (run inputs) take one item each; the run OP's
    `output_parameters`/`output_artifacts` are gathered into lists."""

    over: str
    sliced_parameters: tuple[str, ...] = ()
    sliced_artifacts: tuple[str, ...] = ()
    output_parameters: tuple[str, ...] = ("report",)
    output_artifacts: tuple[str, ...] = ()

    def slices(self) -> dict[str, Any]:
        return {"slices": "int('{{item}}')", "input_parameter": list(self.sliced_parameters),
                "input_artifact": list(self.sliced_artifacts),
                "output_parameter": list(self.output_parameters),
                "output_artifact": list(self.output_artifacts)}


@dataclass(frozen=True)
class FanOut:
    """A super-OP: its inputs (parameter defaults, ``REQUIRED`` for none; artifacts, some
    optional; the parameter `block_id`, the block of its step keys, defaults to
    `block_id`), prep -> run fanned out by `fan` -> optional collect, and its outputs."""

    block_id: str
    parameters: Mapping[str, Any]
    artifacts: tuple[str, ...]
    prep: Stage
    run: Stage
    fan: Fan
    collect: Stage | None = None
    optional_artifacts: tuple[str, ...] = ()
    output_parameters: Mapping[str, Ref] = field(default_factory=dict)
    output_artifacts: Mapping[str, Ref] = field(default_factory=dict)

    def template_io(self) -> tuple[Inputs, Outputs]:
        """The dflow inputs and outputs of the super-OP (block_id always among them)."""
        parameters = {"block_id": InputParameter(value=self.block_id)}
        for name, default in self.parameters.items():
            parameters[name] = InputParameter() if default is REQUIRED \
                else InputParameter(value=default)
        artifacts = {name: InputArtifact(optional=name in self.optional_artifacts)
                     for name in (*self.artifacts, *self.optional_artifacts)}
        outputs = Outputs(parameters={n: OutputParameter() for n in self.output_parameters},
                          artifacts={n: OutputArtifact() for n in self.output_artifacts})
        return Inputs(parameters=parameters, artifacts=artifacts), outputs


def _stage_steps(declaration: FanOut, block: object, resolve_input: Callable[[str, bool], Any],
                 *, mode: Mode, n_items: int | None, key_suffix: str) -> dict[str, Step]:
    """The steps of `declaration` (prep, run, collect) by stage, keyed in `block`, each
    input of the super-OP taken from `resolve_input(name, artifact)`."""
    steps: dict[str, Step] = {}

    def resolve(value: Any, artifact: bool) -> Any:
        if not isinstance(value, Ref):
            return value
        if value.source == "input":
            return resolve_input(value.name, artifact)
        if value.source not in steps:
            raise ValueError(f"fan-out {declaration.block_id!r}: {value} refers to a later step")
        io = steps[value.source].outputs
        return (io.artifacts if artifact else io.parameters)[value.name]

    def add(source: Source, stage: Stage, key: StepKey, **fan: Any) -> Step:
        steps[source] = make_step(
            stage.name, stage.op, stage.execution, key=key, mode=mode,
            parameters={name: resolve(value, False) for name, value in stage.parameters.items()},
            artifacts={name: resolve(ref, True) for name, ref in stage.artifacts.items()},
            **fan)
        return steps[source]

    prep = add("prep", declaration.prep, StepKey.of(block, declaration.prep.name + key_suffix))
    over = prep.outputs.parameters[declaration.fan.over]
    add("run", declaration.run, StepKey.fan_out(block, declaration.run.name + key_suffix),
        slices=declaration.fan.slices(), n_items=n_items,
        with_sequence=argo_sequence(argo_len(over), format=ITEM_FORMAT))
    if declaration.collect is not None:
        add("collect", declaration.collect,
            StepKey.of(block, declaration.collect.name + key_suffix))
    return steps


def fan_out_steps(declaration: FanOut, *, parameters: Mapping[str, Any],
                  artifacts: Mapping[str, Any], block: str = "", mode: Mode = "local",
                  n_items: int | None = None) -> dict[str, Step]:
    """The steps of `declaration` laid out flat (prep, run, collect, by stage), for a
    workflow to add itself: its inputs given as values (`parameters`, defaults of the
    declaration for the others) and dflow artifacts; keys in `block` ("" for top-level
    steps: ``prep-tasks``, ``run-task-000003``)."""
    missing = [name for name, default in declaration.parameters.items()
               if default is REQUIRED and name not in parameters]
    unknown = sorted(set(parameters) - set(declaration.parameters))
    if missing or unknown:
        raise ValueError(f"fan-out {declaration.block_id!r}: parameters missing {missing}, "
                         f"unknown {unknown}")

    def resolve_input(name: str, artifact: bool) -> Any:
        if artifact:
            return artifacts.get(name)
        return parameters.get(name, declaration.parameters[name])

    return _stage_steps(declaration, block, resolve_input, mode=mode, n_items=n_items,
                        key_suffix="")


class FanOutSteps(Steps):
    """dflow Steps built from a ``FanOut`` declaration: the base of every super-OP.

    `mode`: "local" or "argo"; `n_items`: the expected item count, when known at build time
    (group_size "auto" packs the fan-out by it); `key_suffix`: appended to every step's key
    name (two uses of one super-OP in one block)."""

    def __init__(self, name: str, declaration: FanOut, *, mode: Mode = "local",
                 n_items: int | None = None, key_suffix: str = "") -> None:
        inputs, outputs = declaration.template_io()
        super().__init__(name=name, inputs=inputs, outputs=outputs)
        self.declaration = declaration

        def resolve_input(name: str, artifact: bool) -> Any:
            return (self.inputs.artifacts if artifact else self.inputs.parameters)[name]

        self.steps_by_stage = _stage_steps(
            declaration, self.inputs.parameters["block_id"], resolve_input, mode=mode,
            n_items=n_items, key_suffix=key_suffix)
        for step in self.steps_by_stage.values():
            self.add(step)
        for name, ref in declaration.output_artifacts.items():
            self.outputs.artifacts[name]._from = self._resolve_output(ref, artifact=True)
        for name, ref in declaration.output_parameters.items():
            self.outputs.parameters[name].value_from_parameter = self._resolve_output(
                ref, artifact=False)

    def _resolve_output(self, ref: Ref, *, artifact: bool) -> Any:
        io = self.steps_by_stage[ref.source].outputs
        return (io.artifacts if artifact else io.parameters)[ref.name]


__all__ = ["REQUIRED", "Fan", "FanOut", "FanOutSteps", "Ref", "Stage", "fan_out_steps",
           "from_collect", "from_input", "from_prep", "from_run"]
