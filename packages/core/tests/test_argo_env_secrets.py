"""`export-argo` and a dispatcher password by reference (issue 19).

`remote_profile.password: {env: NAME}` stays a reference in the manifest; the dispatcher pods
whose machine reads NAME get it from a Kubernetes secret (`env[].valueFrom.secretKeyRef`):
`--secret-ref NAME=SECRET/KEY`, else secret `opshelf-credentials`, key NAME lower-cased. The
value, set in the environment at export time, reaches no file, and the manifest stays valid
against Argo's pinned schema."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_config_credentials import PLANTED as PLANTED_IN_CONFIG
from test_config_credentials import _config as credential_config

from opshelf.core.errors import ConfigError
from opshelf.core.export_argo import MIN_SEARCHED_SECRET, ArgoSettings, build_manifest
from opshelf.core.testing.argo import argo_schema_errors

#: distinctive stand-ins for real credentials: found anywhere, they leaked
PASSWORD = ("OPSHELF_TEST_SLURM_PASSWORD", "slurm-pw-opshelf-argo-plant-3f1c")
PASSPHRASE = ("OPSHELF_TEST_KEY_PASSPHRASE", "key-phrase-opshelf-argo-plant-77a0")
LABEL = {"generate": {"element": "Cu", "crystal": "fcc", "lattice_constant_A": 3.59,
                      "supercell": [1, 1, 1], "n_frames": 2, "rattle_A": 0.05, "seed": 1},
         "engine": {"name": "ase", "settings": {"calculator": "emt"}},
         "task": {"kind": "single_point"}}


def config(path: Path, remote_profile: dict[str, Any], **machine: Any) -> Path:
    profile = {"hostname": "hpc.example.org", "username": "me", **remote_profile}
    steps = {"run-task": {"executor": {"kind": "dispatcher", "machine": {
        "batch_type": "Slurm", "context_type": "SSHContext", "remote_root": "/scratch/me",
        "remote_profile": profile, **machine}}}}
    path.write_text(yaml.safe_dump({**LABEL, "steps": steps}))
    return path


def export(cwd: Path, *args: str, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opshelf.core.cli", "export-argo", "label",
                           *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300, check=False)


def files_holding(root: Path, value: str) -> list[str]:
    """Every file under root (and member of a tarball there) whose bytes hold `value`."""
    found = []
    for path in (p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                data += b"".join(archive.extractfile(m).read()  # type: ignore[union-attr]
                                 for m in archive.getmembers() if m.isfile())
        if value.encode() in data:
            found.append(str(path))
    return found


def secret_env(template: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A template's environment variables taken from a secret: name -> secretKeyRef."""
    container = template.get("script") or template.get("container") or {}
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env") or []
            if "valueFrom" in e}


def test_a_reference_becomes_a_secret_key_ref_of_the_dispatcher_pod_only(tmp_path: Path) -> None:
    cfg = config(tmp_path / "cfg.yaml", {"password": {"env": PASSWORD[0]},
                                          "passphrase": {"env": PASSPHRASE[0]}})
    done = export(tmp_path, "cfg.yaml", "-o", "out/wf.yaml", "--secret-ref",
                  f"{PASSWORD[0]}=hpc-login/password", env=dict([PASSWORD, PASSPHRASE]))
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load((tmp_path / "out" / "wf.yaml").read_text())
    assert argo_schema_errors(manifest) == []
    # the planted values (set at export time) reach no file and nothing printed
    assert any((tmp_path / "out" / "wf.inputs").rglob("*.tgz"))  # staged inputs searched too
    for _name, value in (PASSWORD, PASSPHRASE):
        assert files_holding(tmp_path, value) == []
        assert value not in done.stdout + done.stderr
    assert PASSWORD[0] in cfg.read_text()  # the control: the reference is what was written
    templates = manifest["spec"]["templates"]
    dispatching = [t for t in templates if "_opshelf_machine(json.loads(" in
                   (t.get("script") or {}).get("source", "")]
    assert len(dispatching) == 1, [t["name"] for t in templates]  # run-task only
    refs = secret_env(dispatching[0])
    assert refs[PASSWORD[0]] == {"name": "hpc-login", "key": "password"}  # --secret-ref
    # no --secret-ref: the default secret, the name lower-cased
    assert refs[PASSPHRASE[0]] == {"name": "opshelf-credentials",
                                   "key": PASSPHRASE[0].lower()}
    others = [t for t in templates if t is not dispatching[0]]
    assert others and not any({PASSWORD[0], PASSPHRASE[0]} & set(secret_env(t))
                              for t in others)


def test_the_value_is_not_needed_at_export_time(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path / "cfg.yaml", {"password": {"env": PASSWORD[0]}})
    monkeypatch.delenv(PASSWORD[0], raising=False)
    manifest = build_manifest("label", cfg, run_dir=tmp_path)
    assert argo_schema_errors(manifest) == []
    assert any(secret_env(t).get(PASSWORD[0]) == {"name": "opshelf-credentials",
                                                  "key": PASSWORD[0].lower()}
               for t in manifest["spec"]["templates"])


def test_the_ssh_secret_and_a_password_reference_together(tmp_path: Path) -> None:
    """--ssh-secret finds the dispatcher pod through opshelf's machine loader (it missed it
    after 2a4d075 replaced dflow's Machine.load_from_dict: 'no step ... through a dispatcher')."""
    cfg = config(tmp_path / "cfg.yaml", {"key_filename": "/etc/opshelf/ssh/id_ed25519",
                                          "passphrase": {"env": PASSPHRASE[0]}})
    manifest = build_manifest("label", cfg, run_dir=tmp_path,
                              settings=ArgoSettings(ssh_secret="hpc-ssh"))
    assert argo_schema_errors(manifest) == []
    pods = [t for t in manifest["spec"]["templates"]
            if any(v.get("name") == "opshelf-ssh" for v in t.get("volumes") or [])]
    assert len(pods) == 1 and PASSPHRASE[0] in secret_env(pods[0])


def test_the_value_elsewhere_in_the_config_stops_the_export(tmp_path: Path) -> None:
    """The control of the grep: the export's own check finds the value when the config does
    put it into the manifest (here in remote_root), and writes nothing."""
    config(tmp_path / "cfg.yaml", {"password": {"env": PASSWORD[0]}},
           remote_root=f"/scratch/{PASSWORD[1]}")
    (tmp_path / "tmp").mkdir()
    done = export(tmp_path, "cfg.yaml", "-o", "out/wf.yaml",
                  env={PASSWORD[0]: PASSWORD[1], "TMPDIR": str(tmp_path / "tmp")})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and PASSWORD[0] in done.stderr
    # which variable matched, and where (the manifest's path, or the staged input's name)
    assert re.search(rf"environment {PASSWORD[0]} \(config [^)]*password\) "
                     r"(at manifest\.\S+|in staged input \S+)", done.stderr), done.stderr
    assert PASSWORD[1] not in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []  # no scratch left behind either


def test_a_short_password_in_the_environment_does_not_stop_the_export(tmp_path: Path) -> None:
    """"me" is in "name" and "image": before, any manifest "held" it and the export refused
    with "the credential(s) of environment NAME". A value shorter than MIN_SEARCHED_SECRET
    is not searched for, and the export says so, naming the variable."""
    assert MIN_SEARCHED_SECRET > len("me")
    config(tmp_path / "cfg.yaml", {"password": {"env": PASSWORD[0]}})
    done = export(tmp_path, "cfg.yaml", "-o", "wf.yaml", env={PASSWORD[0]: "me"})
    assert done.returncode == 0, done.stderr
    assert "me" in (tmp_path / "wf.yaml").read_text()  # the control: the text does hold it
    note = [line for line in done.stderr.splitlines() if "not searched for" in line]
    assert len(note) == 1 and f"environment {PASSWORD[0]} (config " in note[0], done.stderr


def test_a_short_credential_written_in_the_config_is_still_refused(tmp_path: Path) -> None:
    """The length rule is for searching: a password written into the config is refused by
    its key, whatever its length, before any work."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(credential_config("password", "me")))
    done = export(tmp_path, "cfg.yaml", "-o", "wf.yaml")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "remote_profile.password" in done.stderr and "refusing to export" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]


@pytest.mark.parametrize(("given", "message"), [
    ("NOT_REFERENCED=s/k", "no dispatcher step of this config reads it"),
    ("1BAD=s/k", "expected NAME=SECRET/KEY"),
    (f"{PASSWORD[0]}", "expected NAME=SECRET/KEY"),
    (f"{PASSWORD[0]}=Bad_Secret/k", "not a Kubernetes name"),
    (f"{PASSWORD[0]}=s/bad key", "not a secret key"),
])
def test_a_bad_secret_ref_is_refused_before_anything_is_written(
        tmp_path: Path, given: str, message: str) -> None:
    cfg = config(tmp_path / "cfg.yaml", {"password": {"env": PASSWORD[0]}})
    with pytest.raises(ConfigError, match=message):
        build_manifest("label", cfg, run_dir=tmp_path, inputs_dir=tmp_path / "staged",
                       settings=ArgoSettings(secret_refs=(given,)))


def test_a_bad_secret_ref_on_the_command_line_is_one_line_and_writes_nothing(
        tmp_path: Path) -> None:
    config(tmp_path / "cfg.yaml", {"password": {"env": PASSWORD[0]}})
    done = export(tmp_path, "cfg.yaml", "-o", "wf.yaml", "--secret-ref", "OTHER=s/k")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--secret-ref OTHER" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]


def test_a_reference_to_the_s3_variables_is_refused(tmp_path: Path) -> None:
    """The pods take DFLOW_S3_SECRET_KEY from the S3 secret: a password reference of that
    name would replace it (the pod's store key then the SSH password)."""
    cfg = config(tmp_path / "cfg.yaml", {"password": {"env": "DFLOW_S3_SECRET_KEY"}})
    with pytest.raises(ConfigError, match="DFLOW_S3_SECRET_KEY.*S3 secret"):
        build_manifest("label", cfg, run_dir=tmp_path, inputs_dir=tmp_path / "staged")


def test_a_reference_outside_remote_profile_stops_the_export(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**LABEL, "steps": {"run-task": {"executor": {
        "kind": "dispatcher", "machine": {"batch_type": "Slurm", "context_type": "SSHContext",
                                          "remote_root": "/scratch"},
        "resources": {"envs": {"HF_TOKEN": {"env": "HF_TOKEN"}}}}}}}))
    with pytest.raises(ConfigError, match="resolved only as a key of a dispatcher"):
        build_manifest("label", path, run_dir=tmp_path, inputs_dir=tmp_path / "staged")


def test_the_command_the_cluster_guide_shows(tmp_path: Path) -> None:
    """docs/cluster.md's export line, run as written against a config naming the variable."""
    guide = Path(__file__).resolve().parents[3] / "docs" / "cluster.md"
    lines = [line.split() for line in guide.read_text().splitlines()
             if line.startswith("opshelf export-argo") and "--secret-ref" in line]
    assert len(lines) == 1, lines
    argv = lines[0][3:]  # after `opshelf export-argo label`
    assert argv[0] == "config.yaml" and "SLURM_PASSWORD=hpc-login/password" in argv
    config(tmp_path / "config.yaml", {"password": {"env": "SLURM_PASSWORD"}})
    done = export(tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load((tmp_path / "wf.yaml").read_text())
    assert any(secret_env(t).get("SLURM_PASSWORD") == {"name": "hpc-login", "key": "password"}
               for t in manifest["spec"]["templates"])


@pytest.mark.parametrize("where,secret,key", PLANTED_IN_CONFIG)
def test_an_export_of_a_config_with_a_credential_is_refused_and_leaves_nothing(
        where: str, secret: str, key: str, tmp_path: Path) -> None:
    """The issue's list for export-argo: each credential a user can write into a config
    stops the export (exit 2, one line naming the key, never the value), and nothing is left
    behind: no manifest, no staged inputs, no scratch folder in TMPDIR."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(credential_config(where, secret)))
    (tmp_path / "tmp").mkdir()
    done = export(tmp_path, "cfg.yaml", "-o", "out/wf.yaml",
                  env={"TMPDIR": str(tmp_path / "tmp")})
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and key in done.stderr, done.stderr
    assert secret not in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []
