"""Generic engine-task OPs and the pure functions under them, with EMT."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import dpdata
import numpy as np
import pytest
from ase.build import bulk

from opshelf.core.engine import EngineSpec, Task, load_engine
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.core.ops import CollectLabels, PrepEngineTasks, RunEngineTask
from opshelf.core.ops.labelling import (
    SuccessRatioTooLow,
    collect_labels,
    prepare_engine_tasks,
    read_frames,
    run_engine_task,
)
from opshelf.core.testing import REMOVE, BadInput, assert_op_conformance

#: pw.x 5.4 scf of CH4 (dpdata test data, tests/data/README.md): 1 frame, 5 atoms
QE_CH4_OUT = Path(__file__).parent / "data" / "engine-outputs" / "qe" / "scf-ch4" / "01.out"

EMT = {"name": "ase", "settings": {"calculator": "emt"}}


def write_frames(path: Path, n: int, overlap_at: tuple[int, ...] = ()) -> Path:
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
        atoms.symbols[0] = "Ni"
        atoms.rattle(0.05, seed=i)
        if i in overlap_at:
            atoms.positions[1] = atoms.positions[0]  # EMT gives NaN forces: a failed task
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def test_read_frames_in_several_formats(tmp_path: Path) -> None:
    xyz = write_frames(tmp_path / "f.extxyz", 3)
    frames = read_frames(xyz)
    assert len(frames) == 3 and all(f.get_nframes() == 1 for f in frames)
    poscar = tmp_path / "POSCAR"
    ase.io.write(poscar, bulk("Cu", "fcc", a=3.6), format="vasp")
    assert read_frames(poscar, "vasp/poscar")[0].get_natoms() == 1
    multi = dpdata.System(bulk("Cu", "fcc", a=3.6), fmt="ase/structure")
    multi.to("deepmd/npy", str(tmp_path / "npy"))
    assert len(read_frames(tmp_path / "npy")) == 1  # auto: a deepmd/npy folder
    # a labelled format gives unlabelled frames: a real pw.x output (tests/data/README.md)
    frames = read_frames(QE_CH4_OUT, "qe/pw/scf")
    assert len(frames) == 1 and frames[0].get_natoms() == 5 and "energies" not in frames[0].data
    with pytest.raises(ConfigError, match=r"unknown dpdata format 'nope'"):
        read_frames(xyz, "nope")
    with pytest.raises(MissingInputError, match=r"frames file not found"):
        read_frames(tmp_path / "missing.xyz")


def test_prepare_run_collect_records_failures(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames.extxyz", 4, overlap_at=(2,))
    engine = load_engine(EMT)
    names, paths, type_map = prepare_engine_tasks([frames], "auto", engine, Task(), tmp_path / "tasks",
                                                  type_map=["Ni", "Cu"])
    assert names == ["task-000000", "task-000001", "task-000002", "task-000003"]
    assert type_map == ["Ni", "Cu"]  # the given order, not dpdata's alphabetical one
    reports = [run_engine_task(p, tmp_path / "run" / n, tmp_path / "lab" / n, n)
               for n, p in zip(names, paths)]
    assert [r["status"] for r in reports] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert "non-finite forces" in reports[2]["reason"]
    # the prepared task dir is untouched by the run (the run works on a copy)
    assert not (paths[0] / "output.extxyz").exists()
    summary = collect_labels(sorted((tmp_path / "lab").iterdir()), tmp_path / "out",
                             type_map=type_map, min_success_ratio=0.7)
    assert summary["n_succeeded"] == 3 and summary["n_failed"] == 1 and summary["n_frames"] == 3
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert [f["task"] for f in failures] == ["task-000002"]
    data = dpdata.MultiSystems.from_file(str(tmp_path / "out" / "data"), fmt="deepmd/npy")
    assert data.get_nframes() == 3
    (system_dir,) = (tmp_path / "out" / "data").iterdir()
    system = dpdata.LabeledSystem(str(system_dir), fmt="deepmd/npy")
    assert system["atom_names"] == ["Ni", "Cu"]  # on disk in the task's type map
    assert np.isfinite(system["forces"]).all()
    with pytest.raises(SuccessRatioTooLow, match=r"3 of 4 tasks succeeded \(75.0%\)"):
        collect_labels(sorted((tmp_path / "lab").iterdir()), tmp_path / "out2",
                       type_map=type_map, min_success_ratio=0.9)
    assert (tmp_path / "out2" / "failures.json").is_file()  # written before raising


def test_prep_engine_tasks_conforms(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames.extxyz", 2)
    result = assert_op_conformance(
        PrepEngineTasks,
        good_inputs={"frames": [frames], "engine": EMT, "task": {"kind": "single_point"}},
        bad_inputs=[
            BadInput({"engine": {"name": "asee"}}, match=r"unknown engine 'asee'; did you mean 'ase'"),
            BadInput({"task": {"kind": "relx"}}, match=r"task.*kind"),
            BadInput({"frames": [tmp_path / "nope.xyz"]}, match=r"frames file not found"),
            BadInput({"engine": REMOVE}, match=r"engine"),
        ],
        workdir=tmp_path / "conf")
    assert result.parameters["task_names"] == ["task-000000", "task-000001"]


def test_run_engine_task_conforms(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames.extxyz", 1)
    _, paths, _ = prepare_engine_tasks([frames], "auto", load_engine(EngineSpec(**EMT)), Task(),
                                       tmp_path / "tasks")
    result = assert_op_conformance(
        RunEngineTask, good_inputs={"task_name": "task-000000", "task_path": paths[0]},
        bad_inputs=[BadInput({"task_path": tmp_path / "missing"}, match=r"missing"),
                    BadInput({"task_name": 3}, match=r"task_name")],
        workdir=tmp_path / "conf")
    assert result.parameters["report"]["status"] == "succeeded"


def test_collect_labels_conforms(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames.extxyz", 2, overlap_at=(1,))
    names, paths, type_map = prepare_engine_tasks([frames], "auto", load_engine(EMT), Task(),
                                                  tmp_path / "tasks")
    labelled = []
    for name, path in zip(names, paths):
        run_engine_task(path, tmp_path / "run" / name, tmp_path / "lab" / name, name)
        labelled.append(tmp_path / "lab" / name)
    result = assert_op_conformance(
        CollectLabels,
        good_inputs={"labeled_data": labelled, "type_map": type_map, "min_success_ratio": 0.5},
        bad_inputs=[BadInput({"min_success_ratio": 0.9}, match=r"1 of 2 tasks succeeded"),
                    BadInput({"min_success_ratio": 1.5}, match=r"min_success_ratio must lie"),
                    BadInput({"labeled_data": [tmp_path / "tasks"]}, match=r"opshelf-report.json")],
        workdir=tmp_path / "conf")
    assert result.parameters["n_frames"] == 1


def test_a_task_loads_its_engine_once_and_a_prep_reads_each_file_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wiring (issue 17): run_task_report loads the engine of a task once, with retries and
    kept files asked for (opshelf-fp's RunFp loaded it three times: check, run, keep-files);
    PrepEngineTasks reads each frame file once (PrepFp read it twice)."""
    import opshelf.core.engine as engine_module
    import opshelf.core.ops.engine_tasks as engine_tasks
    from opshelf.core.ops.labelling import run_task_report

    frames = write_frames(tmp_path / "frames.extxyz", 2)
    _, paths, _ = prepare_engine_tasks([frames], "auto", load_engine(EMT), Task(),
                                       tmp_path / "tasks")
    loads: list[str] = []
    real_load = engine_module.load_engine
    monkeypatch.setattr(engine_module, "load_engine",
                        lambda spec: loads.append("load") or real_load(spec))
    report = run_task_report(paths[0], tmp_path / "run", tmp_path / "lab", program_retries=2,
                             keep_files=[])
    assert report.ok and report.attempts == 1 and "opshelf-task.json" in report.raw_files
    assert loads == ["load"]

    reads: list[Path] = []
    real_read = engine_tasks.read_frames
    monkeypatch.setattr(engine_tasks, "read_frames",
                        lambda path, fmt: reads.append(Path(path)) or real_read(path, fmt))
    monkeypatch.chdir(tmp_path)
    PrepEngineTasks().execute({"frames": [frames], "fmt": "auto", "engine": EMT, "task": {},
                               "type_map": []})
    assert reads == [frames]
