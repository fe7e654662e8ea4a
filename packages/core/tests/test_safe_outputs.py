"""An output path never replaces an input, and a refused export writes nothing (issue 19).

`opshelf export-argo WORKFLOW CONFIG -o OUT` is refused (exit 2, one line, nothing written)
when OUT is the config, a symbolic or hard link to it, or one of the files the workflow
uploads; and when the manifest or its staged inputs would hold a credential."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "wfdata"))
from runhelp import opshelf

from opshelf.core.cli import main
from opshelf.core.errors import ConfigError
from opshelf.core.outputs import refuse_output_over_inputs, same_file

GENERATE = {"element": "Cu", "crystal": "fcc", "lattice_constant_A": 3.59,
            "supercell": [1, 1, 1], "n_frames": 2, "rattle_A": 0.05, "seed": 1}
EMT = {"name": "ase", "settings": {"calculator": "emt"}}


def label_config(path: Path, **extra: object) -> Path:
    config = {"generate": GENERATE, "engine": EMT, "task": {"kind": "single_point"}, **extra}
    path.write_text(yaml.safe_dump(config))
    return path


def files_under(root: Path) -> dict[str, bytes]:
    """Every file (and link) under root with its content: what a command may not change."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = f"-> {os.readlink(path)}".encode()
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["export-argo", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_same_file_sees_paths_symlinks_and_hard_links(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("x")
    (tmp_path / "sym.yaml").symlink_to(a)
    os.link(a, tmp_path / "hard.yaml")
    (tmp_path / "other.yaml").write_text("x")
    assert same_file(a, tmp_path / "." / "a.yaml")
    assert same_file(tmp_path / "sym.yaml", a) and same_file(tmp_path / "hard.yaml", a)
    assert not same_file(tmp_path / "other.yaml", a)
    assert not same_file(tmp_path / "missing.yaml", a)
    with pytest.raises(ConfigError, match=r"^-o/--output .*hard.yaml is a link to the input "):
        refuse_output_over_inputs(tmp_path / "hard.yaml", [tmp_path / "other.yaml", a])
    refuse_output_over_inputs(tmp_path / "new.yaml", [a])  # a new file: fine


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink", "relative"])
def test_export_argo_refuses_to_write_over_its_config(
        link: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = label_config(tmp_path / "cfg.yaml")
    out = {"same": "cfg.yaml", "relative": "./sub/../cfg.yaml", "symlink": "sym.yaml",
           "hardlink": "hard.yaml"}[link]
    (tmp_path / "sub").mkdir()
    if link == "symlink":
        (tmp_path / out).symlink_to(config)
    elif link == "hardlink":
        os.link(config, tmp_path / out)
    before = files_under(tmp_path)
    code, err = export(capsys, "label", "cfg.yaml", "-o", out)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"opshelf: error: -o/--output {Path(out)} ")
    assert "the input cfg.yaml: refusing to write over an input (nothing written)" in err[0]
    assert files_under(tmp_path) == before


def test_export_argo_refuses_to_write_over_an_uploaded_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o` naming a frames file the workflow uploads (found behind dflow's upload links)."""
    import ase.io
    from ase.build import bulk

    frames = tmp_path / "frames.extxyz"
    ase.io.write(frames, [bulk("Cu", "fcc", a=3.6)], format="extxyz")
    config = {"frames": ["frames.extxyz"], "engine": EMT, "task": {"kind": "single_point"}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    before = files_under(tmp_path)
    code, err = export(capsys, "label", str(tmp_path / "cfg.yaml"), "-o", str(frames))
    assert code == 2 and len(err) == 1
    assert f"-o/--output {frames} is the input {frames}: refusing" in err[0]
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("where,secret", [
    ("passphrase", "PASSPHRASE-opshelf-7f3a"),
    ("sshpass", "SSHPW-opshelf-91c2"),
    ("engine_env", "AWS-SECRET-opshelf-5d0e"),
    ("password", "PASSWORD-opshelf-2b8d"),
])
def test_a_refused_export_leaves_nothing_behind(
        where: str, secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = {"hostname": "login.example.org", "username": "me",
               "key_filename": "/etc/opshelf/ssh/id_ed25519"}
    engine = dict(EMT)
    if where == "passphrase":
        profile["passphrase"] = secret
    elif where == "password":
        profile["password"] = secret
    elif where == "sshpass":
        profile["execute_command"] = f"sshpass -p '{secret}' ssh login.example.org"
    else:
        engine = {**EMT, "profile": {"env": {"AWS_SECRET_ACCESS_KEY": secret}}}
    machine = {"batch_type": "Slurm", "context_type": "SSHContext", "remote_root": "/scratch/me",
               "remote_profile": profile}
    steps = {"default": {"executor": {"kind": "dispatcher", "machine": machine}}}
    config = {"generate": GENERATE, "engine": engine, "task": {"kind": "single_point"},
              "steps": steps}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    before = files_under(tmp_path)
    code, err = export(capsys, "label", str(tmp_path / "cfg.yaml"), "-o",
                       str(tmp_path / "out" / "wf.yaml"))
    assert code == 2 and len(err) == 1, err
    assert "refusing to export (nothing written)" in err[0]
    assert "environment variables from a Kubernetes secret reference" in err[0]
    assert secret not in err[0]  # the message names the key, never the value
    assert files_under(tmp_path) == before and not (tmp_path / "out").exists()


def test_output_over_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    config = label_config(tmp_path / "cfg.yaml")
    res = opshelf("export-argo", "label", str(config), "-o", str(config))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert yaml.safe_load(config.read_text())["engine"] == EMT  # untouched
