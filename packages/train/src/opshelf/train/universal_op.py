"""`FinetuneUniversal`: the dflow OP over `opshelf.train.universal.finetune_universal`.

Labelled deepmd/npy data (standard or mixed-type) in, the fine-tuned ensemble out (one model
per seed), with the held-out force RMSE of the pretrained and fine-tuned models when
held-out data is given. The models load with the `calculator` output, an `opshelf.models`
name (opshelf-md's ase-ensemble engine: `{calculator: NAME, kwargs: {model: FILE}}`).
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

from pathlib import Path
from typing import List

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter

from opshelf.core.config import validate_into
from opshelf.core.errors import UserError
from opshelf.train.universal import (
    METRICS_FILE,
    UniversalFinetune,
    finetune_universal,
    load_trainer,
    read_labelled_frames,
)

#: the step's work dir: model-NNN/ per seed, metrics.json, opshelf-finetune.json
WORK_DIR = "finetune"


class FinetuneUniversal(OP):
    """Fine-tune a universal potential (`config`: `UniversalFinetune`) on `data`; with
    `held_out`, measure it there (`metrics`). Bad config or data is a FatalError."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "config": Parameter(dict, default={}),
            "data": Artifact(List[Path]),
            "held_out": Artifact(List[Path], optional=True),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({
            "models": Artifact(List[Path]),
            "metrics": Artifact(Path),
            "calculator": Parameter(str),
        })

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        work_dir = Path(WORK_DIR)
        try:
            options = validate_into(UniversalFinetune, ip["config"], where="input 'config'")
            load_trainer(options.trainer)  # an unknown trainer fails before any data is read
            train = read_labelled_frames(ip["data"])
            held_out = read_labelled_frames(ip["held_out"]) if ip["held_out"] else []
            result = finetune_universal(train, work_dir, options, held_out=held_out)
        except UserError as exc:
            raise FatalError(str(exc)) from exc
        return OPIO({"models": result.models, "metrics": work_dir / METRICS_FILE,
                     "calculator": result.calculator})
