"""Concurrent learning against random frames at equal labels, over several seeds.

    python benchmarks/cl_vs_random.py [--seeds 1 2 3] [--work DIR] [--target 0.06]

For each seed, the cu-emt example (examples/cu-emt, EMT labels) runs with that seed; its
n training labels (the held-out sample it also labels is not counted: the baselines get no
test set) are compared with two baselines that get the same n labels, the same init data,
template, ensemble size, seeds and step scaling as the loop's final models:
(a) `random_explored`: n frames drawn at random from every frame the loop's own LAMMPS runs
    dumped, in every iteration (the same candidates, chosen blindly: isolates the selection);
(b) `random_md`: n frames drawn at random from EMT Langevin MD at the example's stage
    temperatures and lattice constants (dynamics with the true potential, which a DFT
    setting would pay for: the strongest baseline).
Everything is scored on one independent EMT-labelled test set the loop never sees: 2x2x2
fcc bulk MD at 400, 800 and 1200 K (the explored temperatures), and configurations the loop
never generates directly: a vacancy cell (31 atoms, 800 K) and a (111) slab (600 K); 20
frames each, other seeds. Scores are each model's force RMSE averaged over the ensemble.

Labels to reach `--target` (eV/A on the whole test set): the loop's from its per-iteration
models (training frames beyond the init data at the first iteration whose models reach it);
the baselines' only at their n (reached or not: training them at every n would multiply the
cost).

Prints a table per seed, the medians, and last:
`cl_force_rmse=<x> random_explored_force_rmse=<y> random_md_force_rmse=<z> seeds=3`
(medians over seeds). Targets (issue 16): cl <= 0.7 x random_explored and cl <= random_md.

Measured 2026-12-06 (HEAD 6f7cba2 from a frozen worktree, 2 cores shared with other jobs,
load 13-31; 3 seeds; `--floor`), force RMSE (eV/A), seed 1 / 2 / 3:
    whole test set:   cl 0.0798 / 0.0933 / 0.0929; random_explored 0.0894 / 0.0453 / 0.0862;
                      random_md 0.0738 / 0.0563 / 0.0931
    explored bulk:    cl 0.0342 / 0.0311 / 0.0362; random_explored 0.0342 / 0.0222 / 0.0355;
                      random_md 0.0377 / 0.0272 / 0.0341
    labels 20 / 27 / 32 (+16 held-out); converged / converged / not (accurate 0.690 < 0.9)
    seed 1, two models on all 126 explored frames: bulk 0.0139, whole set 0.0653
    medians: cl/random_explored 1.08 (target <= 0.7), cl/random_md 1.26 (target <= 1): NOT
    met; on the explored bulk alone the three medians are 0.0342 / 0.0342 / 0.0341.
Why (issue 16's note has the tables): the whole-set figure is decided by the (111) slab,
which no method explores (0.11-0.23 eV/A against 0.02-0.04 on bulk; it swings 2x between
data sets of one kind). On bulk the selection ties random at these label counts while the
whole pool gives 0.41x: the headroom is real but the ensemble's deviation does not find it;
and retraining from scratch each iteration makes the final ensemble noisy (seed 2: 0.079 ->
0.093 on the test set between its last two iterations). rcut 4.0 is below EMT's reach
(5.38 A): with rcut 6.0 (single models trained longer on seed 2's data sets) bulk errors
halve and 29 random frames come within 0.86x of all 168, so no pick of 29 could reach 0.7x.
random_md also pays 20 reference calls per label (MD dumped every 20 steps); cl pays one.
    last line: cl_force_rmse=0.0929 random_explored_force_rmse=0.0862
               random_md_force_rmse=0.0738 seeds=3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cu-emt"
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "TF_INTRA_OP_PARALLELISM_THREADS",
                               "TF_INTER_OP_PARALLELISM_THREADS")}
TEST_GROUPS = ("bulk 400 K", "bulk 800 K", "bulk 1200 K", "vacancy 800 K", "(111) slab 600 K")


def langevin_frames(atoms: Any, temperature: float, n_frames: int, every: int,
                    seed: int) -> list[Any]:
    """EMT-labelled frames of Langevin MD (2 fs steps) starting from `atoms`."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = atoms.copy()
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature,
                                 rng=np.random.default_rng(seed))
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02,
                   rng=np.random.default_rng(seed + 1))
    frames = []
    for _ in range(n_frames):
        dyn.run(every)
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, energy=atoms.get_potential_energy(),
                                          forces=atoms.get_forces())
        frames.append(copy)
    return frames


def test_sets() -> dict[str, list[Any]]:
    """The independent test set, by group (seeds 5000+: none of the pools' seeds)."""
    from ase.build import bulk, fcc111

    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    vacancy = cell.copy()
    del vacancy[0]
    slab = fcc111("Cu", size=(2, 2, 4), a=3.61, vacuum=6.0)
    slab.pbc = True
    return {
        "bulk 400 K": langevin_frames(cell, 400, 20, 20, 5400),
        "bulk 800 K": langevin_frames(cell, 800, 20, 20, 5800),
        "bulk 1200 K": langevin_frames(cell, 1200, 20, 20, 6200),
        "vacancy 800 K": langevin_frames(vacancy, 800, 20, 20, 6800),
        "(111) slab 600 K": langevin_frames(slab, 600, 20, 20, 7600),
    }


def explored_frames(run: Path) -> list[Any]:
    """Every frame the loop's LAMMPS runs dumped (all iterations), labelled with EMT."""
    import dpdata
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    record = json.loads((run / "run.json").read_text())
    wfdir = run / "dflow" / record["run_id"]
    frames = []
    for dump in sorted(wfdir.glob("iter-*--run-explore-*/workdir/runs/*/explore-*/traj.dump")):
        for atoms in dpdata.System(str(dump), fmt="lammps/dump", type_map=["Cu"]).to(
                "ase/structure"):
            atoms.calc = EMT()
            energy, forces = atoms.get_potential_energy(), atoms.get_forces()
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            frames.append(atoms)
    return frames


def stage_confs(stage: Any, example: Path) -> list[Any]:
    """A stage's initial configurations as ASE Atoms (generated crystal or files)."""
    import ase.io
    from ase.build import bulk

    if stage.confs.generate is not None:
        spec = stage.confs.generate
        return [bulk("Cu", "fcc", a=spec.lattice_constant_A, cubic=True) * tuple(spec.supercell)]
    return [atoms for name in stage.confs.files
            for atoms in ase.io.read(example / name, index=":")]


def md_frames(config: Any, example: Path) -> list[Any]:
    """EMT MD from every stage's initial confs at its groups' temperatures, as long as the
    loop's exploration runs and dumped as often."""
    pool = []
    for s, stage in enumerate(config.explore.stages):
        confs = stage_confs(stage, example)
        for group in stage.groups:
            chosen = group.confs if group.confs is not None else range(len(confs))
            for c in chosen:
                for k, temperature in enumerate(group.temperatures_K):
                    pool += langevin_frames(confs[c], temperature,
                                            group.n_steps // group.dump_every,
                                            group.dump_every, seed=1000 * s + 100 * c + k)
    return pool


def write_npy(frames: list[Any], out: Path) -> Path:
    import dpdata

    if out.exists():
        shutil.rmtree(out)
    multi = dpdata.MultiSystems(type_map=["Cu"])
    for atoms in frames:
        multi.append(dpdata.LabeledSystem(atoms, fmt="ase/structure"))
    multi.to("deepmd/npy", str(out))
    return out


def run_cl(seed: int, work: Path, source: Path = EXAMPLE) -> Path:
    """The example with this seed (kept: a rerun of the benchmark reuses a finished run)."""
    import yaml

    run = work / "runs" / f"cl-seed-{seed}"
    if (run / "results" / "history.json").is_file():
        return run
    if run.exists():
        shutil.rmtree(run)
    example = work / f"example-seed-{seed}"
    shutil.copytree(source, example, dirs_exist_ok=True)
    config = yaml.safe_load((example / "config.yaml").read_text())
    config["seed"] = seed
    (example / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, **ONE_THREAD, "OPSHELF_RUNS_DIR": str(work / "runs")}
    proc = subprocess.run([sys.executable, "-m", "opshelf.core.cli", "run", "cl",
                           str(example / "config.yaml"), "--name", run.name, "--no-progress"],
                          env=env)
    if proc.returncode not in (0, 3):  # 3: finished, not converged: still a data point
        raise SystemExit(f"the cl run with seed {seed} failed (exit {proc.returncode})")
    return run


def train_ensemble(config: Any, run: Path, extra: Path, work: Path,
                   n_models: int | None = None) -> list[Path]:
    """The loop's final ensemble recipe (template, size, seeds, step scaling) on the init
    data + `extra` (its first `n_models` members only, when given)."""
    from concurrent.futures import ThreadPoolExecutor

    from opshelf.cl.scheduler import derived_seed
    from opshelf.train.deepmd import DpProfile
    from opshelf.train.script import SCRIPT_NAME, StepScaling, ensemble_scripts
    from opshelf.train.train import train_model

    history = json.loads((run / "results" / "history.json").read_text())
    last = history["history"][-1]["iteration"]
    init = run / "inputs" / "init-data"
    scaling = StepScaling(reference_frames=history["n_init_frames"]
                          if config.train.scale_steps else None,
                          max_numb_steps=config.train.max_numb_steps)
    scripts = ensemble_scripts(config.train.template, config.train.numb_models,
                               config.type_map, seed=derived_seed(config.seed, last, "train"))

    def one(index: int) -> Path:
        task, out = work / f"task-{index}", work / f"model-{index}"
        if (out / "frozen_model.pb").is_file():
            return out / "frozen_model.pb"
        task.mkdir(parents=True, exist_ok=True)
        (task / SCRIPT_NAME).write_text(json.dumps(scripts[index]))
        train_model(out, task, init_data=[init], iter_data=[extra],
                    profile=DpProfile(threads=1), scaling=scaling)
        return out / "frozen_model.pb"

    with ThreadPoolExecutor(2) as pool:  # two dp processes: the two cores
        return list(pool.map(one, range(n_models or len(scripts))))


def force_rmse(models: list[Path], tests: dict[str, Path]) -> dict[str, float]:
    """Mean over models of the force RMSE, per test group and on all of them."""
    from opshelf.train.score import score_ensemble

    out = {name: score_ensemble(models, [path]).mean_of_models.force_rmse_eV_per_A
           for name, path in tests.items()}
    out["all"] = score_ensemble(models, list(tests.values())).mean_of_models.force_rmse_eV_per_A
    # the explored temperatures alone: where selection can act (the others are extrapolation)
    out["bulk"] = score_ensemble(models, [p for n, p in tests.items() if n.startswith("bulk")]
                                 ).mean_of_models.force_rmse_eV_per_A
    return out


def cl_curve(run: Path, tests: dict[str, Path]) -> list[tuple[int, float]]:
    """(labels beyond the init data, force RMSE on the whole test set) per iteration."""
    from opshelf.cl.status import fanout_artifacts, iteration_steps
    from opshelf.train.score import score_ensemble

    record = json.loads((run / "run.json").read_text())
    wfdir = run / "dflow" / record["run_id"]
    history = json.loads((run / "results" / "history.json").read_text())
    curve = []
    for row in history["history"]:
        dirs = iteration_steps(wfdir)[row["iteration"]].get("run-train", [])
        models = sorted(fanout_artifacts(dirs, "model"))
        score = score_ensemble(models, list(tests.values()))
        curve.append((row["n_train_frames"] - history["n_init_frames"],
                      score.mean_of_models.force_rmse_eV_per_A))
    return curve


def one_seed(seed: int, work: Path, tests: dict[str, Path], source: Path = EXAMPLE,
             floor: bool = False) -> dict[str, Any]:
    from opshelf.cl.config import ClConfig
    from opshelf.core.config import load_config

    run = run_cl(seed, work, source)
    config = load_config(work / f"example-seed-{seed}" / "config.yaml", ClConfig)
    history = json.loads((run / "results" / "history.json").read_text())
    n_labels = sum(r["n_labelled"] for r in history["history"])
    n_test = history["history"][0].get("test_n_frames") or 0
    rng = np.random.default_rng(seed)
    pools = {"random_explored": explored_frames(run), "random_md": md_frames(config, work / f"example-seed-{seed}")}
    scores = {"cl": force_rmse(sorted((run / "results" / "models").glob("*.pb")), tests)}
    for name, pool in pools.items():
        chosen = [pool[i] for i in rng.choice(len(pool), size=min(n_labels, len(pool)),
                                              replace=False)]
        extra = write_npy(chosen, work / f"seed-{seed}" / f"{name}-frames")
        models = train_ensemble(config, run, extra, work / f"seed-{seed}" / f"{name}-train")
        scores[name] = force_rmse(models, tests)
    if floor:
        # every explored frame: what the best pick of n frames from the same pool could
        # approach at most (a selection method's ceiling on this pool and model)
        extra = write_npy(pools["random_explored"], work / f"seed-{seed}" / "all_explored-frames")
        scores["all_explored"] = force_rmse(
            train_ensemble(config, run, extra, work / f"seed-{seed}" / "all_explored-train", 2),
            tests)
    return {"seed": seed, "labels": n_labels, "held_out_labels": n_test,
            "converged": history.get("converged"), "pool_sizes": {k: len(v) for k, v in
                                                                 pools.items()},
            "scores": scores, "cl_curve": cl_curve(run, tests)}


def labels_to_reach(result: dict[str, Any], target: float) -> dict[str, str]:
    out = {"cl": next((str(n) for n, rmse in result["cl_curve"] if rmse <= target),
                      f">{result['labels']}")}
    for name in ("random_explored", "random_md"):
        reached = result["scores"][name]["all"] <= target
        out[name] = f"<={result['labels']}" if reached else f">{result['labels']}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--work", type=Path, default=Path("bench-cl-vs-random"))
    parser.add_argument("--example", type=Path, default=EXAMPLE,
                        help="the cl example to run (a folder with config.yaml: default "
                        "examples/cu-emt)")
    parser.add_argument("--floor", action="store_true", help="also train two models on every "
                        "explored frame (the first seed's pool): the error no pick of n frames "
                        "from that pool is expected to beat")
    parser.add_argument("--target", type=float, default=0.06,
                        help="force RMSE (eV/A) on the whole test set for 'labels to reach'")
    args = parser.parse_args()
    os.environ.update(ONE_THREAD)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tests = {name: write_npy(frames, work / "test-set" / name.replace(" ", "-"))
             for name, frames in test_sets().items()}
    results = [one_seed(seed, work, tests, args.example.resolve(), args.floor and k == 0)
               for k, seed in enumerate(args.seeds)]
    (work / "results.json").write_text(json.dumps(results, indent=1))
    methods = ("cl", "random_explored", "random_md")
    for result in results:
        reach = labels_to_reach(result, args.target)
        print(f"seed {result['seed']}: {result['labels']} labels (+{result['held_out_labels']} "
              f"held-out), converged {result['converged']}, pools {result['pool_sizes']}")
        print(f"  {'method':16s} " + " ".join(f"{g:>16s}" for g in (*TEST_GROUPS, "bulk", "all"))
              + f"  labels to {args.target}")
        for method in [m for m in (*methods, "all_explored") if m in result["scores"]]:
            row = result["scores"][method]
            print(f"  {method:16s} " + " ".join(f"{row[g]:16.4f}" for g in (*TEST_GROUPS, "bulk", "all"))
                  + f"  {reach.get(method, '(all ' + str(result['pool_sizes']['random_explored']) + ')')}")
        print("  cl by iteration (labels, force RMSE): "
              + ", ".join(f"({n}, {r:.4f})" for n, r in result["cl_curve"]))
    medians = {m: float(np.median([r["scores"][m]["all"] for r in results])) for m in methods}
    bulk = {m: float(np.median([r["scores"][m]["bulk"] for r in results])) for m in methods}
    print("median over seeds on the explored bulk alone: " + ", ".join(
        f"{m} {v:.4f}" for m, v in bulk.items())
        + f" (cl/random_explored {bulk['cl'] / bulk['random_explored']:.2f})")
    print(f"median over seeds: cl/random_explored {medians['cl'] / medians['random_explored']:.2f}"
          f" (target <= 0.7), cl/random_md {medians['cl'] / medians['random_md']:.2f} "
          "(target <= 1)")
    print(f"cl_force_rmse={medians['cl']:.4f} "
          f"random_explored_force_rmse={medians['random_explored']:.4f} "
          f"random_md_force_rmse={medians['random_md']:.4f} seeds={len(results)}")


if __name__ == "__main__":
    main()
