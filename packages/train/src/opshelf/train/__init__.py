"""opshelf-train: DeePMD-kit training and testing for opshelf.

Pure functions (no dflow): `ensemble_scripts`, `train_model`, `evaluate_model`; the dflow
OPs live in `opshelf.train.ops` (PrepTrain, RunTrain, TestModel, PrepRunTrain).
"""

from __future__ import annotations

from opshelf.train.deepmd import DpBackend, DpProfile, PyTorchBackend, TensorFlowBackend, check_dp
from opshelf.train.evaluate import evaluate_model
from opshelf.train.script import (
    FinetuneOptions,
    InitModelOptions,
    decide_init_model,
    ensemble_scripts,
)
from opshelf.train.train import lcurve_metrics, read_lcurve, train_model

__version__ = "0.1.0"

__all__ = [
    "DpBackend",
    "DpProfile",
    "FinetuneOptions",
    "InitModelOptions",
    "PyTorchBackend",
    "TensorFlowBackend",
    "check_dp",
    "decide_init_model",
    "ensemble_scripts",
    "evaluate_model",
    "lcurve_metrics",
    "read_lcurve",
    "train_model",
]
