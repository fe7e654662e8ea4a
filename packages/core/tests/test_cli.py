"""The `opshelf` command as a user meets it: errors a user can cause exit 2 with one clear
message and no traceback; schema, list and export-argo work without running anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "wfdata"))
from runhelp import LEDGER_WF, opshelf, write_config

from opshelf.core.testing import argo_schema_errors


def test_help_lists_every_command() -> None:
    res = opshelf("--help")
    assert res.returncode == 0, res.stderr
    for cmd in ("run", "status", "resume", "rerun", "report", "schema", "export-argo", "list",
                "runs", "stop", "logs", "steps"):
        assert cmd in res.stdout


def test_misspelt_key_exits_2_naming_key_and_suggestion(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bad.yaml", ledger="l.txt", chain=2, fanuot=3)
    runs = tmp_path / "runs"
    res = opshelf("run", LEDGER_WF, str(cfg), "--runs-dir", str(runs))
    assert res.returncode == 2
    assert "opshelf: error:" in res.stderr
    assert "'fanuot'" in res.stderr and "did you mean 'fanout'" in res.stderr
    assert "Traceback" not in res.stderr
    # checked before any work: no run directory was made
    assert not runs.exists() or not any(runs.iterdir())


def test_misspelt_step_name_is_caught_before_the_run(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bad.yaml", ledger="l.txt", steps={"chian": {"retries": 1}})
    runs = tmp_path / "runs"
    res = opshelf("run", LEDGER_WF, str(cfg), "--runs-dir", str(runs))
    assert res.returncode == 2
    assert "unknown step name 'chian'" in res.stderr and "did you mean 'chain'" in res.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_unknown_workflow_names_the_installed_ones(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", ledger="l.txt")
    res = opshelf("run", "lable", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 2
    assert "unknown workflow 'lable'" in res.stderr
    assert "Installed:" in res.stderr and "label" in res.stderr
    assert "Traceback" not in res.stderr


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    res = opshelf("--debug", "run", "lable", str(tmp_path / "c.yaml"))
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "opshelf: error:" in res.stderr


def test_missing_config_and_unknown_run_exit_2(tmp_path: Path) -> None:
    res = opshelf("run", LEDGER_WF, str(tmp_path / "nope.yaml"), "--runs-dir", str(tmp_path))
    assert res.returncode == 2 and "config file not found" in res.stderr
    res = opshelf("status", "no-such-run", "--runs-dir", str(tmp_path))
    assert res.returncode == 2 and "no run 'no-such-run'" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_import_path_exits_2(tmp_path: Path) -> None:
    res = opshelf("schema", "no_such_module_xyz:Plugin")
    assert res.returncode == 2 and "cannot import workflow" in res.stderr


def test_schema_is_the_config_json_schema() -> None:
    res = opshelf("schema", LEDGER_WF)
    assert res.returncode == 0, res.stderr
    schema = json.loads(res.stdout)
    assert schema["additionalProperties"] is False  # strict: unknown keys are errors
    assert {"ledger", "chain", "fanout", "steps"} <= set(schema["properties"])
    assert schema["required"] == ["ledger"]


def test_list_shows_core_entry_points_with_distribution() -> None:
    res = opshelf("list", "--json")
    assert res.returncode == 0, res.stderr
    listing = json.loads(res.stdout)
    assert set(listing) == {"workflows", "ops", "engines", "models"}
    assert "opshelf-core" in listing["workflows"]["label"]
    assert "opshelf.core.engines.ase_engine:AseEngine" in listing["engines"]["ase"]
    assert "emt" in listing["models"]
    text = opshelf("list")
    assert text.returncode == 0 and "workflows:" in text.stdout and "engines:" in text.stdout


def test_export_argo_writes_a_complete_valid_manifest(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", ledger="l.txt", chain=2, fanout=3)
    out = tmp_path / "wf.yaml"
    res = opshelf("export-argo", LEDGER_WF, str(cfg), "-o", str(out))
    assert res.returncode == 0, res.stderr
    manifest = yaml.safe_load(out.read_text())
    assert manifest["apiVersion"] == "argoproj.io/v1alpha1" and manifest["kind"] == "Workflow"
    steps = [s["name"] for group in manifest["spec"]["templates"][0]["steps"] for s in group]
    assert steps == ["chain-000", "chain-001", "fan"]
    # Argo's own schema, pinned in opshelf-core (testing/data/argo/README.md)
    assert argo_schema_errors(manifest) == []


@pytest.mark.parametrize("argv", [["list"], ["schema", "label"]])
def test_a_closed_pipe_is_not_a_traceback(argv: list[str]) -> None:
    """`opshelf list | head`: the reader went away; exit 141 (as for SIGPIPE), no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "opshelf.core.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes anything: every write meets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
