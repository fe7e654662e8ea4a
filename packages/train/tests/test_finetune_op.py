"""FinetuneUniversal (the dflow OP over finetune_universal) against core's conformance kit:
one real, tiny fine-tune of SevenNet-0 through dflow's local mode (1 epoch over the 20 Cu4
frames, held out: the 20 Cu3Au frames), and bad config and data refused with a message that
names the problem. Training quality is in test_finetune_sevennet.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ase.build
import pytest

from opshelf.core.models import load_calculator
from opshelf.core.testing import REMOVE, BadInput, assert_op_conformance
from opshelf.train.universal_op import FinetuneUniversal

pytest.importorskip("sevenn")

TINY = {"trainer": "sevennet", "epochs": 1, "batch_size": 4, "seeds": [3], "threads": 1}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep dflow's debug files inside the test's tmp dir."""
    monkeypatch.chdir(tmp_path)


def test_finetune_universal_conforms_and_runs_in_local_dflow(emt_data: Path,
                                                             tmp_path: Path) -> None:
    result = assert_op_conformance(
        FinetuneUniversal,
        good_inputs={"config": TINY, "data": [emt_data / "Cu4Au0"],
                     "held_out": [emt_data / "Cu3Au1"]},
        bad_inputs=[
            BadInput({"config": {**TINY, "trainer": "mace"}},
                     match="trainer 'mace': not installed; installed trainers: "
                           "chgnet, sevennet"),
            BadInput({"config": {**TINY, "epochs": 0}}, match="epochs"),
            BadInput({"config": {**TINY, "epoch": 3}}, match="unknown key 'epoch'"),
            BadInput({"config": {**TINY, "base_model": "7net-nope"}},
                     match="base_model '7net-nope'"),
            BadInput({"data": [tmp_path / "nowhere"]}, match="training data not found"),
            BadInput({"held_out": REMOVE, "data": []}, match="no labelled frames"),
        ],
        workdir=tmp_path / "conf",
    )
    assert result.parameters["calculator"] == "sevennet-finetuned"
    models = sorted(Path(result.artifacts["models"]).resolve().rglob("checkpoint.pth"))
    assert [m.parent.name for m in models] == ["model-000"]
    metrics_file = Path(result.artifacts["metrics"]).resolve()
    metrics_file = metrics_file if metrics_file.is_file() else next(
        p for p in metrics_file.rglob("metrics.json") if ".dflow" not in p.parts)
    metrics = json.loads(metrics_file.read_text())
    assert (metrics["trainer"], metrics["n_train_frames"], metrics["n_held_out_frames"]) == (
        "sevennet", 20, 20)
    rmse = metrics["held_out_force_rmse_eV_per_A"]
    # SevenNet-0 on these EMT frames: 0.149 eV/A over both formulas (test_finetune_sevennet)
    assert 0.05 < rmse["pretrained"] < 0.5
    assert len(rmse["finetuned"]) == 1 and math.isfinite(rmse["finetuned"][0])
    # the model runs as opshelf-md's ase-ensemble engine runs it
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = load_calculator("sevennet-finetuned", model=str(models[0]))
    forces = atoms.get_forces()
    assert forces.shape == (4, 3) and 0 < abs(forces).max() < 5
