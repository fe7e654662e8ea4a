"""Fixtures of opshelf-md's tests: tiny DeePMD models (trained once per session), threads."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_dp_models import train_tiny_models

from opshelf.core.testing import require_engine


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small runs on a shared 2-core machine: one thread for LAMMPS, TensorFlow, DeePMD."""
    for name in ("OMP_NUM_THREADS", "TF_INTRA_OP_PARALLELISM_THREADS",
                 "TF_INTER_OP_PARALLELISM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS",
                 "DP_INTER_OP_PARALLELISM_THREADS"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")


def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # OPSHELF_MD_MODEL_CACHE: a folder kept between sessions (models are reused when there)
    import os

    for name in ("OMP_NUM_THREADS", "TF_INTRA_OP_PARALLELISM_THREADS",
                 "TF_INTER_OP_PARALLELISM_THREADS"):
        os.environ.setdefault(name, "1")
    cache = os.environ.get("OPSHELF_MD_MODEL_CACHE")
    return Path(cache) if cache else tmp_path_factory.mktemp("tiny-dp-models")


@pytest.fixture(scope="session")
def tiny_pt_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two se_e2_a models trained with DeePMD-kit's PyTorch backend (200 steps), frozen to
    .pth: what opshelf-train's `backend: pytorch` produces."""
    require_engine("py:deepmd")
    require_engine("py:lammps")
    return train_tiny_models(_model_cache(tmp_path_factory), n_steps=200, backend="pytorch")


@pytest.fixture(scope="session")
def tiny_dpa3_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two DPA-3 models (PyTorch backend, 200 steps, different seeds), frozen to .pth."""
    require_engine("py:deepmd")
    require_engine("py:lammps")
    return train_tiny_models(_model_cache(tmp_path_factory), n_steps=200, backend="pytorch",
                             descriptor="dpa3")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two se_e2_a models trained on EMT Cu with different seeds (tiny_dp_models.py)."""
    require_engine("py:deepmd")
    require_engine("py:lammps")
    return train_tiny_models(_model_cache(tmp_path_factory))
