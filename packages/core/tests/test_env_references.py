"""Secrets by reference (issue 19): `{env: NAME}` in a dispatcher machine's remote_profile.

The run-level proofs (a dispatcher run greps clean; an unset variable stops `opshelf run`)
are in test_secrets_on_disk.py; here the check's rules and the step-side resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opshelf.core.errors import ConfigError
from opshelf.core.secrets import (
    RESOLVE_MACHINE_SOURCE,
    check_env_references,
    config_credentials,
    env_references,
)

REF = {"env": "OPSHELF_PW"}


def _config(profile: dict[str, Any], resources: dict[str, Any] | None = None) -> dict[str, Any]:
    machine = {"batch_type": "Slurm", "context_type": "SSHContext", "remote_root": "/scratch",
               "remote_profile": profile}
    return {"steps": {"run-fp": {"executor": {"kind": "dispatcher", "machine": machine,
                                              "resources": resources or {}}}}}


def test_references_are_found_by_their_key() -> None:
    config = _config({"hostname": "h", "password": REF, "totp_secret": {"env": "OPSHELF_TOTP"}})
    assert env_references(config) == {
        "steps.run-fp.executor.machine.remote_profile.password": "OPSHELF_PW",
        "steps.run-fp.executor.machine.remote_profile.totp_secret": "OPSHELF_TOTP"}
    # a reference is no credential in the clear: the config-credential check passes it
    assert config_credentials(config) == {}


def test_a_set_variable_passes_and_an_unset_one_is_named() -> None:
    config = _config({"hostname": "h", "password": REF})
    check_env_references(config, "cfg.yaml", environ={"OPSHELF_PW": "s3cret-value"})
    for environ in ({}, {"OPSHELF_PW": ""}):
        with pytest.raises(ConfigError) as caught:
            check_env_references(config, "cfg.yaml", environ=environ)
        message = str(caught.value)
        assert "remote_profile.password" in message and "OPSHELF_PW" in message
        assert "not set" in message and "\n" not in message


def test_a_reference_elsewhere_or_a_bad_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"resources\.envs\.HF_TOKEN: .*remote_profile"):
        check_env_references(_config({"hostname": "h"}, {"envs": {"HF_TOKEN": REF}}), "c",
                             environ={"OPSHELF_PW": "x"})
    with pytest.raises(ConfigError, match="no environment variable name"):
        check_env_references(_config({"password": {"env": "1 BAD"}}), "c", environ={})


def _machine_from_source(machine: dict[str, Any]) -> Any:
    namespace: dict[str, Any] = {}
    exec(RESOLVE_MACHINE_SOURCE, namespace)  # the function the dispatcher step's script holds
    return namespace["_opshelf_machine"](machine)


def test_the_step_resolves_in_memory_and_dpdispatcher_records_the_reference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dpdispatcher import Machine

    value = "pw-opshelf-plant-91c3"
    machine = {"batch_type": "Shell", "context_type": "LocalContext", "local_root": ".",
               "remote_root": str(tmp_path), "remote_profile": {"password": REF}}
    # the control: a password in the dict itself is in what dpdispatcher serialises
    plain = Machine.load_from_dict({**machine, "remote_profile": {"password": value}})
    assert value in str(plain.serialize())
    seen: list[dict[str, Any]] = []
    load = Machine.load_from_dict.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Machine, "load_from_dict", classmethod(
        lambda cls, d: (seen.append(d), load(cls, d))[1]))
    monkeypatch.setenv("OPSHELF_PW", value)
    built = _machine_from_source(machine)
    assert seen[0]["remote_profile"]["password"] == value  # dpdispatcher got the value
    assert value not in str(built.serialize())
    assert built.serialize()["remote_profile"]["password"] == "<env:OPSHELF_PW>"
    monkeypatch.delenv("OPSHELF_PW")
    with pytest.raises(RuntimeError, match="OPSHELF_PW is not set"):
        _machine_from_source(machine)
