"""Exploration task groups, preparing and running exploration tasks, and selecting frames.

    initial confs x groups --prepare_explore_tasks--> task dirs (one MD run each)
    task dirs --run_explore_tasks--> trajectories + model_devi.out (LAMMPS: many per process)
    run dirs --select_confs--> selected frames (deepmd/npy) + report.json

Groups:
- `md`: NVT/NPT/NVE over the grid temperatures_K x pressures_GPa, `n_samples` runs (different
  velocity seeds) per initial configuration; LAMMPS or `ase-ensemble`.
- `lmp-template` (LAMMPS only, as DPGEN2's): your input script with placeholders filled from
  every combination of `revisions` ({"V_TEMP": [300, 600]} replaces the text V_TEMP). The
  `pair_style deepmd` line is rewritten to the ensemble (with out_freq = dump_every), and
  every `dump` line to the trajectory opshelf reads (traj.dump every dump_every steps). The
  script must `read_data conf.lmp`.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import dpdata
import numpy as np
from pydantic import Field

from opshelf.core.bounds import (
    DampingTimeFs,
    FrameCount,
    IndexCount,
    PressureGPa,
    Seed,
    StepCount,
    TemperatureK,
    TimestepFs,
)
from opshelf.core.config import StrictModel, validate_into
from opshelf.core.engine import (
    TASK_FILE,
    EngineSpec,
    MDOptions,
    Task,
    TaskFailed,
    TaskKind,
    load_engine,
    read_task,
    write_task,
)
from opshelf.core.errors import CommandError, ConfigError, MissingInputError
from opshelf.core.ops.labelling import read_frames, union_type_map
from opshelf.md.filters import ConfFilters, rejection_reason
from opshelf.md.lammps import (
    DUMP_FILE,
    INPUT_FILE,
    MODEL_DEVI_FILE,
    DeepmdPotential,
    LammpsEngine,
    deepmd_model_names,
    run_lammps_tasks,
)
from opshelf.md.model_devi import read_model_devi
from opshelf.md.selection import (
    CANDIDATE,
    FAILED,
    DeviationTable,
    TrustLevels,
    candidate_order,
    classify,
    n_to_select,
    selection_report,
)
from opshelf.md.trajectory import read_trajectory_frames, trajectory_steps

EXPLORE_FILE = "opshelf-explore.json"
REPORT_FILE = "opshelf-explore-report.json"


class MdGroup(StrictModel):
    """MD runs over a grid of temperatures (and pressures for npt)."""

    kind: Literal["md"] = Field("md", description="a grid of MD runs")
    ensemble: Literal["nvt", "npt", "nve"] = Field("nvt", description="the MD ensemble")
    temperatures_K: list[TemperatureK] = Field(min_length=1, description="one run per temperature "
                                        "(times pressures, confs and n_samples)")
    pressures_GPa: list[PressureGPa] = Field(default_factory=lambda: [0.0], min_length=1,
                                       description="npt: one run per pressure")
    n_steps: StepCount = Field(1000, description="MD steps per run")
    timestep_fs: TimestepFs = Field(1.0, description="time step")
    dump_every: StepCount = Field(10, description="a frame (and its model deviation) every "
                            "this many steps")
    thermostat_tau_fs: DampingTimeFs = Field(100.0, description="thermostat damping time")
    barostat_tau_fs: DampingTimeFs = Field(1000.0, description="barostat damping time (npt)")
    n_samples: FrameCount = Field(1, description="runs per initial conf and grid point")
    confs: list[IndexCount] | None = Field(None, description="indices of the initial confs (all)")


class TemplateGroup(StrictModel):
    """A LAMMPS input template with placeholders filled from a grid of revisions."""

    kind: Literal["lmp-template"] = Field("lmp-template", description="runs of your own "
                                          "LAMMPS input template")
    template: str = Field(description="the template file (or its text when it has newlines)")
    revisions: dict[str, list[Any]] = Field(default_factory=dict, description="placeholder -> "
                                            "values; one run per combination (DPGEN2's "
                                            "revisions)")
    dump_every: StepCount = Field(10, description="the template's dump lines write every this "
                            "many steps")
    confs: list[IndexCount] | None = Field(None, description="indices of the initial confs (all)")


ExploreGroup = Annotated[MdGroup | TemplateGroup, Field(discriminator="kind")]


class ExploreConfig(StrictModel):
    """What to explore with: an engine (`lammps` or `ase-ensemble`) and task groups."""

    engine: EngineSpec = Field(description="lammps (pair_style deepmd with the models) or "
                               "ase-ensemble, with its settings and profile")
    groups: list[ExploreGroup] = Field(min_length=1, description="task groups: md grids and "
                                       "lmp-template runs")
    seed: Seed = Field(0, description="base of the MD velocity seeds (run k of a group "
                      "gets seed + k); a loop passes a new one per iteration")


def _conf_indices(group: MdGroup | TemplateGroup, n_confs: int, where: str) -> list[int]:
    if group.confs is None:
        return list(range(n_confs))
    bad = [i for i in group.confs if not 0 <= i < n_confs]
    if bad:
        raise ConfigError(f"{where}.confs: indices {bad} out of range (there are {n_confs} "
                          "initial confs)")
    return list(group.confs)


def expand_md_group(group: MdGroup, n_confs: int, where: str = "groups[0]", seed: int = 0
                    ) -> list[tuple[int, MDOptions, dict[str, Any]]]:
    """(conf index, MD options, grid point) for every run of the group; seeds differ per run
    (`seed` + 1, `seed` + 2, ...)."""
    pressures = group.pressures_GPa if group.ensemble == "npt" else [0.0]
    runs = []
    for conf in _conf_indices(group, n_confs, where):
        for t, p in itertools.product(group.temperatures_K, pressures):
            for _ in range(group.n_samples):
                seed += 1
                options = MDOptions(ensemble=group.ensemble, temperature_K=t, pressure_GPa=p,
                                    n_steps=group.n_steps, timestep_fs=group.timestep_fs,
                                    dump_every=group.dump_every,
                                    thermostat_tau_fs=group.thermostat_tau_fs,
                                    barostat_tau_fs=group.barostat_tau_fs, seed=seed)
                runs.append((conf, options, {"temperature_K": t, "pressure_GPa": p}))
    return runs


def revise_template(text: str, revision: dict[str, Any], models: Sequence[str] | None,
                    dump_every: int) -> str:
    """Fill placeholders, point `pair_style deepmd` at the ensemble and `dump` at traj.dump."""
    for key, value in revision.items():
        text = text.replace(key, str(value))
    lines = []
    n_dumps = 0
    for line in text.splitlines():
        words = line.split()
        if words[:2] == ["pair_style", "deepmd"] and models is not None:
            line = (f"pair_style deepmd {' '.join(deepmd_model_names(models))}"
                    + (f" out_freq {dump_every} out_file {MODEL_DEVI_FILE}"
                       if len(models) > 1 else ""))
        elif words[:1] == ["dump"] and len(words) >= 2:
            n_dumps += 1
            line = f"dump {words[1]} all custom {dump_every} {DUMP_FILE} id type x y z"
        lines.append(line)
    if n_dumps == 0:
        raise ConfigError("lmp-template: the template has no 'dump' line; opshelf rewrites it "
                          f"to write {DUMP_FILE}")
    if not re.search(r"^\s*read_data\s+conf\.lmp\b", text, re.MULTILINE):
        raise ConfigError("lmp-template: the template must 'read_data conf.lmp'")
    leftover = sorted({m for m in re.findall(r"\bV_[A-Z0-9_]+\b", "\n".join(lines))})
    if leftover:
        raise ConfigError(f"lmp-template: placeholders {leftover} have no value in revisions")
    return "\n".join(lines) + "\n"


def _template_text(template: str, base: Path | None) -> str:
    if "\n" in template:
        return template
    path = Path(template).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise MissingInputError(f"lmp-template: template file not found: {template}")
    return path.read_text()


def prepare_explore_tasks(conf_files: Sequence[Path], fmt: str, config: ExploreConfig,
                          out_dir: Path, *, type_map: Sequence[str] | None = None,
                          base: Path | None = None) -> tuple[list[str], list[Path], list[str]]:
    """One task dir per exploration run under `out_dir`. Returns (names, paths, type_map).

    Everything (engine, potential files, template placeholders) is checked before the
    first dir is written."""
    confs = [frame for path in conf_files for frame in read_frames(Path(path), fmt)]
    names_map = union_type_map(confs, type_map)
    for conf in confs:
        conf.sort_atom_names(type_map=names_map)
    engine = load_engine(config.engine)
    md_task = Task(kind=TaskKind.MD)
    engine.check(names_map, md_task)
    planned: list[tuple[int, int, dict[str, Any], Task | None, str | None]] = []
    for g, group in enumerate(config.groups):
        where = f"groups[{g}]"
        if isinstance(group, MdGroup):
            for conf, options, point in expand_md_group(group, len(confs), where, config.seed):
                planned.append((g, conf, point, Task(kind=TaskKind.MD, md=options), None))
            continue
        if not isinstance(engine, LammpsEngine):
            raise ConfigError(f"{where}: lmp-template groups need engine 'lammps', not "
                              f"{engine.name!r}")
        text = _template_text(group.template, base)
        potential = engine.settings.potential
        models = potential.models if isinstance(potential, DeepmdPotential) else None
        keys = list(group.revisions)
        for conf in _conf_indices(group, len(confs), where):
            for values in itertools.product(*(group.revisions[k] for k in keys)):
                revision = dict(zip(keys, values))
                script = revise_template(text, revision, models, group.dump_every)
                planned.append((g, conf, revision, None, script))
    names, paths = [], []
    for index, (g, conf, point, task, script) in enumerate(planned):
        name = f"explore-{index:06d}"
        task_dir = out_dir / name
        if task is not None:
            write_task(task_dir, confs[conf], task, engine)
            traj = DUMP_FILE if isinstance(engine, LammpsEngine) else "output.extxyz"
        else:
            assert isinstance(engine, LammpsEngine) and script is not None
            write_task(task_dir, confs[conf], md_task, engine)  # conf, potential, meta
            (task_dir / INPUT_FILE).write_text(script)
            traj = DUMP_FILE
        meta = {"group": g, "conf": conf, "point": point, "template": script is not None,
                "trajectory": traj,
                "trajectory_format": "lammps/dump" if traj == DUMP_FILE else "extxyz",
                "type_map": names_map}
        (task_dir / EXPLORE_FILE).write_text(json.dumps(meta, indent=1))
        names.append(name)
        paths.append(task_dir)
    return names, paths, names_map


def run_explore_tasks(task_dirs: Sequence[Path], work_dir: Path) -> list[dict[str, Any]]:
    """Copy each task dir under `work_dir` and run it; LAMMPS tasks share one process.

    Returns one report per task (also written as REPORT_FILE into its run dir): status,
    reason, trajectory and model_devi paths. A failed run is recorded, not raised."""
    work_dir.mkdir(parents=True, exist_ok=True)
    runs: list[Path] = []
    for task_dir in task_dirs:
        run_dir = work_dir / Path(task_dir).name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        shutil.copytree(task_dir, run_dir)
        runs.append(run_dir)
    reports: dict[Path, dict[str, Any]] = {}
    lammps_runs: list[Path] = []
    for run_dir in runs:
        engine, task, frame = read_task(run_dir)
        if isinstance(engine, LammpsEngine):
            lammps_runs.append(run_dir)
            continue
        try:
            engine.run(run_dir, task, frame)
            reports[run_dir] = {"status": "succeeded", "reason": ""}
        except (TaskFailed, CommandError) as exc:
            reports[run_dir] = {"status": "failed", "reason": str(exc)}
    if lammps_runs:
        engine, task, _ = read_task(lammps_runs[0])
        argv = [*engine.profile.mpi_prefix, *(engine.profile.command or engine.default_command())]
        outcome = run_lammps_tasks(lammps_runs, argv, engine.environment(),
                                   work_dir / "lammps-batch", timeout=engine.profile.timeout_s)
        for run_dir in lammps_runs:
            reason = outcome[str(run_dir.resolve())]
            reports[run_dir] = {"status": "failed" if reason else "succeeded", "reason": reason}
    out = []
    for run_dir in runs:
        report = {"task": run_dir.name, **reports[run_dir]}
        meta = json.loads((run_dir / EXPLORE_FILE).read_text())
        if report["status"] == "succeeded" and not (run_dir / meta["trajectory"]).is_file():
            report.update(status="failed", reason=f"no trajectory {meta['trajectory']}")
        (run_dir / REPORT_FILE).write_text(json.dumps(report, indent=1))
        out.append(report)
    return out


# -- selection over explored trajectories ----------------------------------------------------------
class SelectConfig(StrictModel):
    """How frames are selected from explored trajectories."""

    trust: TrustLevels = Field(description="the model-deviation levels that class a frame as "
                               "accurate, candidate or failed")
    max_select: int | None = Field(None, ge=0, le=10**6, description="at most this many frames")
    max_select_ratio: float | None = Field(None, ge=0, le=1, description="at most this "
                                           "fraction of the candidates")
    filters: ConfFilters = Field(default_factory=ConfFilters, description="checks a picked "
                                 "frame must pass; a rejected frame is replaced by the next "
                                 "candidate")
    seed: Seed = Field(0, description="seed of the random pick among candidates")
    n_test: int = Field(0, ge=0, le=100_000, description="also draw this many frames at "
                        "random (seeded) among the explored frames that are not failed and "
                        "pass the filters, none of them selected: a held-out test set "
                        "(`test_confs`)")


def find_explore_runs(paths: Sequence[Path]) -> list[Path]:
    """Run dirs (holding EXPLORE_FILE) under `paths`, sorted by name."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path)
        if (path / EXPLORE_FILE).is_file():
            found.add(path)
        elif path.is_dir():
            found.update(p.parent for p in path.rglob(EXPLORE_FILE) if ".dflow" not in p.parts)
    return sorted(found, key=lambda p: (p.name, str(p)))


def deviation_of_run(run_dir: Path, meta: dict[str, Any]) -> np.ndarray:
    """(n_frames, 7) deviations aligned with the trajectory's frames by step; a frame with
    no row (or a failed run) gets NaN, so it is classified failed."""
    traj = run_dir / meta["trajectory"]
    steps = trajectory_steps(traj, meta["trajectory_format"]) if traj.is_file() else \
        np.zeros(0, dtype=np.int64)
    table = np.full((steps.size, 7), np.nan)
    table[:, 0] = steps
    devi_path = run_dir / MODEL_DEVI_FILE
    if devi_path.is_file() and steps.size:
        devi = read_model_devi(devi_path)
        devi = devi[np.isfinite(devi[:, 0])]
        # the last row for a step wins (a restarted run may repeat steps)
        by_step = {int(s): i for i, s in enumerate(devi[:, 0])}
        for row, step in enumerate(steps):
            found = by_step.get(int(step))
            if found is not None:
                table[row, 1:] = devi[found, 1:]
    return table


class _FramePicker:
    """Reads chosen rows of the deviation table from their trajectories, filtered."""

    def __init__(self, runs: Sequence[Path], metas: Sequence[dict[str, Any]],
                 table: DeviationTable, filters: ConfFilters, type_map: list[str]) -> None:
        self.runs, self.metas, self.table = runs, metas, table
        self.filters, self.type_map = filters, type_map
        self.rejected: list[int] = []
        self.reasons: list[dict[str, Any]] = []

    def pick(self, order: np.ndarray, n_wanted: int) -> tuple[list[int], dpdata.MultiSystems]:
        """The first `n_wanted` rows of `order` that pass the filters, and their frames."""
        table, selected = self.table, []
        multi = dpdata.MultiSystems(type_map=self.type_map)
        start = 0
        while len(selected) < n_wanted and start < order.size:
            chunk = order[start:start + (n_wanted - len(selected))]
            start += chunk.size
            for traj in np.unique(table.traj[chunk]):
                rows = chunk[table.traj[chunk] == traj]
                run, meta = self.runs[int(traj)], self.metas[int(traj)]
                frames = read_trajectory_frames(run / meta["trajectory"],
                                                meta["trajectory_format"],
                                                table.frame[rows].tolist(), self.type_map)
                for k, row in enumerate(rows):
                    reason = rejection_reason(self.filters, frames["cells"][k],
                                              frames["coords"][k], pbc=not frames.nopbc)
                    if reason is None:
                        selected.append(int(row))
                        multi.append(frames.sub_system([k]))
                    else:
                        self.rejected.append(int(row))
                        self.reasons.append({"trajectory": run.name,
                                             "frame": int(table.frame[row]), "reason": reason})
        return selected, multi


def _write_frames(multi: dpdata.MultiSystems, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if multi.get_nframes():
        multi.to("deepmd/npy", str(out))


def select_confs(run_paths: Sequence[Path], config: SelectConfig, out_dir: Path,
                 type_map: Sequence[str] | None = None) -> dict[str, Any]:
    """Classify every explored frame, pick candidates, read only those frames, apply the
    filters, write `out_dir/confs` (deepmd/npy) and `out_dir/report.json`; with `n_test`,
    also `out_dir/test_confs`: that many random non-failed frames, none of them selected."""
    runs = find_explore_runs(run_paths)
    if not runs:
        raise MissingInputError(f"no exploration runs ({EXPLORE_FILE}) under "
                                f"{[str(p) for p in run_paths]}")
    metas = [json.loads((r / EXPLORE_FILE).read_text()) for r in runs]
    type_map = list(type_map or metas[0]["type_map"])
    table = DeviationTable.from_trajectories([deviation_of_run(r, m) for r, m in zip(runs, metas)])
    classification = classify(table, config.trust)
    order = candidate_order(table, classification, config.trust.style, config.seed)
    n_wanted = n_to_select(int((classification.labels == CANDIDATE).sum()), config.max_select,
                           config.max_select_ratio)
    picker = _FramePicker(runs, metas, table, config.filters, type_map)
    selected, multi = picker.pick(order, n_wanted)
    report = selection_report(table, classification, np.asarray(selected, dtype=np.int64),
                              [r.name for r in runs], np.asarray(picker.rejected, dtype=np.int64))
    report["selected"] = [{"trajectory": runs[int(table.traj[i])].name,
                           "frame": int(table.frame[i]), "devi_f": float(table.devi_f[i])}
                          for i in selected]
    report["filtered"] = picker.reasons
    report["type_map"] = type_map
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_frames(multi, out_dir / "confs")
    if config.n_test:
        # a sample of what the exploration visited (accurate frames too), not of what the
        # models found hard: its error measures the models where they will be used
        pool = np.flatnonzero(classification.labels != FAILED)
        pool = np.setdiff1d(pool, np.asarray(selected + picker.rejected, dtype=np.int64))
        test_order = np.random.default_rng([config.seed, 1]).permutation(pool)
        test_rows, test_multi = picker.pick(test_order, config.n_test)
        report["test"] = [{"trajectory": runs[int(table.traj[i])].name,
                           "frame": int(table.frame[i]), "devi_f": float(table.devi_f[i])}
                          for i in test_rows]
        _write_frames(test_multi, out_dir / "test_confs")
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    return report


def explore_config_from(data: dict[str, Any]) -> ExploreConfig:
    return validate_into(ExploreConfig, data, where="input 'explore'")


__all__ = ["TASK_FILE", "ExploreConfig", "MdGroup", "SelectConfig", "TemplateGroup",
           "expand_md_group", "prepare_explore_tasks", "revise_template", "run_explore_tasks",
           "select_confs"]
