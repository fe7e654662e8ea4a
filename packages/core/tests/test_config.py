"""Strict configuration: errors that name the key and suggest the right one."""

from __future__ import annotations

from pathlib import Path

import pytest

from opshelf.core.config import StrictModel, load_config, validate_into
from opshelf.core.engine import EngineSpec, Task
from opshelf.core.errors import ConfigError, UserError


class Inner(StrictModel):
    temperature_K: float = 300.0
    n_steps: int = 10


class Outer(StrictModel):
    name: str
    inner: Inner = Inner()
    items: list[Inner] = []


def test_unknown_top_level_key_suggests() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'nmae' at the top level; did you mean 'name'\?"):
        validate_into(Outer, {"nmae": "x"}, where="cfg.yaml")


def test_unknown_nested_key_names_its_place() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'temperature' in inner; did you mean 'temperature_K'\?"):
        validate_into(Outer, {"name": "x", "inner": {"temperature": 5}})


def test_unknown_key_in_a_list_item() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'nsteps' in items\[1\]; did you mean 'n_steps'\?"):
        validate_into(Outer, {"name": "x", "items": [{}, {"nsteps": 3}]})


def test_unknown_key_without_a_close_match_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'zzz' in inner; valid keys: n_steps, temperature_K"):
        validate_into(Outer, {"name": "x", "inner": {"zzz": 1}})


def test_missing_and_wrong_type_are_both_reported() -> None:
    with pytest.raises(ConfigError) as info:
        validate_into(Outer, {"inner": {"n_steps": "many"}}, where="run.yaml")
    message = str(info.value)
    assert message.startswith("run.yaml: invalid configuration")
    assert "missing required key 'name'" in message
    assert "inner.n_steps" in message and "'many'" in message


def test_config_error_is_a_user_error() -> None:
    assert issubclass(ConfigError, UserError)


def test_engine_task_models_are_strict() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'fmax' in relax; valid keys: fmax_eV_per_A, max_steps"):
        validate_into(Task, {"kind": "relax", "relax": {"fmax": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown key 'timeout' in profile; did you mean 'timeout_s'\?"):
        validate_into(EngineSpec, {"name": "ase", "profile": {"timeout": 3}})


def test_load_config_yaml_json_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: cu\ninner: {n_steps: 4}\n")
    assert load_config(tmp_path / "a.yaml", Outer).inner.n_steps == 4
    (tmp_path / "a.json").write_text('{"name": "cu"}')
    assert load_config(tmp_path / "a.json", Outer).name == "cu"
    with pytest.raises(ConfigError, match=r"config file not found: .*missing.yaml"):
        load_config(tmp_path / "missing.yaml", Outer)
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(tmp_path / "bad.yaml", Outer)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"the top level must be a mapping of keys, got list"):
        load_config(tmp_path / "list.yaml", Outer)
