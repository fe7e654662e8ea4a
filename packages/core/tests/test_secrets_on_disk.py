"""No credential of the environment is ever written to disk (issue 19).

Distinctive S3/AWS/dflow credentials are planted in the environment of a local run, a run
whose steps go through dpdispatcher (Shell batch, LocalContext) and an `export-argo`; then
every file those wrote (step scripts, staged inputs, manifests, logs, run records, the
dispatcher's job folders, tarballs opened) is searched for them."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from opshelf.core.secrets import scrub_step_script

#: Distinctive stand-ins for real credentials: found anywhere, they leaked.
PLANTED = {
    "DFLOW_S3_ACCESS_KEY": "AKIAOPSHELFPLANT7Q1",
    "DFLOW_S3_SECRET_KEY": "s3-secret-opshelf-plant-4c9e",
    "DFLOW_TOKEN": "dflow-token-opshelf-plant-81d0",
    "AWS_ACCESS_KEY_ID": "AKIAOPSHELFPLANTAWS2",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-opshelf-plant-6b3a",
    "AWS_SESSION_TOKEN": "aws-session-opshelf-plant-0f57",
}
LABEL = {"generate": {"element": "Cu", "crystal": "fcc", "lattice_constant_A": 3.59,
                      "supercell": [1, 1, 1], "n_frames": 2, "rattle_A": 0.05, "seed": 1},
         "engine": {"name": "ase", "settings": {"calculator": "emt"}},
         "task": {"kind": "single_point"}}


def opshelf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **PLANTED, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "opshelf.core.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def contents(root: Path) -> dict[str, bytes]:
    """Every file under root (links not followed), and every member of a tarball in it."""
    found: dict[str, bytes] = {}
    for parent, _dirs, files in os.walk(root):
        for name in files:
            path = Path(parent, name)
            if path.is_symlink() or not path.is_file():
                continue
            found[str(path)] = path.read_bytes()
            if tarfile.is_tarfile(path):
                with tarfile.open(path) as archive:
                    for member in archive.getmembers():
                        handle = archive.extractfile(member) if member.isfile() else None
                        if handle is not None:
                            found[f"{path}:{member.name}"] = handle.read()
    return found


def leaks(root: Path) -> list[str]:
    return [f"{where}: {variable}" for where, data in contents(root).items()
            for variable, value in PLANTED.items() if value.encode() in data]


def step_scripts(root: Path) -> list[Path]:
    return [p for p in root.rglob("script") if p.is_file()]


def test_scrub_step_script_drops_dflow_credentials() -> None:
    script = ("from dflow import config, jsonpickle, s3_config\n"
              "config.update(jsonpickle.loads(r'''{\"token\": \"T\", \"mode\": \"debug\"}'''))\n"
              "s3_config.update(jsonpickle.loads(r'''{\"access_key\": \"A\", \"secret_key\": \"S\","
              " \"endpoint\": \"e:9000\"}'''))\nprint('step')\n")
    scrubbed = scrub_step_script(script)
    assert '"T"' not in scrubbed and '"A"' not in scrubbed and '"S"' not in scrubbed
    assert '"mode": "debug"' in scrubbed and '"endpoint": "e:9000"' in scrubbed
    assert scrubbed.endswith("print('step')\n")


def test_a_local_run_writes_no_credential(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(LABEL))
    done = opshelf("run", "label", "cfg.yaml", "--runs-dir", "runs", "--no-progress",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(step_scripts(tmp_path / "runs")) >= 3  # what dflow wrote was searched
    assert leaks(tmp_path) == []
    assert not any(value in done.stdout + done.stderr for value in PLANTED.values())


def test_a_dispatcher_submission_writes_no_credential(tmp_path: Path) -> None:
    """dpdispatcher removes its job folders after a job: the job's interpreter is a wrapper
    that first copies the job folder (job script, step script, inputs) to `captured/`."""
    captured = tmp_path / "captured"
    wrapper = tmp_path / "python-capturing"
    wrapper.write_text(f"#!/bin/sh\nmkdir -p {captured}/$$ && cp -r \"$PWD/..\" {captured}/$$/\n"
                       f"exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    machine = {"batch_type": "Shell", "context_type": "LocalContext",
               "remote_root": str(tmp_path / "remote")}
    (tmp_path / "remote").mkdir()
    config = {**LABEL, "steps": {"run-task": {"executor": {
        "kind": "dispatcher", "machine": machine, "poll_interval_s": 0.5,
        "python": str(wrapper)}}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    done = opshelf("run", "label", "cfg.yaml", "--runs-dir", "runs", "--no-progress",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # what dpdispatcher wrote for the job was captured: its Shell job script, the step script
    assert list(captured.rglob("*.sub")) and step_scripts(captured)
    assert leaks(tmp_path) == []


def test_an_export_writes_no_credential(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(LABEL))
    done = opshelf("export-argo", "label", "cfg.yaml", "-o", "out/wf.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "wf.yaml").is_file()
    assert any((tmp_path / "out" / "wf.inputs").rglob("*.tgz"))  # staged inputs searched too
    assert leaks(tmp_path) == []


def test_a_password_by_reference_reaches_the_submission_and_no_file(tmp_path: Path) -> None:
    """`remote_profile.password: {env: NAME}`: the dispatcher step reads NAME from its own
    environment, in memory. A LocalContext takes (and ignores) a password, and dpdispatcher
    writes its remote_profile into the submission records it keeps (the remote `<hash>.json`,
    the recovery record under ~/.dpdispatcher): they must show the reference, not the value."""
    name, value = "OPSHELF_TEST_SLURM_PASSWORD", "slurm-pw-opshelf-plant-d2e8"
    captured = tmp_path / "captured"
    wrapper = tmp_path / "python-capturing"
    wrapper.write_text(f"#!/bin/sh\nmkdir -p {captured}/$$ && cp -r \"$PWD/..\" {captured}/$$/\n"
                       f"exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    machine = {"batch_type": "Shell", "context_type": "LocalContext",
               "remote_root": str(tmp_path / "remote"), "remote_profile": {"password": {"env": name}}}
    (tmp_path / "remote").mkdir()
    config = {**LABEL, "steps": {"run-task": {"executor": {
        "kind": "dispatcher", "machine": machine, "poll_interval_s": 0.5,
        "python": str(wrapper)}}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    # HOME (dpdispatcher's ~/.dpdispatcher records, caches) and TMPDIR inside tmp_path: every
    # file the run writes, outside its run directory too, is searched
    (tmp_path / "home").mkdir()
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, name: value, "OMP_NUM_THREADS": "1", "HOME": str(tmp_path / "home"),
           "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run([sys.executable, "-m", "opshelf.core.cli", "run", "label", "cfg.yaml",
                           "--runs-dir", "runs", "--no-progress"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    files = contents(tmp_path)
    assert not [where for where, data in files.items() if value.encode() in data]
    assert value not in done.stdout + done.stderr
    # dpdispatcher did write the machine's remote_profile, showing the reference
    submissions = [data for where, data in files.items()
                   if where.startswith(str(captured)) and where.endswith(".json")
                   and b'"remote_profile"' in data]
    assert submissions and all(f"<env:{name}>".encode() in data for data in submissions)


def test_a_reference_to_an_unset_variable_stops_the_run_before_any_work(tmp_path: Path) -> None:
    machine = {"batch_type": "Shell", "context_type": "LocalContext",
               "remote_root": str(tmp_path / "remote"),
               "remote_profile": {"password": {"env": "OPSHELF_TEST_UNSET_PW"}}}
    config = {**LABEL, "steps": {"run-task": {"executor": {"kind": "dispatcher",
                                                           "machine": machine}}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "OPSHELF_TEST_UNSET_PW"}
    done = subprocess.run([sys.executable, "-m", "opshelf.core.cli", "run", "label", "cfg.yaml",
                           "--runs-dir", "runs"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "remote_profile.password" in lines[0] and "OPSHELF_TEST_UNSET_PW" in lines[0]
    assert "not set" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]


def test_resume_with_the_referenced_variable_unset_stops_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`opshelf run` refuses an unset variable before anything is written; `opshelf resume`
    of a run made while it was set should refuse the same way, before any step runs."""
    from opshelf.core.local.runner import create_run

    name = "OPSHELF_TEST_RESUME_PW"
    machine = {"batch_type": "Shell", "context_type": "LocalContext",
               "remote_root": str(tmp_path / "remote"), "remote_profile": {"password": {"env": name}}}
    (tmp_path / "remote").mkdir()
    config = {**LABEL, "steps": {"run-task": {"executor": {"kind": "dispatcher",
                                                           "machine": machine}}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv(name, "resume-pw-opshelf-plant-19c3")
    run = create_run("label", tmp_path / "cfg.yaml", runs_root=tmp_path / "runs")
    env = {k: v for k, v in os.environ.items() if k != name}
    done = subprocess.run([sys.executable, "-m", "opshelf.core.cli", "resume", str(run.path),
                           "--no-progress"], cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert name in done.stderr and "Traceback" not in done.stderr
