"""A DeePMD template is checked by deepmd-kit's own argument check before any work (issue 19)."""

from __future__ import annotations

import copy

import pytest

from opshelf.core.errors import ConfigError
from opshelf.train.script import ensemble_scripts

TEMPLATE = {  # examples/cu-emt's template
    "model": {"descriptor": {"type": "se_e2_a", "sel": [40], "rcut_smth": 3.0, "rcut": 4.0,
                             "neuron": [8, 16], "axis_neuron": 4},
              "fitting_net": {"neuron": [24, 24]}},
    "learning_rate": {"type": "exp", "start_lr": 0.005, "decay_steps": 150, "stop_lr": 1e-4},
    "loss": {"start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100, "limit_pref_f": 10},
    "training": {"numb_steps": 3000, "disp_freq": 200, "save_freq": 3000,
                 "training_data": {"batch_size": 2}},
}


def test_the_example_template_passes() -> None:
    assert len(ensemble_scripts(TEMPLATE, 2, ["Cu"])) == 2


@pytest.mark.parametrize("where,key,value", [
    (("model", "descriptor"), "rcutt", 4.0),         # misspelt rcut
    (("training",), "numb_step", 100),               # misspelt numb_steps
    (("learning_rate",), "start_lr", "fast"),        # wrong type
])
def test_a_bad_template_key_is_named(where: tuple[str, ...], key: str, value: object) -> None:
    pytest.importorskip("deepmd.utils.argcheck")
    template = copy.deepcopy(TEMPLATE)
    node = template
    for part in where:
        node = node[part]
    node[key] = value
    with pytest.raises(ConfigError, match="deepmd-kit's argument check") as caught:
        ensemble_scripts(template, 2, ["Cu"])
    assert key in str(caught.value) or "/".join(where) in str(caught.value)
