"""Fixtures of opshelf-train's tests: EMT-labelled data and one trained model, shared."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from train_helpers import cu_frames, label_with_emt, template

from opshelf.core.testing import require_engine

# One thread per dp process: the test machines have 2 cores shared by parallel jobs.
for _key in ("OMP_NUM_THREADS", "TF_INTRA_OP_PARALLELISM_THREADS",
             "TF_INTER_OP_PARALLELISM_THREADS"):
    os.environ.setdefault(_key, "1")


@pytest.fixture(scope="session")
def emt_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames (Cu4, Cu3Au) labelled with EMT: a deepmd/npy folder of two systems."""
    return label_with_emt(cu_frames(), tmp_path_factory.mktemp("emt-data"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, emt_data: Path) -> dict[str, Any]:
    """One model trained 300 steps from scratch on `emt_data`, frozen."""
    require_engine("dp")
    from opshelf.train import ensemble_scripts, train_model
    from opshelf.train.script import SCRIPT_NAME

    work = tmp_path_factory.mktemp("trained")
    (script,) = ensemble_scripts(template(), 1, ["Cu", "Au"], seed=1)
    import json

    (work / SCRIPT_NAME).write_text(json.dumps(script))
    metrics = train_model(work, work, init_data=[emt_data], valid_data=[emt_data / "Cu3Au1"])
    return {"dir": work, "metrics": metrics, "model": work / "frozen_model.pb"}
