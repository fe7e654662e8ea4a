"""Built-in entries of the `opshelf.models` group (ASE calculator factories).

A model entry point is a callable `(**kwargs) -> ase.calculators.calculator.Calculator`.
EMT is the cheap baseline every package can test with.
"""

from __future__ import annotations

from typing import Any


def emt(**kwargs: Any) -> Any:
    from ase.calculators.emt import EMT

    return EMT(**kwargs)
