"""`dp train` and `dp freeze` in one process (issue 21): the same frozen model as two calls."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dpdata
import numpy as np
import pytest

from opshelf.core.process import run_command
from opshelf.train import DpProfile
from opshelf.train.launch import python_of


@pytest.mark.engine("dp")
def test_train_and_freeze_share_one_process_and_freeze_alike(trained: dict[str, Any],
                                                             emt_data: Path) -> None:
    """The fixture's model was trained and frozen in one process; freezing its checkpoint
    again in a separate `dp freeze` gives the same model (same weights: energies and forces
    agree to float64 round-off, 1e-10)."""
    from deepmd.infer import DeepPot

    work = trained["dir"]
    assert trained["metrics"]["dp_launch"] == "one process"
    # both calls' output went to the one process's log, the freeze after the training
    err = (work / "dp-train.err").read_text()
    assert err.index("opshelf: dp --tf train") < err.index("opshelf: dp --tf freeze")
    assert not (work / "dp-freeze.err").exists()
    profile = DpProfile()
    run_command(profile.argv("freeze", "-o", "separate.pb"), work, log_name="dp-freeze-again")
    system = dpdata.LabeledSystem(str(emt_data / "Cu3Au1"), fmt="deepmd/npy")
    types = [["Cu", "Au"].index(str(system["atom_names"][t])) for t in system["atom_types"]]
    one = DeepPot(str(trained["model"])).eval(system["coords"], system["cells"], types)
    two = DeepPot(str(work / "separate.pb")).eval(system["coords"], system["cells"], types)
    np.testing.assert_allclose(one[0], two[0], atol=1e-10)
    np.testing.assert_allclose(one[1], two[1], atol=1e-10)


def test_python_of_finds_a_console_scripts_interpreter(tmp_path: Path) -> None:
    """A pip console script's `#!` interpreter; None for anything else (then two dp calls)."""
    script = tmp_path / "dp"
    script.write_text(f"#!{sys.executable}\nimport sys\n")
    script.chmod(0o755)
    assert python_of([str(script)]) == sys.executable
    env_script = tmp_path / "dp-env"
    env_script.write_text("#!/usr/bin/env python3\n")
    assert Path(python_of([str(env_script)]) or "").name == "python3"
    wrapper = tmp_path / "dp-wrapper"
    wrapper.write_text("#!/bin/bash\nexec dp \"$@\"\n")
    assert python_of([str(wrapper)]) is None
    assert python_of(["srun", str(script)]) is None
    assert python_of([str(tmp_path / "missing")]) is None
