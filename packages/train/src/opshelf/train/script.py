"""DeePMD-kit input scripts: an ensemble from one template, data paths, init-model settings.

Pure functions over the input dict (`input.json`); no program runs here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from opshelf.core.bounds import ReferenceCount, StepCount, Weight, bounded
from opshelf.core.config import StrictModel
from opshelf.core.errors import ConfigError

#: The input script inside every training task dir.
SCRIPT_NAME = "input.json"

_POLICY = re.compile(r"^(no|yes|old_data_larger_than:(\d+))$")


#: a learning rate (above 0, at most 1: a larger one only diverges)
LearningRate = bounded(float, 0.0, 1.0, low_open=True)


class InitModelOptions(StrictModel):
    """Training from the previous iteration's model (DPGEN2's init-model policy)."""

    policy: str = Field(
        "no", description="'no': train from scratch; 'yes': start from the given model; "
        "'old_data_larger_than:N': start from it when the old data (init data plus every "
        "iteration's data but the newest) holds more than N frames")
    numb_steps: StepCount | None = Field(None, description="training steps of an init-model "
                                   "run; the template's when unset")
    start_lr: LearningRate | None = Field(None, description="start learning rate of an "
                                   "init-model run; the template's when unset")
    start_pref_e: Weight | None = Field(None, description="start energy prefactor of the "
                                       "loss in an init-model run; the template's when unset")
    start_pref_f: Weight | None = Field(None, description="start force prefactor of the "
                                       "loss in an init-model run; the template's when unset")
    start_pref_v: Weight | None = Field(None, description="start virial prefactor of the "
                                       "loss in an init-model run; the template's when unset")
    given_model_first: bool = Field(
        False, description="DPGEN2's rule for its init_models_paths: a given model and no "
        "iteration data yet (the first iteration) -> the model is used as it is, not trained "
        "(it must be a frozen model of the backend: .pb, or .pth for pytorch); later "
        "iterations follow `policy`. False: the policy decides in the first iteration too")
    use_pretrain_script: bool = Field(
        False, description="an init-model run takes the model section (descriptor, fitting "
        "net, type_map) from the init model, not the template (dp --use-pretrain-script with "
        "--init-model/--init-frz-model; PyTorch backend only): needed when the init model was "
        "fine-tuned from a pretrained model whose architecture is not the template's")

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        if _POLICY.match(value) is None:
            raise ValueError(f"unknown init-model policy {value!r}; use 'no', 'yes' or "
                             "'old_data_larger_than:N' (N an integer number of frames)")
        return value


class FinetuneOptions(StrictModel):
    """Fine-tuning from a pretrained model (`dp train --finetune`), the training mode a
    RunTrain step takes when it is given a `finetune_model`."""

    model_branch: str | None = Field(
        None, description="the branch of a multi-task pretrained checkpoint (.pt) to start "
        "from (dp --model-branch; PyTorch backend); unset: a single-task model, or for a "
        "multi-task one a new fitting net")
    use_pretrain_script: bool = Field(
        True, description="take the model section (descriptor, fitting net) from the "
        "pretrained model, not the template (dp --use-pretrain-script; the TensorFlow backend "
        "always does); false: the template's model must match the pretrained one")
    numb_steps: StepCount | None = Field(None, description="training steps of a fine-tuning "
                                   "run; the template's when unset")
    start_lr: LearningRate | None = Field(None, description="start learning rate of a "
                                   "fine-tuning run; the template's when unset")


class StepScaling(StrictModel):
    """Training steps that grow with the training set. DeePMD-kit's TensorFlow backend
    counts steps, not passes over the data: with a fixed numb_steps, a data set three times
    larger gets a third of the passes per frame, and the models underfit it (measured in
    concurrent learning: force RMSE on held-out frames 0.049 eV/A after 2000 steps on 36
    frames, 0.034 after 6000)."""

    reference_frames: ReferenceCount | None = Field(
        None, description="the template's numb_steps are meant for this many training "
        "frames; a larger training set trains numb_steps x frames / reference_frames steps "
        "(never fewer than numb_steps). None: numb_steps whatever the data")
    max_numb_steps: StepCount | None = Field(None, description="never more steps than this")

    def numb_steps(self, template_steps: int, n_frames: int) -> int:
        if self.reference_frames is None or n_frames <= self.reference_frames:
            return template_steps
        scaled = round(template_steps * n_frames / self.reference_frames)
        return min(scaled, self.max_numb_steps) if self.max_numb_steps else scaled


def decide_init_model(policy: str, has_init_model: bool, old_data_frames: int,
                      has_iter_data: bool) -> bool:
    """Whether to start from the given model.

    DPGEN2's semantics, except that 'yes' needs only a model (DPGEN2 also needs iteration
    data; a standalone user giving a model and 'yes' means it): no model -> no;
    'old_data_larger_than:N' -> iteration data exists and the old data exceeds N frames.
    """
    if not has_init_model:
        return False
    match = _POLICY.match(policy)
    if match is None:
        raise ConfigError(f"unknown init-model policy {policy!r}")
    if policy == "yes":
        return True
    if policy == "no":
        return False
    return has_iter_data and old_data_frames > int(match.group(2))


def template_type_map(template: dict[str, Any], type_map: Sequence[str] = ()) -> list[str]:
    """The type_map of the ensemble: the template's `model.type_map` or `type_map`; both
    given and different is an error."""
    model = template.get("model")
    if not isinstance(model, dict):
        raise ConfigError("DeePMD template: no 'model' section")
    from_template = list(model.get("type_map") or [])
    given = list(type_map)
    if from_template and given and from_template != given:
        raise ConfigError(f"DeePMD template: model.type_map {from_template} differs from the "
                          f"type_map input {given}")
    chosen = from_template or given
    if not chosen:
        raise ConfigError("DeePMD template: no model.type_map, and no type_map input")
    return chosen


def check_deepmd_template(template: dict[str, Any], type_map: Sequence[str]) -> None:
    """ConfigError naming the key when deepmd-kit's own argument check (dargs, strict:
    ``deepmd.utils.argcheck.normalize``) rejects the template: an unknown or misspelt key, a
    value of the wrong type. Run before any work; the data paths the workflow sets later are
    filled with a placeholder. Without deepmd-kit installed nothing could train: the check is
    then left to the training step, which needs deepmd-kit anyway."""
    try:
        from dargs.dargs import ArgumentError
        from deepmd.utils.argcheck import normalize
    except ImportError:  # no deepmd-kit here (e.g. a cluster-side training image)
        return
    script = copy.deepcopy(template)
    script["model"]["type_map"] = list(type_map)
    data = script["training"].setdefault("training_data", {})
    if isinstance(data, dict):
        data.setdefault("systems", ["<set by the workflow>"])
    try:
        normalize(script)
    except (ArgumentError, ValueError, TypeError, KeyError) as exc:
        text = " ".join(str(exc).split())
        raise ConfigError(f"DeePMD template rejected by deepmd-kit's argument check: {text}"
                          ) from None


def ensemble_scripts(template: dict[str, Any], numb_models: int, type_map: Sequence[str],
                     seed: int = 0) -> list[dict[str, Any]]:
    """`numb_models` copies of `template` with the type_map set and their own seeds for the
    descriptor, the fitting net, the type embedding (when present) and training.

    Seeds come from numpy's generator seeded with (`seed`, model index): reproducible, and
    different between models.
    """
    if numb_models < 1:
        raise ConfigError(f"numb_models must be >= 1, got {numb_models}")
    for key in ("model", "training"):
        if not isinstance(template.get(key), dict):
            raise ConfigError(f"DeePMD template: no {key!r} section")
    model = template["model"]
    for key in ("descriptor", "fitting_net"):
        if not isinstance(model.get(key), dict):
            raise ConfigError(f"DeePMD template: no 'model.{key}' section")
    check_deepmd_template(template, type_map)
    scripts = []
    for index in range(numb_models):
        rng = np.random.default_rng([seed, index])
        script = copy.deepcopy(template)
        script["model"]["type_map"] = list(type_map)
        targets = [script["model"]["descriptor"], script["model"]["fitting_net"],
                   script["training"]]
        if isinstance(script["model"].get("type_embedding"), dict):
            targets.append(script["model"]["type_embedding"])
        for target in targets:
            target["seed"] = int(rng.integers(0, 2**31 - 1))
        scripts.append(script)
    return scripts


def with_data(script: dict[str, Any], train_systems: Sequence[Path],
              valid_systems: Sequence[Path] = ()) -> dict[str, Any]:
    """`script` with the training (and validation) systems set to these paths.

    Without validation systems, a validation section of the template is dropped: its
    paths point at data this run does not have.
    """
    out = copy.deepcopy(script)
    training = out.setdefault("training", {})
    train_section = training.get("training_data") or {"batch_size": "auto"}
    train_section["systems"] = [str(p) for p in train_systems]
    training["training_data"] = train_section
    if valid_systems:
        valid_section = training.get("validation_data") or {"batch_size": "auto"}
        valid_section["systems"] = [str(p) for p in valid_systems]
        training["validation_data"] = valid_section
    else:
        training.pop("validation_data", None)
    return out


def with_init_model_options(script: dict[str, Any],
                             options: InitModelOptions | FinetuneOptions) -> dict[str, Any]:
    """`script` with the init-model (or fine-tuning) run's own steps, learning rate and loss
    prefactors."""
    out = copy.deepcopy(script)
    if options.numb_steps is not None:
        out.setdefault("training", {})["numb_steps"] = options.numb_steps
    if options.start_lr is not None:
        out.setdefault("learning_rate", {})["start_lr"] = options.start_lr
    for key in ("start_pref_e", "start_pref_f", "start_pref_v"):
        value = getattr(options, key, None)
        if value is not None:
            out.setdefault("loss", {})[key] = value
    return out
