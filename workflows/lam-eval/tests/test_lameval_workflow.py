"""The lameval workflow end to end in local mode (EMT: fast), its config errors and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from opshelf.core.cli import main
from opshelf.core.errors import ConfigError
from opshelf.lameval.data import REFERENCE_DIR
from opshelf.lameval.workflow import LamEvalWorkflow


def write_config(tmp_path: Path, **extra) -> Path:
    config = {
        "models": [{"name": "emt", "calculator": "emt"},
                   {"name": "emt-loop", "calculator": "emt", "batched": False}],
        "datasets": [{"name": "al-rattled", "path": str(REFERENCE_DIR / "Al-rattled"),
                      "domain": "Al"}],
        "tasks": {"delta": {"elements": ["Al", "Cu"], "n_points": 5},
                  "md": {"n_steps": 20},
                  "efficiency": {"supercells": [[1, 1, 1], [2, 2, 2]], "n_steps": 2}},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_misspelt_key_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, taskz={})
    with pytest.raises(ConfigError, match="taskz"):
        LamEvalWorkflow().load_config(path)


def test_cli_models_lists_installed_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lameval", "models"]) == 0
    out = capsys.readouterr().out
    assert "emt" in out and "sevennet" in out and "chgnet" in out


def test_run_writes_leaderboard_and_offline_report(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path)
    assert main(["run", "lameval", str(config), "--runs-dir", str(tmp_path / "runs"),
                 "--name", "ev", "--no-progress"]) == 0
    results = tmp_path / "runs" / "ev" / "results"
    board = json.loads((results / "leaderboard.json").read_text())
    assert [row["model"] for row in board["models"]] == ["emt", "emt-loop"]
    # same model, batched flag or not: the same errors (EMT has no batched path)
    a, b = board["models"]
    assert a["force_rmse_meV_per_A"] == pytest.approx(b["force_rmse_meV_per_A"], rel=1e-9)
    assert len(board["data_fingerprints"]["al-rattled"]) == 64
    assert (results / "leaderboard.csv").read_text().startswith("model,calculator,")
    html = (results / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert main(["report", "ev", "--runs-dir", str(tmp_path / "runs")]) == 0


def test_example_config_is_valid() -> None:
    """examples/lameval-*/config.yaml load and pass check() (models resolve, data reads)."""
    from opshelf.core.workflow import BuildContext

    examples = Path(__file__).resolve().parents[3] / "examples"
    configs = sorted(examples.glob("lameval-*/config.yaml"))
    if not configs:
        pytest.skip("examples/ is not next to this package (installed alone)")
    plugin = LamEvalWorkflow()
    for path in configs:
        config = plugin.load_config(path)
        plugin.check(config, BuildContext(run_dir=path.parent / "unused", config_dir=path.parent))
