"""`require_engine`: skip a test when an engine is missing, fail instead in CI.

CI sets OPSHELF_REQUIRE_ENGINES=1 so that a missing engine cannot turn a science test into
a silent skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

REQUIRE_ENV = "OPSHELF_REQUIRE_ENGINES"


def engines_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def missing_engine_reason(name_or_exe: str) -> str | None:
    """None when available, otherwise why not.

    `name_or_exe` is an executable on PATH ("cp2k", "pw.x", "lmp"), `py:<module>` for a
    Python package ("py:chgnet"), or an installed opshelf engine name, whose default
    command is then looked up (an in-process engine is always available).
    """
    if name_or_exe.startswith("py:"):
        module = name_or_exe[3:]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        return None if found else f"Python package {module!r} is not installed"
    if shutil.which(name_or_exe) is not None:
        return None
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="opshelf.engines")}
    if name_or_exe in eps:
        from opshelf.core.errors import UserError

        try:
            engine = eps[name_or_exe].load()()
        except UserError as exc:
            return (f"engine {name_or_exe!r} cannot be built with default settings ({exc}); "
                    "name its executable instead")
        try:
            exe = (engine.profile.command or engine.default_command())[0]
        except NotImplementedError:
            return None  # runs in-process
        if shutil.which(exe) is not None:
            return None
        return f"engine {name_or_exe!r}: executable {exe!r} not found on PATH"
    return f"executable {name_or_exe!r} not found on PATH"


def require_engine(name_or_exe: str) -> None:
    """Inside a pytest test or fixture: skip when the engine is missing, but fail when
    OPSHELF_REQUIRE_ENGINES=1."""
    import pytest

    reason = missing_engine_reason(name_or_exe)
    if reason is None:
        return
    if engines_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: a missing engine is a failure)", pytrace=False)
    pytest.skip(reason)
