"""The lameval workflow end to end in local mode (EMT: fast), its config errors and its CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from opshelf.core.cli import main
from opshelf.core.errors import ConfigError
from opshelf.core.testing import sigkill_after_steps, succeeded_step_stamps
from opshelf.lameval.data import REFERENCE_DIR
from opshelf.lameval.leaderboard import domain_breakdown
from opshelf.lameval.workflow import LamEvalWorkflow


def write_config(tmp_path: Path, **extra) -> Path:
    config = {
        "models": [{"name": "emt", "calculator": "emt"},
                   {"name": "emt-loop", "calculator": "emt", "batched": False}],
        # two domains, so the per-domain breakdown has something to group
        "datasets": [{"name": "al-rattled", "path": str(REFERENCE_DIR / "Al-rattled"),
                      "domain": "thermal"},
                     {"name": "al-strained", "path": str(REFERENCE_DIR / "Al-strained"),
                      "domain": "strain"}],
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


@pytest.fixture(scope="module")
def emt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real local run of the workflow with EMT (fast); the run's directory."""
    tmp_path = tmp_path_factory.mktemp("lameval-emt")
    config = write_config(tmp_path)
    assert main(["run", "lameval", str(config), "--runs-dir", str(tmp_path / "runs"),
                 "--name", "ev", "--no-progress"]) == 0
    return tmp_path / "runs" / "ev"


def test_run_writes_leaderboard_and_offline_report(emt_run: Path) -> None:
    results = emt_run / "results"
    board = json.loads((results / "leaderboard.json").read_text())
    assert [row["model"] for row in board["models"]] == ["emt", "emt-loop"]
    # same model, batched flag or not: the same errors (EMT has no batched path)
    a, b = board["models"]
    assert a["force_rmse_meV_per_A"] == pytest.approx(b["force_rmse_meV_per_A"], rel=1e-9)
    assert len(board["data_fingerprints"]["al-rattled"]) == 64
    assert (results / "leaderboard.csv").read_text().startswith("model,calculator,")
    html = (results / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert main(["report", "ev", "--runs-dir", str(emt_run.parent)]) == 0


def test_report_breaks_accuracy_down_by_domain(emt_run: Path) -> None:
    results = json.loads((emt_run / "results" / "results.json").read_text())
    rows = domain_breakdown(results[0])
    assert [(r["domain"], r["dataset"]) for r in rows] == [("strain", "al-strained"),
                                                           ("thermal", "al-rattled")]
    domain_errors = results[0]["accuracy"]["domain_errors"]
    assert {r["domain"]: r["domain_error"] for r in rows} == domain_errors
    # M_FF is the mean of the per-domain M_k (LAMBench): the breakdown adds up to the headline
    assert results[0]["accuracy"]["generalizability_error"] == pytest.approx(
        sum(domain_errors.values()) / 2, rel=1e-12)
    html = (emt_run / "results" / "report.html").read_text()
    table = html[html.index("Accuracy per domain and data set"):]
    assert table.index("al-strained") < table.index("al-rattled")


def test_emt_scores_regression(emt_run: Path, num_regression) -> None:
    """EMT's numbers on the shipped Al reference set and its Delta for Al and Cu: a change
    in the metric code, the reference data or the EOS path shows up here. EMT is
    deterministic; rtol 1e-6 leaves room for BLAS summation order only."""
    board = json.loads((emt_run / "results" / "leaderboard.json").read_text())
    row = board["models"][0]
    keys = ("generalizability_error", "energy_rmse_meV_per_atom", "force_rmse_meV_per_A",
            "virial_rmse_meV_per_atom", "mean_delta_meV_per_atom")
    num_regression.check({key: [row[key]] for key in keys},
                         default_tolerance={"rtol": 1e-6, "atol": 1e-9})


def test_sigkill_then_resume_reruns_no_finished_step(tmp_path: Path, emt_run: Path) -> None:
    """Kill the run (its whole process group) once the first model's evaluation is done;
    `opshelf resume` does not evaluate that model again and gives the same accuracy."""
    config = write_config(tmp_path)
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = sigkill_after_steps([sys.executable, "-m", "opshelf.core.cli", "run", "lameval",
                               str(config), "--name", "k", "--no-progress", "--runs-dir",
                               str(runs)], runs / "k", 1, env=env, timeout_s=300)
    assert run.effective_status() == "killed"
    stamps = succeeded_step_stamps(run)
    res = subprocess.run([sys.executable, "-m", "opshelf.core.cli", "resume", str(runs / "k"),
                          "--runs-dir", str(runs)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert succeeded_step_stamps(run, list(stamps)) == stamps
    # accuracy numbers equal the uninterrupted run's (wall times differ, so compare those)
    resumed = json.loads((runs / "k" / "results" / "leaderboard.json").read_text())
    full = json.loads((emt_run / "results" / "leaderboard.json").read_text())
    for a, b in zip(resumed["models"], full["models"]):
        for key in ("generalizability_error", "force_rmse_meV_per_A", "mean_delta_meV_per_atom",
                    "instability"):
            assert a[key] == b[key], key


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
