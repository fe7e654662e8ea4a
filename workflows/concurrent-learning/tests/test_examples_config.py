"""The examples' configs load, validate and reference only files that exist, without running
them (the cu-cp2k demo takes minutes of CP2K; `./dev demo` runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opshelf.cl.config import ClConfig
from opshelf.cl.inputs import load_template, read_labelled, resolve, write_stage_confs
from opshelf.cl.ops import with_models
from opshelf.core.config import load_config
from opshelf.md.explore import ExploreConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CL_EXAMPLES = ["cu-cp2k", "cu-emt", "cu-emt-finetune"]


def load(name: str) -> ClConfig:
    config = load_config(EXAMPLES / name / "config.yaml", ClConfig)
    assert isinstance(config, ClConfig)
    return config


@pytest.mark.parametrize("name", CL_EXAMPLES)
def test_example_config_validates_and_its_files_exist(name: str) -> None:
    config = load(name)
    base = EXAMPLES / name
    for source in config.init_data:
        assert resolve(source.path, base).exists(), source.path
        frames = read_labelled(source, base, config.type_map)  # energies and forces present
        assert frames.get_nframes() >= 4
    load_template(config, base)
    _, explores = write_stage_confs(config, base, None)
    for explore in explores:
        ExploreConfig.model_validate(with_models(explore, ["model.pb"]))
    for value in config.fp.engine.settings.values():
        if isinstance(value, str) and value.endswith((".inp", ".json", ".yaml")):
            assert resolve(value, base).is_file(), value


def test_cu_cp2k_is_the_real_dft_demo() -> None:
    config = load("cu-cp2k")
    assert config.fp.engine.name == "cp2k"
    assert config.explore.engine == "lammps"
    assert config.fp.engine.profile.timeout_s  # a stuck SCF cannot hang the demo
    # the demo's cost: labels per iteration x iterations (CP2K dominates). 16 labels at
    # ~13 s each (EPS_DEFAULT 1e-7, measured 2026-12-05; 1e-10 took 32 s) keep the demo
    # under 10 min; the earlier budget, 12, was for ~60 s labels
    assert config.fp.engine.settings["eps_default"] >= 1e-7
    assert (config.select.max_select or 0) * config.max_iterations <= 16


@pytest.mark.engine("cp2k")
def test_cu_cp2k_basis_and_potential_exist() -> None:
    from opshelf.core.engine import Task, load_engine

    config = load("cu-cp2k")
    load_engine(config.fp.engine).check_inputs(config.type_map, Task())
