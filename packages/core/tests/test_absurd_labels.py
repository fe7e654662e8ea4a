"""Labels with absurd forces are flagged and never trained on (issue 19).

A real engine (ASE's EMT) on two Cu cells: one rattled by 0.05 Å (forces of about 1 eV/Å), one
with two atoms 0.8 Å apart (EMT: 424 eV/Å, measured; the limit is 100 eV/Å). The second task is
recorded as failed with the reason, and the collected data hold only the first frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import dpdata
from ase.build import bulk

from opshelf.core.engine import Task, load_engine
from opshelf.core.ops.labelling import (
    MAX_LABEL_FORCE_EV_PER_A,
    collect_labels,
    prepare_engine_tasks,
    run_engine_task,
)


def test_a_frame_with_absurd_forces_is_a_failed_task_and_not_collected(tmp_path: Path) -> None:
    sane = bulk("Cu", "fcc", a=3.6, cubic=True)
    sane.rattle(0.05, seed=1)
    squeezed = bulk("Cu", "fcc", a=3.6, cubic=True)
    squeezed.positions[1] = squeezed.positions[0] + [0.8, 0.0, 0.0]
    frames = tmp_path / "frames.extxyz"
    ase.io.write(frames, [sane, squeezed], format="extxyz")
    engine = load_engine({"name": "ase", "settings": {"calculator": "emt"}})
    names, paths, type_map = prepare_engine_tasks([frames], "auto", engine, Task(),
                                                  tmp_path / "tasks")
    reports = [run_engine_task(p, tmp_path / "run" / n, tmp_path / "lab" / n, n)
               for n, p in zip(names, paths)]
    assert reports[0]["status"] == "succeeded"
    assert max(reports[0]["max_force_eV_per_A"]) < 5  # rattled by 0.05 Å: ~1 eV/Å
    assert reports[1]["status"] == "failed", reports[1]
    assert "absurd label" in reports[1]["reason"] and "eV/Å" in reports[1]["reason"]
    # EMT, atoms 0.8 Å apart: 424 eV/Å on one component, above the limit either way
    assert reports[1]["max_force_eV_per_A"][0] > 4 * MAX_LABEL_FORCE_EV_PER_A
    summary = collect_labels(sorted((tmp_path / "lab").iterdir()), tmp_path / "out",
                             type_map=type_map, min_success_ratio=0.5)
    assert summary["n_frames"] == 1 and summary["n_failed"] == 1
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert "absurd label" in failures[0]["reason"]
    data = dpdata.MultiSystems.from_file(str(tmp_path / "out" / "data"), fmt="deepmd/npy")
    assert data.get_nframes() == 1
