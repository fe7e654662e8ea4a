"""The whole loop through the CLI with mocked training, exploration and selection (wiring),
real EMT labels; restart after a failure at every phase gives the same data set.

Expected numbers come from clmocks.py: the mocked accurate ratio is
min(1, training frames / 16); the config starts from 4 frames and labels 4 per iteration,
so the ratios are 4/16, 8/16 (stage 0 stops at its 2 iterations), 12/16, 16/16 (stage 1
converges at >= 0.99: nothing is selected, the loop ends). Stage 0 never converged, so the
run ends "not converged" with exit status 3. The held-out set: 16 frames sampled and
labelled (EMT) in iteration 0; the mocked score of models trained on n frames is
1 / (1 + n) eV/A.
One uninterrupted run is shared by the tests; the restart test runs a second one.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, opshelf

from opshelf.core.local.reuse import content_hash
from opshelf.core.workflow import EXIT_NOT_CONVERGED

WF = "clmocks:MockClWorkflow"
EXPECTED_ACCURATE = [0.25, 0.5, 0.75, 1.0]  # n / 16, see above
UNCONVERGED = ("stopped at max iterations, not converged (stage 0: accurate ratio 0.500 "
               "< 0.9)")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    done = opshelf("run", WF, str(DATA / "mock-config.yaml"), "--name", "straight",
                   "--no-progress", runs_dir=runs)
    assert done.returncode == EXIT_NOT_CONVERGED, done.stderr
    # the verdict is the last line; the run is never called "succeeded"
    assert done.stderr.splitlines()[-1] == f"opshelf: {UNCONVERGED}"
    assert "succeeded" not in done.stderr
    assert "finished, not converged" in done.stderr
    return runs / "straight"


def test_status_table_and_results(uninterrupted: Path) -> None:
    history = json.loads((uninterrupted / "results" / "history.json").read_text())
    rows = history["history"]
    assert [r["accurate_ratio"] for r in rows] == EXPECTED_ACCURATE
    assert [r["stage"] for r in rows] == [0, 0, 1, 1]
    assert [r["decision"] for r in rows] == ["continue", "max iterations, move on",
                                            "continue", "converged"]
    assert [r["n_labelled"] for r in rows] == [4, 4, 4, 0]
    assert history["done"] and not history["converged"] and history["reason"] == UNCONVERGED
    # every iteration's models scored on the same 16 held-out frames, never trained on
    assert [r["n_train_frames"] for r in rows] == [4, 8, 12, 16]
    assert [r["test_n_frames"] for r in rows] == [16] * 4
    assert [round(r["test_force_rmse_eV_per_A"], 6) for r in rows] == [
        round(1 / (1 + n), 6) for n in (4, 8, 12, 16)]
    test_data = uninterrupted / "results" / "data" / "test"
    assert sum(len(np.load(f)) for f in test_data.rglob("energy.npy")) == 16
    status = opshelf("status", str(uninterrupted), runs_dir=uninterrupted.parent)
    assert status.returncode == 0, status.stderr
    table = status.stdout.split("iter ", 1)[1]
    assert "0.750" in table and "max iterations, move on" in table
    assert f"loop finished: {UNCONVERGED}" in table
    record = json.loads((uninterrupted / "run.json").read_text())
    assert record["status"] == "unconverged" and record["outcome"] == UNCONVERGED
    assert record["attempts"][-1]["exit"] == EXIT_NOT_CONVERGED
    data = uninterrupted / "results" / "data"
    assert sorted(p.name for p in data.iterdir()) == [
        "init", "iter-000000", "iter-000001", "iter-000002", "test"]
    assert len(list((uninterrupted / "results" / "models").iterdir())) == 2
    html = (uninterrupted / "results" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "http" not in html


def test_step_keys_are_deterministic(uninterrupted: Path) -> None:
    wfdir = uninterrupted / "dflow" / "straight"
    for key in ("iter-000000--prep-train", "iter-000002--run-fp-000002",
                "iter-000002--scheduler", "iter-000003--loop", "iter-000003--collect-data"):
        assert (wfdir / key / "phase").read_text() == "Succeeded", key


def finished_pods(wfdir: Path) -> dict[str, int]:
    """Succeeded pod steps -> mtime of their log."""
    return {p.name: (p / "log.txt").stat().st_mtime_ns for p in wfdir.iterdir()
            if (p / "type").is_file() and (p / "type").read_text().strip() == "Pod"
            and (p / "phase").read_text().strip() == "Succeeded"}


def test_restart_after_a_failure_at_every_phase(uninterrupted: Path, tmp_path: Path) -> None:
    """One run fails once at each phase (in turn, in iterations 0-2); each resume re-runs no
    finished step; the final data set equals the uninterrupted run's, byte for byte."""
    phases = ["run-train@iter-000000", "prep-explore@iter-000001", "run-explore@iter-000001",
              "select-confs@iter-000001", "run-fp@iter-000002", "scheduler@iter-000002"]
    env = {"OPSHELF_CL_FAIL_AT": ",".join(phases), "OPSHELF_CL_FAIL_DIR": str(tmp_path)}
    run = opshelf("run", WF, str(DATA / "mock-config.yaml"), "--name", "bumpy",
                  "--no-progress", runs_dir=tmp_path, env=env)
    attempts = 1
    while run.returncode != EXIT_NOT_CONVERGED:
        assert "injected failure" in opshelf("status", "bumpy", runs_dir=tmp_path).stdout
        assert attempts <= len(phases)
        before = finished_pods(tmp_path / "bumpy" / "dflow" / "bumpy")
        run = opshelf("resume", "bumpy", "--no-progress", runs_dir=tmp_path, env=env)
        attempts += 1
        after = finished_pods(tmp_path / "bumpy" / "dflow" / "bumpy")
        # a finished step is never run again: its log is not rewritten
        assert {k: after.get(k) for k in before} == before
    assert attempts == len(phases) + 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("failed-")) == \
        sorted(f"failed-{p}" for p in phases)
    assert content_hash(tmp_path / "bumpy" / "results" / "data") == \
        content_hash(uninterrupted / "results" / "data")


def test_rerun_with_a_looser_stage_reuses_every_finished_step(uninterrupted: Path,
                                                              tmp_path: Path) -> None:
    """`opshelf rerun RUN NEW_CONFIG` with stage 1's min_accurate_ratio 0.99 -> 0.7: the
    steps of iterations 0-2 have unchanged inputs and are reused (not run); only the
    schedulers, which take the convergence settings, run again, and stage 1 now converges
    at iteration 2 (accurate 0.75), so the loop ends one iteration earlier."""
    from opshelf.core.local.reuse import REUSED_MARKER

    config = (DATA / "mock-config.yaml").read_text()
    assert config.count("min_accurate_ratio: 0.99") == 1
    new_config = tmp_path / "looser.yaml"
    new_config.write_text(config.replace("min_accurate_ratio: 0.99", "min_accurate_ratio: 0.7"))
    (tmp_path / "init-cu.extxyz").symlink_to(DATA / "init-cu.extxyz")
    done = opshelf("rerun", str(uninterrupted), str(new_config), "--name", "looser",
                   "--no-progress", runs_dir=uninterrupted.parent)
    assert done.returncode == EXIT_NOT_CONVERGED, done.stderr  # stage 0 still unconverged
    run = uninterrupted.parent / "looser"
    history = json.loads((run / "results" / "history.json").read_text())
    assert [r["decision"] for r in history["history"]] == [
        "continue", "max iterations, move on", "converged"]
    pods = finished_pods(run / "dflow" / "looser")
    reused = {k for k in pods if (run / "dflow" / "looser" / k / REUSED_MARKER).is_file()}
    work = {k for k in pods if not k.endswith("--scheduler")}
    assert work and work <= reused, sorted(work - reused)
    assert not any(k.endswith("--scheduler") for k in reused)
    for it in ("iter-000000", "iter-000001", "iter-000002"):
        assert content_hash(run / "results" / "data" / it) == \
            content_hash(uninterrupted / "results" / "data" / it)


def test_results_step_of_an_argo_run_writes_what_collect_wrote(uninterrupted: Path) -> None:
    """The step an exported (Argo) cl run ends with: core's WriteResults on the loop step's
    outputs (the recursion hands the final iteration's models, data set and state up, as
    DPGEN2's loop does) and the uploaded initial data. Run here on the finished run's
    artifacts (resume: every finished step is reused, only it runs): the same files as the
    driver's collect; models, data, history and status equal; the report has the table
    but no per-iteration plots (earlier iterations' outputs are not the loop's)."""

    from opshelf.core.testing import run_results_step_locally

    written = run_results_step_locally(WF, DATA / "mock-config.yaml", uninterrupted)
    collected = uninterrupted / "results"

    def files(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    assert files(written) == files(collected)
    assert content_hash(written / "data") == content_hash(collected / "data")
    assert content_hash(written / "models") == content_hash(collected / "models")
    assert len(list((written / "models").iterdir())) == 2
    assert json.loads((written / "history.json").read_text()) == \
        json.loads((collected / "history.json").read_text())
    assert (written / "status.txt").read_text() == (collected / "status.txt").read_text()
    report = (written / "report.html").read_text()
    assert html.escape(f"loop finished: {UNCONVERGED}") in report
    assert "4 iterations finished" in report
    # the answer first: the verdict, then the held-out error, then the diagnostics
    assert report.index(html.escape(UNCONVERGED)) < report.index("Held-out error") < \
        report.index("Diagnostics")
