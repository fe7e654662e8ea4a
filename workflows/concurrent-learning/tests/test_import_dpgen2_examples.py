"""`opshelf cl import-dpgen2` read as DPGEN2 reads its input: DPGEN2's own defaults and key
aliases (dpgen2/exploration/task/make_task_group_from_config.py, report_adaptive_lower.py),
the v0.0.5 flat layout, and DPGEN2's real example inputs (tests/data/dpgen2-examples, LGPL-3.0,
see PROVENANCE.md there). What opshelf cannot represent is an error naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DATA

from opshelf.cl.config import ClConfig
from opshelf.cl.dpgen2 import Dpgen2Import, dpgen2_draws, import_dpgen2

EXAMPLES = DATA / "dpgen2-examples"
FIXTURES = DATA / "dpgen2"


def base() -> dict[str, Any]:
    """The repository's old-layout Al-Mg fixture (5 generated confs, one lmp-md group)."""
    return json.loads((FIXTURES / "almg-vasp-old-layout.json").read_text())


def with_group(group: dict[str, Any]) -> Dpgen2Import:
    data = base()
    data["explore"]["stages"] = [[{"conf_idx": [0], **group}]]
    return import_dpgen2(data, FIXTURES, FIXTURES)


def only_group(result: Dpgen2Import) -> Any:
    assert result.errors == []
    (stage,) = ClConfig.model_validate(result.config).explore.stages
    (group,) = stage.groups
    return group


def test_an_lmp_md_group_gets_dpgen2s_defaults_not_opshelfs() -> None:
    """DPGEN2: ens nve, nsteps 100, dt 0.001 ps, trj_freq 10, tau_t 0.05 ps, tau_p 0.5 ps."""
    group = only_group(with_group({"type": "lmp-md", "temps": [300]}))
    assert (group.ensemble, group.n_steps, group.dump_every) == ("nve", 100, 10)
    assert group.timestep_fs == pytest.approx(1.0)
    assert group.thermostat_tau_fs == pytest.approx(50.0)
    assert group.barostat_tau_fs == pytest.approx(500.0)


def test_dpgen2_aliases_are_read_as_their_keys() -> None:
    group = only_group(with_group({"type": "lmp-npt", "Ts": [100, 200], "Ps": [1.0, 10.0],
                                   "ens": "npt", "t_freq": 5}))
    assert group.ensemble == "npt" and group.temperatures_K == [100.0, 200.0]
    assert group.pressures_GPa == pytest.approx([1e-4, 1e-3], rel=1e-12)  # bar -> GPa
    assert group.dump_every == 5
    data = base()
    data["explore"]["stages"] = [[{"type": "lmp-template", "sys_idx": [0],
                                   "lmp_template": "in.lammps", "traj_freq": 7}]]
    template = only_group(import_dpgen2(data, FIXTURES, FIXTURES))
    assert template.kind == "lmp-template" and template.dump_every == 7
    # absolute: read by the exploration step in its own folder
    assert template.template == str(FIXTURES / "in.lammps")


def test_two_names_of_one_key_npt_without_press_and_anisotropic_npt_are_errors() -> None:
    for group, key in (({"temps": [1], "ens": "nvt", "ensemble": "npt"}, ".ensemble"),
                       ({"temps": [1], "ens": "npt"}, ".press"),
                       ({"temps": [1], "ens": "npt-t", "press": [1]}, ".ens"),
                       ({"temps": [1], "use_clusters": True}, ".use_clusters"),
                       ({"temps": [1], "tempz": [2]}, ".tempz")):
        result = with_group(group)
        assert any(f"'explore.stages[0][0]{key}'" in e for e in result.errors), (group,
                                                                               result.errors)


def test_pressures_of_an_nvt_group_multiply_its_runs_as_in_dpgen2() -> None:
    """DPGEN2 runs every (temperature, pressure) pair; nvt ignores the pressure."""
    result = with_group({"ens": "nvt", "temps": [300], "press": [1, 2, 3]})
    group = only_group(result)
    assert group.n_samples == 3 and group.pressures_GPa == [0.0]
    assert any("n_samples 3" in w for w in result.warnings)


def test_n_sample_draws_the_first_iterations_confs_as_dpgen2_does() -> None:
    """n_sample of the stage's 5 generated confs: all 5 is every conf (no list); 4 is the
    4 DPGEN2's first iteration would explore, drawn seeded (the same on every import), with
    a warning that DPGEN2 redraws every iteration; 7 runs past the list, so confs repeat."""
    assert only_group(with_group({"temps": [300], "n_sample": 5})).confs is None
    result = with_group({"temps": [300], "n_sample": 4})
    group = only_group(result)
    assert len(group.confs) == 4 and set(group.confs) <= set(range(5))
    assert only_group(with_group({"temps": [300], "n_sample": 4})).confs == group.confs
    (warning,) = [w for w in result.warnings if "n_sample" in w]
    assert "4 of the group's 5 confs" in warning and "every iteration" in warning
    many = only_group(with_group({"temps": [300], "n_sample": 7})).confs
    assert len(many) == 7 and len(set(many)) < 7
    bad = with_group({"temps": [300], "n_sample": 0})
    assert any("'explore.stages[0][0].n_sample'" in e for e in bad.errors)


@pytest.mark.parametrize(("n_confs", "n_sample"), [(5, 3), (5, 5), (4, 6), (10, 1)])
def test_dpgen2_draws_follow_its_shuffled_queue(n_confs: int, n_sample: int) -> None:
    """ConfSamplingTaskGroup._sample_confs (random_sample=True): one call at submission and
    one per iteration pop n_sample confs from a queue of shuffled copies of the list, so
    over the calls every conf is drawn once per copy: after k calls each conf was drawn
    floor or ceil of k * n_sample / n_confs times, and a call that stays inside one copy
    has no repeat."""
    for seed in range(20):
        draws = dpgen2_draws(n_confs, n_sample, 6, seed)
        assert [len(d) for d in draws] == [n_sample] * 6
        flat = [c for d in draws for c in d]
        for k in range(1, 7):
            counts = np.bincount(flat[:k * n_sample], minlength=n_confs)
            assert counts.max() - counts.min() <= 1, (seed, k, counts)
        if n_sample <= n_confs and n_confs % n_sample == 0:
            assert all(len(set(d)) == n_sample for d in draws)
    assert dpgen2_draws(5, 3, 2, 0) == dpgen2_draws(5, 3, 2, 0)
    assert any(dpgen2_draws(5, 3, 2, 0) != dpgen2_draws(5, 3, 2, s) for s in range(1, 5))


def test_adaptive_lower_gets_dpgen2s_defaults() -> None:
    """report_adaptive_lower: level_f_hi 0.5, numb_candi_f 200, rate_candi_f 0.01,
    n_checked_steps 2, conv_tolerance 0.05 (opshelf's own default tolerance is 0.005)."""
    data = json.loads((FIXTURES / "cu-cp2k-new-layout.json").read_text())
    data["explore"]["convergence"] = {"type": "adaptive-lower"}
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert result.errors == []
    config = ClConfig.model_validate(result.config)
    trust = config.select.trust
    assert (trust.f_hi, trust.numb_candi_f, trust.rate_candi_f) == (0.5, 200, 0.01)
    convergence = config.explore.stages[0].convergence
    assert (convergence.level_tolerance, convergence.n_checked) == (0.05, 2)


def test_a_string_init_data_sys_is_one_path_and_mixed_type_is_read() -> None:
    data = base()
    data["inputs"]["init_data_sys"] = "al"  # under the fixture's init_data_prefix "init"
    data["inputs"]["mixed_type"] = True
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert result.errors == []
    assert [d.path for d in ClConfig.model_validate(result.config).init_data] == ["init/al"]
    assert any("'inputs.mixed_type'" in w for w in result.warnings)


@pytest.mark.parametrize(("section", "key", "value"), [
    ("inputs", "multitask", True),
    ("inputs", "init_data_uri", "s3://dpgen2/init")])
def test_what_opshelf_cl_lacks_is_refused_naming_the_key(section: str, key: str,
                                                         value: object) -> None:
    data = base()
    data[section][key] = value
    data[section]["multi_init_data"] = {"almg": {"sys": ["al"], "prefix": "init"}}
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert any(f"dpgen2 key '{section}.{key}'" in e for e in result.errors), result.errors


def test_do_finetune_maps_to_train_finetune_model() -> None:
    """DPGEN2's do_finetune: every member fine-tuned from init_models_paths (here all one
    checkpoint) with train.config.finetune_args, then init_model_policy 'yes' (forced)."""
    data = base()
    data["inputs"]["do_finetune"] = True
    data["train"]["init_models_paths"] = ["pretrained/dpa3.pt"] * 3
    data["train"]["config"].update(impl="pytorch", finetune_args="--model-branch Domains_Alloy")
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert result.errors == []
    train = ClConfig.model_validate(result.config).train
    assert train.finetune_model == "pretrained/dpa3.pt" and train.init_models == []
    assert train.finetune.model_branch == "Domains_Alloy"
    assert not train.finetune.use_pretrain_script  # DPGEN2 passes only what finetune_args says
    assert train.dp.backend.name == "pytorch" and train.init_model.policy == "yes"
    assert any("init_model_policy" in w and "forces 'yes'" in w for w in result.warnings)
    data["train"]["init_models_paths"] = [f"pretrained/{i}.pt" for i in range(3)]
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert any("'train.init_models_paths'" in e and "3 different" in e for e in result.errors)
    data["train"]["init_models_paths"] = ["pretrained/dpa3.pt"] * 3
    data["train"]["config"]["finetune_args"] = "--skip-neighbor-stat"
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert any("'train.config.finetune_args'" in e for e in result.errors)


def test_multi_init_data_without_multitask_is_left_out_as_dpgen2_leaves_it() -> None:
    """DPGEN2 (entrypoint/submit.py) reads multi_init_data only with inputs.multitask true;
    otherwise init_data_sys is the data."""
    data = base()
    data["inputs"]["multi_init_data"] = {"almg": {"sys": ["elsewhere"], "prefix": "x"}}
    data["inputs"]["head"] = "almg"
    result = import_dpgen2(data, FIXTURES, FIXTURES)
    assert result.errors == []
    assert [d.path for d in ClConfig.model_validate(result.config).init_data] == [
        "init/al", "init/mg"]
    assert any("'inputs.multi_init_data'" in w and "multitask" in w for w in result.warnings)


def test_the_v005_flat_layout_is_read(tmp_path: Path) -> None:
    """examples/almg/input-v005.json with its POTCARs made: it maps, jobs as stages, its
    n_sample 3 of the 30 generated confs drawn."""
    data = json.loads((EXAMPLES / "almg" / "input-v005.json").read_text())
    data["fp_pp_files"] = {"Al": "potcars/Al/POTCAR", "Mg": "potcars/Mg/POTCAR"}
    for element in ("Al", "Mg"):
        (tmp_path / "potcars" / element).mkdir(parents=True)
        (tmp_path / "potcars" / element / "POTCAR").write_text(f"PAW_PBE {element}\n")
    result = import_dpgen2(data, tmp_path, tmp_path)
    assert result.errors == []
    config = ClConfig.model_validate(result.config)
    (stage,) = config.explore.stages
    (group,) = stage.groups
    assert (group.ensemble, group.n_steps, group.temperatures_K) == ("nvt", 20, [50.0, 100.0])
    assert group.n_samples == 2  # two pressures of an nvt job
    assert len(group.confs) == 3 and set(group.confs) <= set(range(30))
    assert config.select.trust.f_lo == 0.05 and config.select.max_select == 2
    assert stage.confs.files == ["dpgen2-confs/stage-0-conf-0.extxyz"]
    assert config.train.numb_models == 4
    assert config.fp.engine.settings["incar_file"] == str(tmp_path / "vasp" / "INCAR")


#: example -> the DPGEN2 keys its import is refused for (all of them, in order)
EXPECTED_REFUSALS = {
    "almg/input-v005.json": ["fp.inputs_config.pp_files"],
    # its confs (md.data/*N1[56].equ/*) are not copied: nothing to explore or draw from
    "chno/input.json": ["explore.configurations[0].files", "explore.stages[0][0].n_sample"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_REFUSALS))
def test_dpgen2_examples_are_refused_for_what_opshelf_lacks(name: str) -> None:
    path = EXAMPLES / name
    result = import_dpgen2(json.loads(path.read_text()), path.parent, path.parent)
    keys = [e.split("'")[1] for e in result.errors]
    assert keys == EXPECTED_REFUSALS[name], result.errors


def test_almg_input_as_published_is_not_json() -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads((EXAMPLES / "almg" / "input.json").read_text())
