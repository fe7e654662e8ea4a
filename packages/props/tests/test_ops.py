"""The dflow OPs: core's conformance checks, a relax + EOS workflow in local mode that must
match the plain-Python runner, and clear errors before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ase.io
import pytest
from ase.build import bulk

from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.testing import REMOVE, BadInput, assert_op_conformance
from opshelf.props import compute_properties, compute_property, parse_params
from opshelf.props.ops import MakeProperty, PostProperty, run_props_locally

EOS5 = {"type": "eos", "n_points": 5}


def cu_file(tmp_path: Path, a: float = 3.6) -> Path:
    path = tmp_path / "cu.extxyz"
    ase.io.write(path, bulk("Cu", "fcc", a=a, cubic=True))
    return path


def test_make_property_conforms(tmp_path: Path, emt: dict[str, Any]) -> None:
    result = assert_op_conformance(
        MakeProperty,
        good_inputs={"structure": cu_file(tmp_path), "property": EOS5, "engine": emt},
        bad_inputs=[
            BadInput({"property": {"type": "eos", "n_point": 5}}, match=r"n_point.*n_points"),
            BadInput({"property": {"type": "elasticity"}}, match=r"unknown property type"),
            BadInput({"property": {"type": "eos", "volume_ratio_max": 0.99}},
                     match=r"volume_ratio_min < 1 < volume_ratio_max"),
            BadInput({"engine": {"name": "emt"}}, match=r"unknown engine 'emt'"),
            BadInput({"structure": tmp_path / "missing.vasp"}, match=r"missing\.vasp"),
            BadInput({"property": REMOVE}, match=r"property"),
        ],
        workdir=tmp_path / "conf")
    assert result.parameters["task_names"] == [f"eos-{i:03d}" for i in range(5)]


def test_post_property_conforms(tmp_path: Path, emt: dict[str, Any]) -> None:
    compute_property(EOS5, bulk("Cu", "fcc", a=3.59, cubic=True), emt, tmp_path / "run")
    labelled = sorted((tmp_path / "run" / "labeled").iterdir())
    result = assert_op_conformance(
        PostProperty,
        good_inputs={"context": tmp_path / "run" / "context", "labeled_data": labelled},
        bad_inputs=[BadInput({"context": tmp_path / "nowhere"}, match=r"nowhere.*context"),
                    BadInput({"labeled_data": labelled[:3]}, match=r"3 points succeeded")],
        workdir=tmp_path / "conf")
    assert result.parameters["result"]["property"] == "eos"


def test_workflow_in_local_mode_matches_plain_runner(tmp_path: Path, emt: dict[str, Any]
                                                     ) -> None:
    structure = cu_file(tmp_path, a=3.65)
    relax = {"relax_cell": True}
    flow = run_props_locally(structure, emt, [EOS5], tmp_path / "flow", relax=relax)
    plain = compute_properties(structure, emt, [EOS5], tmp_path / "plain", relax=relax)
    assert set(flow) == {"relax", "eos"}
    for key in ("v0_A3_per_atom", "bulk_modulus_GPa", "lattice_constant_A"):
        assert flow["eos"][key] == pytest.approx(plain["eos"][key], rel=1e-9), key
    assert (tmp_path / "flow" / "results" / "eos" / "eos.png").is_file()
    assert (tmp_path / "flow" / "results" / "relax" / "relaxed.extxyz").is_file()


def test_errors_name_the_problem_before_work(tmp_path: Path, emt: dict[str, Any]) -> None:
    # EMT has no iron: the engine's check fails before a task dir is written
    with pytest.raises(MissingInputError, match=r"'Fe'"):
        compute_property({"type": "vacancy"}, bulk("Fe", "bcc", a=2.87), emt, tmp_path / "fe")
    assert not (tmp_path / "fe" / "tasks").exists()
    with pytest.raises(ConfigError, match=r"fcc, bcc and hcp"):
        compute_property({"type": "interstitial"}, bulk("NaCl", "rocksalt", a=5.6), emt,
                         tmp_path / "nacl")
    with pytest.raises(ConfigError, match=r"needs a bcc crystal"):
        compute_property({"type": "stacking_fault", "slip_system": "bcc_110_111"},
                         bulk("Cu", "fcc", a=3.6), emt, tmp_path / "sf")
    with pytest.raises(ConfigError, match=r"unknown key 'supercel'.*'supercell'"):
        parse_params({"type": "vacancy", "supercel": [2, 2, 2]})
    with pytest.raises(ConfigError, match=r"unknown fcc sites \['crowdion'\]"):
        compute_property({"type": "interstitial", "sites": ["crowdion"]},
                         bulk("Cu", "fcc", a=3.6), emt, tmp_path / "int")


@pytest.mark.parametrize("params", [
    {"type": "surface", "max_miller_index": 2},
    {"type": "surface", "miller_indices": [[1, 1, 1], [1, 0, 0]]},
    {"type": "elastic", "normal_strain": 0.01},
    {"type": "eos", "n_points": 7},
])
def test_cheap_task_counts_equal_what_make_writes(params: dict[str, Any]) -> None:
    # the workflow sizes its fan-outs with count_tasks; surface and elastic count without
    # building their structures, so check the count against make itself
    from opshelf.props.registry import get_property

    parsed = parse_params(params)
    prop = get_property(parsed.type)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    assert prop.count_tasks(atoms, parsed) == len(prop.make(atoms, parsed).tasks)
