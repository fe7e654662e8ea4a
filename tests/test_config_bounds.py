"""Every number a config can hold has a range (issue 19).

The test imports every module of every installed opshelf package, finds each pydantic model
defined there and each int or float inside its fields (also inside Optional, unions, lists,
tuples and dict values) and fails on one without both a lower and an upper bound: a
`opshelf.core.bounds` type, or `ge`/`gt` with `le`/`lt`. A new unbounded field fails here
until it gets a range or an entry, with its reason, in the allow-lists below.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing
from typing import Any

import annotated_types as at
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

import opshelf
from opshelf.core.bounds import Fraction, TemperatureK
from opshelf.core.config import StrictModel

#: models opshelf computes and writes (run records, step outputs, property contexts): no user
#: types them, so a range would only guard opshelf against itself
RECORD_MODELS = {
    "opshelf.cl.scheduler.IterationRecord",  # one iteration's figures, computed
    "opshelf.cl.scheduler.LoopState",  # the scheduler's counters, computed
    "opshelf.core.ops.labelling.TaskReport",  # one labelling task's outcome, computed
    "opshelf.props.defects.VacancySite",  # a site index found by spglib
    "opshelf.props.elastic.AppliedStrain",  # strains made from ElasticParams (bounded)
    "opshelf.props.eos.EosContext",  # volume ratios made from EosParams (bounded)
    "opshelf.props.gamma_surface.GammaSurfaceContext",  # geometry of the built cell
    "opshelf.props.stacking_fault.StackingFaultContext",  # geometry of the built slab
    "opshelf.props.surface.Slab",  # geometry of the built slab
    "opshelf.train.score.EnsembleScore",  # model errors, computed
    "opshelf.train.score.Errors",  # model errors, computed
}

#: "module.Model.field" of config fields whose numbers truly have no range (none today)
UNBOUNDED_FIELDS: set[str] = set()


def _modules() -> list[types.ModuleType]:
    return [importlib.import_module(info.name)
            for info in pkgutil.walk_packages(opshelf.__path__, "opshelf.")]


def opshelf_models() -> dict[str, type[BaseModel]]:
    """Every pydantic model defined in an opshelf module, by its dotted name."""
    found: dict[str, type[BaseModel]] = {}
    for module in _modules():
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseModel)
                    and obj.__module__.startswith("opshelf.")):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def _sides(metadata: tuple[Any, ...]) -> tuple[bool, bool]:
    """Whether `metadata` (annotated-types constraints, FieldInfos) bounds below / above."""
    low = high = False
    for item in metadata:
        if isinstance(item, at.Interval):
            low |= item.ge is not None or item.gt is not None
            high |= item.le is not None or item.lt is not None
        low |= isinstance(item, (at.Ge, at.Gt))
        high |= isinstance(item, (at.Le, at.Lt))
        if isinstance(item, FieldInfo):
            extra = item.json_schema_extra if isinstance(item.json_schema_extra, dict) else {}
            low |= bool({"minimum", "exclusiveMinimum"} & set(extra))
            high |= bool({"maximum", "exclusiveMaximum"} & set(extra))
            inner_low, inner_high = _sides(tuple(item.metadata))
            low, high = low or inner_low, high or inner_high
    return low, high


def unbounded_numbers(annotation: Any, metadata: tuple[Any, ...] = ()) -> list[str]:
    """The int/float types inside `annotation` without a lower and an upper bound."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return unbounded_numbers(base, metadata + tuple(extra))
    if annotation in (int, float):
        low, high = _sides(metadata)
        return [] if low and high else [annotation.__name__]
    if origin is None or origin is typing.Literal:
        return []
    # a field's own constraints reach the members of its union, not the items of a list
    keep = metadata if origin in (typing.Union, types.UnionType) else ()
    out: list[str] = []
    for arg in typing.get_args(annotation):
        if arg is not Ellipsis and arg is not type(None):
            out += unbounded_numbers(arg, keep)
    return out


def unbounded_fields(models: dict[str, type[BaseModel]]) -> list[str]:
    out = []
    for name, model in sorted(models.items()):
        if name in RECORD_MODELS:
            continue
        for field_name, field in model.model_fields.items():
            if f"{name}.{field_name}" in UNBOUNDED_FIELDS:
                continue
            if unbounded_numbers(field.annotation, (field,)):
                out.append(f"{name}.{field_name}: {field.annotation}")
    return out


def test_every_config_number_has_a_range() -> None:
    models = opshelf_models()
    # the walk sees the packages' configs (a sanity floor: 96 models on 2026-12-06)
    for expected in ("opshelf.fp.cp2k.Cp2kSettings", "opshelf.md.lammps.LammpsSettings",
                     "opshelf.cl.config.ClConfig", "opshelf.alloy.structures.Substitution",
                     "opshelf.core.execution.StepExecution"):
        assert expected in models, expected
    assert unbounded_fields(models) == []


def test_allow_lists_name_models_and_fields_that_exist() -> None:
    models = opshelf_models()
    assert RECORD_MODELS <= set(models), RECORD_MODELS - set(models)
    for dotted in UNBOUNDED_FIELDS:
        model, field = dotted.rsplit(".", 1)
        assert field in models[model].model_fields, dotted


class _Unbounded(StrictModel):
    plain: float = Field(1.0, description="no range")
    half: int = Field(1, ge=0, description="a lower bound only")
    listed: list[float] = Field(default_factory=list, description="items without a range")
    mapped: dict[str, int] = Field(default_factory=dict, description="values without a range")
    optional: int | None = Field(None, gt=0, description="lower bound only")


class _Bounded(StrictModel):
    typed: TemperatureK = Field(300.0, description="a bounds type")
    both: int = Field(1, ge=0, le=10, description="ge and le")
    listed: list[Fraction] = Field(default_factory=list, description="bounded items")
    optional: TemperatureK | None = Field(None, description="an optional bounds type")
    either: int | typing.Literal["auto"] = Field("auto", ge=1, le=4, description="union")


def test_the_walk_tells_bounded_from_unbounded() -> None:
    found = unbounded_fields({"x._Unbounded": _Unbounded, "x._Bounded": _Bounded})
    assert [line.split(":")[0] for line in found] == [
        f"x._Unbounded.{name}" for name in ("plain", "half", "listed", "mapped", "optional")]
