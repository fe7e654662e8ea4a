"""`opshelf export-argo alloy`: the exported workflow ends with a results step fed with
every block's results folder (an optional output of its structure/interaction pair's
Steps: a failed block has none) and the input structures, and validates against Argo's
Workflow schema. Nothing runs here (no cluster); test_workflow_emt runs the same step."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from opshelf.core.testing import argo_schema_errors

CONFIG = {
    "structures": [
        {"name": "cu", "generate": {"element": "Cu", "prototype": "fcc",
                                    "lattice_constant_A": 3.6}},
        {"name": "cu3au", "generate": {"elements": ["Cu", "Au"], "prototype": "L1_2"},
         "properties": ["eos"]},
    ],
    "interactions": [{"name": "emt", "calculator": "emt"}],
    "relax": {"relax_cell": True},
    # more blocks than the 8 fixed slots the results step used to have
    "properties": [{"type": "eos", "n_points": 5}, {"type": "elastic"},
                   {"type": "vacancy", "supercell": [2, 2, 2]},
                   {"type": "stacking_fault", "n_points": 4, "n_layers": 6},
                   {"type": "phonon", "supercell": [2, 2, 2]}],
}


def test_exported_alloy_workflow_ends_with_its_results_step(tmp_path: Path) -> None:
    from opshelf.core.export_argo import build_manifest

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    manifest = build_manifest("alloy", tmp_path / "config.yaml", run_dir=tmp_path)
    manifest = yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False))  # as kubectl reads it
    assert argo_schema_errors(manifest) == []

    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    last = templates[manifest["spec"]["entrypoint"]]["steps"][-1]
    assert [s["name"] for s in last] == ["results"]  # after every pair
    (results,) = last
    blocks = ["relax", "eos", "elastic", "vacancy", "stacking-fault", "phonon"]
    expected = {f"cu--emt--{b}": f"{{{{steps.cu--emt.outputs.artifacts.{b}}}}}" for b in blocks}
    expected |= {f"cu3au--emt--{b}": f"{{{{steps.cu3au--emt.outputs.artifacts.{b}}}}}"
                 for b in ("relax", "eos")}
    arguments = {a["name"]: a for a in results["arguments"]["artifacts"]}
    for name, source in expected.items():
        assert arguments[f"dflow_inputs_{name}"]["from"] == source
        assert arguments[f"dflow_inputs_{name}"]["optional"] is True  # a failed block
    for structure in ("cu", "cu3au"):  # the uploaded input structures, required
        structure_input = arguments[f"dflow_inputs_{structure}--structure"]
        assert "s3" in structure_input and not structure_input.get("optional")
    parameters = {p["name"]: p["value"] for p in results["arguments"]["parameters"]}
    assert parameters["workflow"] == "alloy"
    assert sorted(json.loads(parameters["optional"])) == sorted(expected)
    assert len(json.loads(parameters["names"])) == len(expected) + 2
    template = templates[results["template"]]
    assert template["script"]["image"].rsplit("/", 1)[-1].startswith("opshelf-alloy:")

    # each pair's Steps hands every block's results folder out, optional
    pair = templates[next(s for s in templates[manifest["spec"]["entrypoint"]]["steps"][0]
                          if s["name"] == "cu--emt")["template"]]
    outputs = {a["name"]: a for a in pair["outputs"]["artifacts"]}
    assert sorted(outputs) == sorted(blocks)
    assert outputs["eos"]["from"] == "{{steps.cu--emt--eos.outputs.artifacts.results}}"
    assert all(a["optional"] is True for a in outputs.values())
