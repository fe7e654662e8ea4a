"""Typed, strict configuration (pydantic v2) read from YAML or JSON.

Every config model in opshelf derives from `StrictModel`: an unknown or misspelt key is
an error. `validate_into` and `load_config` turn pydantic's errors into one `ConfigError`
whose message names each bad key, where it sits, and the closest valid key.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from opshelf.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every opshelf config model: unknown keys are errors."""

    # allow_inf_nan=False: every float of every config is a finite number (`.inf`, `.nan`
    # are refused at the door, not met later as an OverflowError inside a step)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True,
                              allow_inf_nan=False)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict (ConfigError when it is not one)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = read_text_file(p)
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def read_text_file(path: str | Path, *, what: str = "config file") -> str:
    """The text of a UTF-8 file; ConfigError (naming the file and the first bad byte) for a
    binary or otherwise non-UTF-8 file, or one that cannot be read."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {p}: cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {p}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from None


def load_config(path: str | Path, model: type[M]) -> M:
    """Read `path` (YAML or JSON) into `model`, with errors that name keys and suggest fixes."""
    return validate_into(model, read_mapping(path), where=str(path))


def validate_into(model: type[M], data: Any, *, where: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, where)) from None


def format_validation_error(exc: ValidationError, model: type[BaseModel], where: str) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        place = _format_loc(loc[:-1]) if loc else ""
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            valid = _valid_keys_at(model, loc[:-1])
            hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            msg = f"unknown key {key!r}" + (f" in {place}" if place else " at the top level")
            if hint:
                msg += f"; did you mean {hint[0]!r}?"
            elif valid:
                msg += f"; valid keys: {', '.join(sorted(valid))}"
        elif err["type"] == "missing":
            msg = f"missing required key {str(loc[-1])!r}" + (f" in {place}" if place else "")
        else:
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{_format_loc(loc) or 'value'}: {text}"
            if "input" in err and not isinstance(err["input"], (dict, list)):
                msg += f" (got {err['input']!r})"
        lines.append(msg)
    head = f"{where}: invalid configuration"
    return head + ("\n  - " + "\n  - ".join(lines) if len(lines) > 1 else f": {lines[0]}")


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _inner_types(annotation: Any) -> list[Any]:
    """The types a value of `annotation` may hold, one level down (Optional, Union, list, dict)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _inner_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_inner_types(arg) if typing.get_origin(arg) in (typing.Union, types.UnionType, typing.Annotated) else [arg])
        return out
    return [annotation]


def _valid_keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Keys the (sub)model at `loc` inside `model` accepts, best effort."""
    candidates: list[Any] = [model]
    for part in loc:
        nxt: list[Any] = []
        for cand in candidates:
            for typ in _inner_types(cand):
                if isinstance(typ, type) and issubclass(typ, BaseModel):
                    if isinstance(part, str):
                        field = typ.model_fields.get(part) or next(
                            (f for f in typ.model_fields.values() if f.alias == part), None)
                        if field is not None:
                            nxt.extend(_inner_types(field.annotation))
                        elif typ.__name__ == part or _tag_matches(typ, part):
                            nxt.append(typ)  # a discriminated-union tag in the loc
                elif typing.get_origin(typ) in (list, tuple, set, frozenset, dict):
                    args = typing.get_args(typ)
                    if args:
                        nxt.extend(_inner_types(args[-1]))
        candidates = nxt
    keys: list[str] = []
    for cand in candidates:
        for typ in _inner_types(cand):
            if isinstance(typ, type) and issubclass(typ, BaseModel):
                keys.extend(f.alias or name for name, f in typ.model_fields.items())
    return sorted(set(keys))


def _tag_matches(typ: type[BaseModel], part: str) -> bool:
    for field in typ.model_fields.values():
        if typing.get_origin(field.annotation) is typing.Literal and part in typing.get_args(field.annotation):
            return True
    return False


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()
