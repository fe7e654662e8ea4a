"""A credential written into a config never reaches the run directory (issue 19).

`opshelf run` keeps a copy of the config in the run directory (config.yaml); a password, an
sshpass command line or an engine token in it would sit there in the clear. The run is refused
before anything is written, naming the key and never the value. Planted values, one per
place a user can write one.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from opshelf.core.cli import main
from opshelf.core.secrets import config_credentials, refuse_config_credentials

GENERATE = {"element": "Cu", "crystal": "fcc", "lattice_constant_A": 3.59,
            "supercell": [1, 1, 1], "n_frames": 2}
EMT = {"name": "ase", "settings": {"calculator": "emt"}}
PROFILE = {"hostname": "login.example.org", "username": "me",
           "key_filename": "/home/me/.ssh/id_ed25519"}


def _config(where: str, secret: str) -> dict[str, Any]:
    profile, engine, resources = dict(PROFILE), dict(EMT), {}
    if where in ("password", "passphrase", "totp_secret"):
        profile[where] = secret
    elif where == "sshpass":
        profile["execute_command"] = f"sshpass -p '{secret}' ssh login.example.org"
    elif where == "engine_env":
        engine["profile"] = {"env": {"AWS_SECRET_ACCESS_KEY": secret}}
    elif where == "resources_envs":
        resources = {"envs": {"HF_TOKEN": secret}}
    machine = {"batch_type": "Slurm", "context_type": "SSHContext", "remote_root": "/scratch",
               "remote_profile": profile}
    executor = {"kind": "dispatcher", "machine": machine, "resources": resources}
    return {"generate": GENERATE, "engine": engine, "task": {"kind": "single_point"},
            "steps": {"default": {"executor": executor}}}


PLANTED = [("password", "PASSWORD-opshelf-c41e", "remote_profile.password"),
           ("passphrase", "PASSPHRASE-opshelf-77a0", "remote_profile.passphrase"),
           ("totp_secret", "TOTP-opshelf-0b9d", "remote_profile.totp_secret"),
           ("sshpass", "SSHPW-opshelf-e3f1", "execute_command"),
           ("engine_env", "AWS-opshelf-5c2a", "AWS_SECRET_ACCESS_KEY"),
           ("resources_envs", "HF-opshelf-9d14", "HF_TOKEN")]


@pytest.mark.parametrize("where,secret,key", PLANTED)
def test_a_run_with_a_credential_in_its_config_is_refused_and_writes_nothing(
        where: str, secret: str, key: str, tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(_config(where, secret)), encoding="utf-8")
    runs = tmp_path / "runs"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "label", str(config), "--runs-dir", str(runs)])
    message = err.getvalue()
    assert code == 2, message
    assert key in message and "refuses to run" in message, message
    assert secret not in message  # the key is named, never the value
    assert not runs.exists()  # no run directory, so no staged copy of the config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]


def test_the_same_config_without_the_credential_passes_the_check() -> None:
    """The control: the refusal comes from the planted value, not from the rest."""
    config = _config("none", "")
    assert config_credentials(config) == {}
    refuse_config_credentials(config, "cfg.yaml")
