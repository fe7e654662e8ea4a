"""Pure functions: ensemble scripts, type_map checks, the init-model policy, detail files."""

from __future__ import annotations

from pathlib import Path

import dpdata
import numpy as np
import pytest
from train_helpers import TYPE_MAP, template

from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.train import InitModelOptions, decide_init_model, ensemble_scripts
from opshelf.train.data import check_type_map, count_frames, find_systems, system_elements
from opshelf.train.evaluate import detail_metrics
from opshelf.train.script import template_type_map, with_data, with_init_model_options


def test_ensemble_scripts_differ_only_in_seeds() -> None:
    scripts = ensemble_scripts(template(), 3, TYPE_MAP, seed=5)
    seeds = [(s["model"]["descriptor"]["seed"], s["model"]["fitting_net"]["seed"],
              s["training"]["seed"]) for s in scripts]
    assert len({seed for triple in seeds for seed in triple}) == 9  # all distinct
    assert seeds == [(s["model"]["descriptor"]["seed"], s["model"]["fitting_net"]["seed"],
                      s["training"]["seed"])
                     for s in ensemble_scripts(template(), 3, TYPE_MAP, seed=5)]  # reproducible
    for script in scripts:
        for section in (script["model"]["descriptor"], script["model"]["fitting_net"],
                        script["training"]):
            section.pop("seed")
        assert script == {**template(), "model": {**template()["model"], "type_map": TYPE_MAP}}


def test_type_map_from_template_or_input() -> None:
    no_map = template()
    del no_map["model"]["type_map"]
    assert template_type_map(no_map, ["Cu"]) == ["Cu"]
    assert template_type_map(template(), []) == TYPE_MAP
    with pytest.raises(ConfigError, match=r"model.type_map \['Cu', 'Au'\] differs"):
        template_type_map(template(), ["Au", "Cu"])
    with pytest.raises(ConfigError, match="no model.type_map"):
        template_type_map(no_map, [])
    with pytest.raises(ConfigError, match="numb_models"):
        ensemble_scripts(template(), 0, TYPE_MAP)


def test_data_found_counted_and_checked(emt_data: Path, tmp_path: Path) -> None:
    systems = find_systems([emt_data])
    assert [s.name for s in systems] == ["Cu3Au1", "Cu4Au0"]
    assert count_frames(systems) == 40
    assert system_elements(emt_data / "Cu3Au1") == ["Cu", "Au"]
    assert system_elements(emt_data / "Cu4Au0") == ["Cu"]  # Au is in type_map.raw, unused
    check_type_map(["Au", "Cu", "Ag"], systems)  # order and extra elements are fine
    with pytest.raises(ConfigError, match=r"lacks elements.*Cu3Au1 holds \['Au'\]"):
        check_type_map(["Cu"], systems)
    with pytest.raises(MissingInputError, match="no deepmd/npy system"):
        find_systems([tmp_path])


def test_mixed_type_data_elements_and_frames(emt_data: Path, tmp_path: Path) -> None:
    multi = dpdata.MultiSystems(type_map=TYPE_MAP)
    for system in find_systems([emt_data]):
        multi.append(dpdata.LabeledSystem(str(system), fmt="deepmd/npy"))
    multi.to("deepmd/npy/mixed", str(tmp_path / "mixed"))
    (mixed,) = find_systems([tmp_path / "mixed"])  # both 4-atom formulas in one system
    assert count_frames([mixed]) == 40
    assert system_elements(mixed) == ["Cu", "Au"]
    with pytest.raises(ConfigError, match="Au"):
        check_type_map(["Cu"], [mixed])


@pytest.mark.parametrize(("policy", "model", "old", "has_iter", "expected"), [
    ("no", True, 100, True, False),
    ("yes", True, 0, False, True),
    ("yes", False, 100, True, False),  # nothing to start from
    ("old_data_larger_than:50", True, 51, True, True),
    ("old_data_larger_than:50", True, 50, True, False),  # strictly larger, as DPGEN2
    ("old_data_larger_than:0", True, 10, False, False),  # no iteration data: from scratch
])
def test_init_model_policy(policy: str, model: bool, old: int, has_iter: bool,
                           expected: bool) -> None:
    assert decide_init_model(policy, model, old, has_iter) is expected


def test_init_model_options_are_checked_and_applied() -> None:
    with pytest.raises(ValueError, match="unknown init-model policy 'old_data_larger:5'"):
        InitModelOptions(policy="old_data_larger:5")
    script = with_init_model_options(template(), InitModelOptions(
        policy="yes", numb_steps=20, start_lr=1e-4, start_pref_f=100))
    assert (script["training"]["numb_steps"], script["learning_rate"]["start_lr"],
            script["loss"]["start_pref_f"], script["loss"]["start_pref_e"]) == (20, 1e-4, 100, 0.02)


def test_with_data_drops_a_stale_validation_section() -> None:
    base = template()
    base["training"]["validation_data"] = {"systems": ["/old/path"], "batch_size": 1}
    assert "validation_data" not in with_data(base, [Path("/a")])["training"]
    both = with_data(base, [Path("/a")], [Path("/v")])["training"]
    assert both["training_data"]["systems"] == ["/a"]
    assert both["validation_data"] == {"systems": ["/v"], "batch_size": 1}


def test_detail_metrics_per_system_and_pooled(tmp_path: Path) -> None:
    # Hand-made detail files in dp test 3.2's layout (one header, systems one after the
    # other): /s1 has 2 frames of 1 atom, /s2 1 frame of 2 atoms; errors computed by hand.
    (tmp_path / "d.e_peratom.out").write_text(
        "# /s1: data_e pred_e\n1.0 1.1\n2.0 2.0\n0.0 -0.3\n")
    (tmp_path / "d.f.out").write_text(
        "# /s1: data_fx data_fy data_fz pred_fx pred_fy pred_fz\n0 0 0 0 0 0.4\n"
        "0 0 0 0 0 0\n1 1 1 1 1 1\n1 1 1 1 1 1\n")
    metrics = detail_metrics(tmp_path / "d", [("/s1", 2, 1), ("/s2", 1, 2)])
    s1, s2, overall = metrics["systems"]["/s1"], metrics["systems"]["/s2"], metrics["overall"]
    assert s1["energy_rmse_eV_per_atom"] == pytest.approx(np.sqrt(0.01 / 2))
    assert s1["energy_mae_eV_per_atom"] == pytest.approx(0.05)
    assert s2["energy_rmse_eV_per_atom"] == pytest.approx(0.3)
    assert overall["energy_rmse_eV_per_atom"] == pytest.approx(np.sqrt(0.1 / 3))
    assert s1["force_rmse_eV_per_A"] == pytest.approx(np.sqrt(0.16 / 6))
    assert s2["force_rmse_eV_per_A"] == 0.0
    assert overall["force_mae_eV_per_A"] == pytest.approx(0.4 / 12)
    assert (overall["n_frames"], overall["n_systems"]) == (3, 2)
    assert "virial_rmse_eV_per_atom" not in overall  # no virial file: no virial metric
    with pytest.raises(MissingInputError, match="3 rows, expected 4"):
        detail_metrics(tmp_path / "d", [("/s1", 2, 1), ("/s2", 2, 2)])


def test_step_scaling_keeps_passes_per_frame() -> None:
    """numb_steps for reference_frames frames; three times the frames, three times the
    steps (capped), never fewer than the template's; None: fixed steps."""
    from opshelf.train.script import StepScaling

    scaling = StepScaling(reference_frames=12)
    assert scaling.numb_steps(2000, 12) == 2000
    assert scaling.numb_steps(2000, 8) == 2000
    assert scaling.numb_steps(2000, 36) == 6000
    assert StepScaling(reference_frames=12, max_numb_steps=5000).numb_steps(2000, 36) == 5000
    assert StepScaling().numb_steps(2000, 36) == 2000
