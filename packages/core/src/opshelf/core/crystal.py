"""One crystal spec and one builder for every generated structure (label, cl, lameval).

    CrystalSpec(element="Mg", crystal="hcp", supercell=(3, 2, 2)).atoms()

`bulk` is ASE's ``ase.build.bulk`` with one rule for the conventional cell: ``cubic=True``
gives the cubic cell of fcc, bcc, sc and diamond and the orthorhombic cell of hcp (an hcp
crystal has no cubic cell; ASE raises for ``cubic=True`` there). An element or lattice ASE
cannot build is a ConfigError naming it. Workflows extend ``CrystalSpec`` with what they do
to the crystal (strain, rattle, substitutions), so every one accepts the same keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from opshelf.core.bounds import LatticeConstantA, Supercell
from opshelf.core.config import StrictModel
from opshelf.core.errors import ConfigError

if TYPE_CHECKING:
    from ase import Atoms

#: the lattices ``bulk`` builds from an element and one lattice constant
Lattice = Literal["fcc", "bcc", "hcp", "diamond", "sc"]


def bulk(element: str, crystal: Lattice = "fcc", a: float | None = None, *,
         cubic: bool = True, where: str = "") -> Atoms:
    """The unit cell of `crystal` `element` (ASE's reference lattice constant when `a` is
    None); `cubic`: the conventional cell, orthorhombic for hcp (ASE's c/a). `where`: the
    config key an error names first."""
    from ase.build import bulk as ase_bulk

    try:
        return ase_bulk(element, crystal, a=a, cubic=cubic and crystal != "hcp",
                        orthorhombic=cubic and crystal == "hcp")
    except (ValueError, KeyError, NotImplementedError, RuntimeError) as exc:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}cannot build {crystal} {element}: {exc}") from None


class CrystalSpec(StrictModel):
    """A perfect crystal of one element, repeated into a supercell."""

    element: str = Field(description="chemical symbol, e.g. 'Cu'")
    crystal: Lattice = Field("fcc", description="the lattice")
    lattice_constant_A: LatticeConstantA | None = Field(
        None, description="a; ASE's reference value for the element when unset")
    supercell: Supercell = Field((2, 2, 2), description="repetitions of the cell along a, b, c")
    cubic: bool = Field(True, description="conventional cubic cell (orthorhombic for hcp); "
                        "false: the primitive cell")

    def unit_cell(self, where: str = "") -> Atoms:
        return bulk(self.element, self.crystal, self.lattice_constant_A, cubic=self.cubic,
                    where=where)

    def atoms(self, where: str = "") -> Atoms:
        """The supercell: the unit cell repeated `supercell` times."""
        return self.unit_cell(where) * self.supercell


__all__ = ["CrystalSpec", "Lattice", "bulk"]
