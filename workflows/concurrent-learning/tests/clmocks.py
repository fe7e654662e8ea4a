"""Mocked OPs of the cl loop, for wiring tests (DPGEN2's style: subclasses of the real OPs,
injected into the real super-OPs). Training, exploration and selection are mocked; labelling
is real (core's `ase` engine with EMT, milliseconds per frame).

The mocks carry one number through the loop so that a test sees the data flow: MockRunTrain
writes into its "model" how many frames it was trained on; MockRunExplore copies it into
its trajectory; MockSelectConfs turns it into the accurate ratio (more data -> more
accurate) and selects `max_select` rattled copies of the initial conf (seeded by the
iteration's select seed), and `n_test` more as the held-out sample (labelled for real);
MockScoreCl scores a model trained on n frames as force RMSE 1 / (1 + n).

Failure injection: OPSHELF_CL_FAIL_AT="<step name>@<block id>[,...]" makes each fail once
(a marker file in OPSHELF_CL_FAIL_DIR remembers it failed), for restart tests.
"""


from __future__ import annotations

import json
import os
from pathlib import Path

import dpdata
import numpy as np
from dflow.python import OP, OPIO, FatalError

from opshelf.cl.flow import ClOps
from opshelf.cl.ops import (
    CollectFpCl,
    CollectIterData,
    PrepExploreCl,
    PrepFpCl,
    Scheduler,
    ScoreCl,
    gather_test_data,
)
from opshelf.cl.plugin import ClWorkflow
from opshelf.core.keys import StepKey
from opshelf.fp.ops import RunFp
from opshelf.md.ops import RunExplore, SelectConfs
from opshelf.train.data import count_frames, find_systems
from opshelf.train.ops import PrepTrain, RunTrain

#: frames of training data at which the mocked models become fully accurate
FULL_ACCURACY_FRAMES = 16


def maybe_fail(step: str, block: str) -> None:
    targets = os.environ.get("OPSHELF_CL_FAIL_AT", "").split(",")
    if f"{step}@{block}" not in targets:
        return
    marker = Path(os.environ["OPSHELF_CL_FAIL_DIR"]) / f"failed-{step}@{block}"
    if not marker.exists():
        marker.write_text("failed once\n")
        raise FatalError(f"injected failure at {step}@{block}")


def _block_of(_: str) -> str:
    # a step runs in <wf dir>/<step key>/workdir; the key starts with the block id
    key = Path.cwd().parent.name
    return StepKey.parse(key).block


class MockRunTrain(RunTrain):
    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        maybe_fail("run-train", _block_of("."))
        if not ip["config"].get("scaling", {}).get("reference_frames"):
            raise FatalError(f"run-train got no training config: {ip['config']}")
        data = [Path(p) for p in (ip["init_data"] or [])] + \
            [Path(p) for p in (ip["iter_data"] or [])]
        n = count_frames(find_systems(data))
        work = Path(ip["task_name"])
        work.mkdir(parents=True, exist_ok=True)
        (work / "frozen_model.pb").write_text(json.dumps({"n_train_frames": n}))
        (work / "lcurve.out").write_text("# step rmse_f_trn lr\n0 1.0 1e-3\n100 %.4f 1e-4\n"
                                         % (1.0 / (1 + n)))
        for name in ("train.log", "input.json", "metrics.json"):
            (work / name).write_text("{}")
        return OPIO({"model": work / "frozen_model.pb", "lcurve": work / "lcurve.out",
                     "log": work / "train.log", "script": work / "input.json",
                     "metrics": work / "metrics.json", "report": {"n_train_frames": n}})


class MockPrepExplore(PrepExploreCl):
    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        maybe_fail("prep-explore", _block_of("."))
        models = [json.loads(Path(m).read_text()) for m in ip["models"]]
        batch = Path("batches") / "batch-000000"
        batch.mkdir(parents=True, exist_ok=True)
        (batch / "models.json").write_text(json.dumps(models))
        import ase.io

        conf = dpdata.System(ase.io.read(Path(ip["confs"][0]), index=0), fmt="ase/structure")
        conf.to("deepmd/npy", str(batch / "conf"))
        return OPIO({"batch_names": [batch.name], "batch_paths": [batch],
                     "type_map": list(ip["type_map"]), "n_tasks": 1})


class MockRunExplore(RunExplore):
    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        maybe_fail("run-explore", _block_of("."))
        out = Path("runs") / ip["batch_name"]
        out.mkdir(parents=True, exist_ok=True)
        src = Path(ip["batch_path"])
        (out / "models.json").write_text((src / "models.json").read_text())
        import shutil

        shutil.copytree(src / "conf", out / "conf", dirs_exist_ok=True)
        return OPIO({"trajs": out, "report": {"batch": ip["batch_name"], "tasks": [],
                                              "n_failed": 0}})


class MockSelectConfs(SelectConfs):
    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        maybe_fail("select-confs", _block_of("."))
        run = Path(ip["trajs"][0])
        n_train = json.loads((run / "models.json").read_text())[0]["n_train_frames"]
        accurate = min(1.0, n_train / FULL_ACCURACY_FRAMES)
        select = ip["select"]
        n_frames = 100
        n_acc = int(round(accurate * n_frames))
        n_cand = n_frames - n_acc
        n_sel = min(n_cand, select.get("max_select") or n_cand)
        conf = dpdata.System(str(run / "conf"), fmt="deepmd/npy")
        rng = np.random.default_rng(select["seed"])
        out = Path("selected")
        for name, count in (("confs", n_sel), ("test_confs", select.get("n_test", 0))):
            (out / name).mkdir(parents=True, exist_ok=True)
            if count:
                frames = dpdata.System()
                for _ in range(count):
                    frame = conf.copy()
                    frame.data["coords"] = frame.data["coords"] + rng.normal(
                        0, 0.05, frame.data["coords"].shape)
                    frames = frame if frames.get_nframes() == 0 else frames + frame
                frames.to("deepmd/npy", str(out / name / "sys"))
        report = {"overall": {"n_frames": n_frames, "n_accurate": n_acc,
                              "n_candidate": n_cand, "n_failed": 0,
                              "accurate_ratio": n_acc / n_frames,
                              "candidate_ratio": n_cand / n_frames, "failed_ratio": 0.0,
                              "n_selected": n_sel},
                  "level_f_lo": select["trust"].get("f_lo")}
        (out / "report.json").write_text(json.dumps(report))
        return OPIO({"confs": out / "confs", "report": out / "report.json",
                     "n_selected": n_sel, "test_confs": out / "test_confs"})


class MockRunFp(RunFp):
    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        maybe_fail("run-fp", _block_of("."))
        return RunFp.execute.__wrapped__(self, ip)


class MockScheduler(Scheduler):
    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        maybe_fail("scheduler", _block_of("."))
        return Scheduler.execute.__wrapped__(self, ip)


class MockScoreCl(ScoreCl):
    """ScoreCl's choice of held-out set; the score from the mocked models' frame counts."""

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        from opshelf.train.score import EnsembleScore, Errors

        data = gather_test_data(ip["test_data"], ip["new_test_data"], Path("test-data"))
        n = json.loads(Path(ip["models"][0]).read_text())["n_train_frames"]
        errors = Errors(energy_rmse_eV_per_atom=0.1 / (1 + n), force_rmse_eV_per_A=1.0 / (1 + n))

        def score(frames: int) -> dict[str, object]:
            return EnsembleScore(
                n_frames=frames, n_systems=1, models=[errors] * len(ip["models"]),
                mean_of_models=errors, ensemble_mean=errors,
                max_force_error_median_eV_per_A=1.0).model_dump(mode="json")

        test = score(count_frames(find_systems([data]))) if data is not None else None
        Path("score.json").write_text(json.dumps({"test": test, "train": score(n)}))
        return OPIO({"score": Path("score.json"), "test_data": Path("test-data")})


MOCK_OPS = ClOps(PrepTrain, MockRunTrain, MockPrepExplore, MockRunExplore, MockSelectConfs,
                 PrepFpCl, MockRunFp, CollectFpCl, CollectIterData, MockScheduler, MockScoreCl)


class MockClWorkflow(ClWorkflow):
    """The cl workflow with mocked training, exploration and selection."""

    ops = MOCK_OPS

