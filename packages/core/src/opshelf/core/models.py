"""Built-in entries of the `opshelf.models` group (ASE calculator factories), and
`load_calculator`, the one way an opshelf package turns a model name into a calculator.

A model entry point is a callable `(**kwargs) -> ase.calculators.calculator.Calculator`.
EMT is the cheap baseline every package can test with. Packages register more models
(CHGNet, SevenNet, a DeePMD model, ...) in their own pyproject.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from opshelf.core.errors import ConfigError, MissingInputError

if TYPE_CHECKING:
    from ase.calculators.calculator import BaseCalculator


def emt(**kwargs: Any) -> BaseCalculator:
    """ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O)."""
    from ase.calculators.emt import EMT

    return EMT(**kwargs)


def resolve_calculator_factory(name_or_path: str) -> Any:
    """The callable behind a model name ('emt') or an import path ('module:attr.attr').

    An unknown name is a ConfigError naming the installed models; a module that does not
    import is a MissingInputError (its package is not installed).
    """
    if ":" not in name_or_path:
        from opshelf.core.plugins import load_entry_point

        return load_entry_point("opshelf.models", name_or_path, what="model")
    module_name, _, attr_path = name_or_path.partition(":")
    if not module_name or not attr_path:
        raise ConfigError(
            f"calculator {name_or_path!r}: an import path is 'module:factory_or_class'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise MissingInputError(
            f"calculator {name_or_path!r}: cannot import module {module_name!r} ({exc})"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"calculator {name_or_path!r}: module {module_name!r} has no attribute "
                f"{attr_path!r}"
            ) from None
    if not callable(obj):
        raise ConfigError(f"calculator {name_or_path!r}: {attr_path!r} is not callable")
    return obj


def load_calculator(name_or_path: str, **kwargs: Any) -> BaseCalculator:
    """A fresh ASE calculator from a model name or an import path, with `kwargs`.

    Keyword arguments the factory cannot take are a ConfigError naming them (checked
    against the factory's signature before it is called, so a TypeError raised inside a
    working factory is not mistaken for a user error).
    """
    factory = resolve_calculator_factory(name_or_path)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins and C extensions may have none
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            raise ConfigError(
                f"calculator {name_or_path!r}: bad kwargs {sorted(kwargs)}: {exc}"
            ) from None
    calc = factory(**kwargs)
    if not callable(getattr(calc, "get_potential_energy", None)):
        raise ConfigError(
            f"calculator {name_or_path!r}: the factory returned {type(calc).__name__}, "
            "not an ASE calculator (no get_potential_energy)"
        )
    return calc
