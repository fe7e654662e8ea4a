"""The evaluation tasks, as plain functions of a model spec (no dflow): each returns a JSON-able
dict with units in its key names, and records a failure (with its reason) instead of raising
when the model cannot do a structure.

    accuracy     energy/force/virial errors on labelled data sets, LAMBench normalised scores
    delta        EOS of elemental crystals vs WIEN2k (ase.collections.dcdft), the Delta gauge
    properties   elastic constants, vacancy, surface energies vs reference values (a data file)
    md           NVE stability: energy drift per atom per ps, NaN / collapsed atoms = failure
    efficiency   microseconds per atom per step at several system sizes, warm-up excluded
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from opshelf.core.bounds import Seed, Supercell, TemperatureK, TimestepFs
from opshelf.core.config import StrictModel
from opshelf.core.crystal import CrystalSpec, Lattice, bulk
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.lameval import metrics
from opshelf.lameval.data import (
    PROPERTY_REFERENCE,
    DatasetSpec,
    LabelledFrames,
    fingerprint,
    load_frames,
)
from opshelf.lameval.predict import ModelSpec, Predictor, make_predictor

log = logging.getLogger(__name__)

TASKS = ("accuracy", "delta", "properties", "md", "efficiency")
#: points kept per parity plot (the JSON stays small)
PARITY_POINTS = 2000


# -- configuration of the tasks ------------------------------------------------------------------
@dataclass(frozen=True)
class TaskContext:
    """What a task runs on: the model, the data sets, its work folder, the config's folder."""

    model: ModelSpec
    datasets: Sequence[DatasetSpec]
    workdir: Path
    config_dir: Path


class AccuracyTask(StrictModel):
    """Energy, force and virial errors on the labelled data sets."""

    enabled: bool = Field(True, description="run the accuracy task")
    shift_energies: bool = Field(True, description="per-element least-squares energy shift")

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        return run_accuracy(ctx.model, ctx.datasets, self)


class DeltaTask(StrictModel):
    """Delta gauge against WIEN2k all-electron equations of state."""

    enabled: bool = Field(True, description="run the Delta task")
    elements: list[str] = Field(default_factory=lambda: ["Al", "Cu", "Si"],
                                description="elements of ase.collections.dcdft")
    n_points: int = Field(7, ge=5, le=101, description="EOS points in +-6 % volume (Delta protocol)")

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        return run_delta(ctx.model, self, ctx.workdir / "delta")


class PropertiesTask(StrictModel):
    """Elastic constants and vacancy energies against reference values."""

    enabled: bool = Field(False, description="run the properties task (off by default)")
    reference: Path | None = Field(None, description="reference values JSON; the shipped "
                                   "experimental Cu/Al elastic and vacancy values when unset")
    elements: list[str] | None = Field(None, description="subset of the reference's elements")

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        return run_properties(ctx.model, self, ctx.workdir / "properties", ctx.config_dir)


class MdSystem(CrystalSpec):
    """One crystal the NVE stability run starts from (core's CrystalSpec)."""


class MdTask(StrictModel):
    """NVE stability: energy drift, and whether atoms collapse or numbers turn NaN."""

    enabled: bool = Field(True, description="run the MD stability task")
    systems: list[MdSystem] = Field(default_factory=lambda: [MdSystem(element="Cu")],
                                    description="the crystals to run")
    temperature_K: TemperatureK = Field(600.0, description="temperature of the "
                                 "Maxwell-Boltzmann starting velocities")
    n_steps: int = Field(200, ge=10, le=10**9, description="velocity-Verlet steps")
    timestep_fs: TimestepFs = Field(2.0, description="time step")
    min_distance_A: float = Field(0.5, gt=0, le=10, description="closer atoms: the run has failed")
    seed: Seed = Field(0, description="seed of the starting velocities")

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        return run_md(ctx.model, self)


class EfficiencyTask(StrictModel):
    """Speed: seconds per energy and forces call at several cell sizes."""

    enabled: bool = Field(True, description="run the efficiency task")
    element: str = Field("Cu", description="chemical symbol of the timed crystal")
    crystal: Lattice = Field("fcc", description="the lattice (its conventional cell; "
                             "orthorhombic for hcp)")
    supercells: list[Supercell] = Field(
        default_factory=lambda: [(2, 2, 2), (3, 3, 3), (4, 4, 4)],
        description="repeats of the conventional cell (fcc: 32, 108, 256 atoms)")
    n_warmup: int = Field(2, ge=1, le=1000, description="untimed calls first (model loading, "
                          "compilation)")
    n_steps: int = Field(5, ge=1, le=10_000, description="timed calls, averaged")

    def run(self, ctx: TaskContext) -> dict[str, Any]:
        return run_efficiency(ctx.model, self)


class TasksConfig(StrictModel):
    """Which evaluations run, each with its parameters."""

    accuracy: AccuracyTask = Field(default_factory=AccuracyTask,
                                   description="errors against the labelled data sets")
    delta: DeltaTask = Field(default_factory=DeltaTask,
                             description="Delta vs WIEN2k from each element's EOS")
    properties: PropertiesTask = Field(default_factory=PropertiesTask,
                                       description="properties against reference values")
    md: MdTask = Field(default_factory=MdTask, description="NVE stability")
    efficiency: EfficiencyTask = Field(default_factory=EfficiencyTask,
                                       description="speed of the energy and forces calls")

    def enabled(self) -> list[str]:
        return [name for name in TASKS if getattr(self, name).enabled]


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def _subsample(a: np.ndarray, b: np.ndarray, n: int = PARITY_POINTS) -> tuple[list, list]:
    a, b = np.ravel(a), np.ravel(b)
    if a.size > n:
        keep = np.linspace(0, a.size - 1, n).astype(int)
        a, b = a[keep], b[keep]
    return a.tolist(), b.tolist()


# -- accuracy ------------------------------------------------------------------------------------
def dataset_errors(frames: LabelledFrames, predictions: Sequence[Any], shift: bool = True
                   ) -> dict[str, Any]:
    """Errors of one data set's predictions, raw and normalised by the dummy model."""
    elements = sorted({s for symbols in frames.symbols for s in symbols})
    counts = metrics.element_counts(frames.symbols, elements)
    n_atoms = counts.sum(axis=1)
    e_model = np.array([p.energy_eV for p in predictions])
    e_err, s = metrics.energy_errors_per_atom(e_model, frames.energies, counts, shift)
    f_ref = np.concatenate([f.ravel() for f in frames.forces])
    f_model = np.concatenate([p.forces_eV_per_A.ravel() for p in predictions])
    f_err = f_model - f_ref
    v_ref_per_atom = v_err = None
    if frames.virials is not None and all(p.stress_eV_per_A3 is not None for p in predictions):
        v_ref_per_atom = np.array([v.reshape(3, 3) / n for v, n in zip(frames.virials, n_atoms)])
        v_model = np.array([p.virial_eV(a.get_volume()) / n
                            for p, a, n in zip(predictions, frames.atoms, n_atoms)])
        v_err = v_model - v_ref_per_atom
    dummy = metrics.dummy_errors(frames.energies, counts, f_ref, v_ref_per_atom)
    out: dict[str, Any] = {
        "status": "succeeded",
        "n_frames": len(frames.atoms), "n_atoms": int(n_atoms.sum()), "elements": elements,
        "energy_rmse_meV_per_atom": 1000 * metrics.rmse(e_err),
        "energy_mae_meV_per_atom": 1000 * metrics.mae(e_err),
        "force_rmse_meV_per_A": 1000 * metrics.rmse(f_err),
        "force_mae_meV_per_A": 1000 * metrics.mae(f_err),
        "energy_shift_eV_per_atom": dict(zip(elements, s.tolist())),
        "normalised": {"energy": metrics.normalised_error(metrics.rmse(e_err), dummy["energy"]),
                       "force": metrics.normalised_error(metrics.rmse(f_err), dummy["force"])},
    }
    e_ref_pa = frames.energies / n_atoms
    out["parity"] = {"energy_eV_per_atom": _subsample(e_ref_pa, e_ref_pa + e_err),
                     "force_eV_per_A": _subsample(f_ref, f_model)}
    if v_err is not None:
        out["virial_rmse_meV_per_atom"] = 1000 * metrics.rmse(v_err)
        out["virial_mae_meV_per_atom"] = 1000 * metrics.mae(v_err)
        out["normalised"]["virial"] = metrics.normalised_error(metrics.rmse(v_err),
                                                               dummy["virial"])
    return out


def run_accuracy(model: ModelSpec, datasets: Sequence[DatasetSpec], params: AccuracyTask
                 ) -> dict[str, Any]:
    predictor = make_predictor(model)
    try:
        per_dataset, normalised = _accuracy_per_dataset(model, datasets, params, predictor)
    finally:
        predictor.close()
    m_ff, per_domain = metrics.generalizability_error(normalised)
    return {"datasets": per_dataset, "generalizability_error": m_ff,
            "domain_errors": per_domain, "batched": predictor.batched,
            "workers": getattr(predictor, "workers", 1)}


def _accuracy_per_dataset(model: ModelSpec, datasets: Sequence[DatasetSpec],
                          params: AccuracyTask, predictor: Predictor
                          ) -> tuple[dict[str, Any], dict[str, dict[str, list[float]]]]:
    per_dataset: dict[str, Any] = {}
    normalised: dict[str, dict[str, list[float]]] = {}
    for spec in datasets:
        frames = load_frames(spec.path, spec.fmt)
        start = time.perf_counter()
        try:
            predictions = predictor.predict(frames.atoms)
            result = dataset_errors(frames, predictions, params.shift_energies)
        except Exception as exc:  # a model that cannot do an element: recorded, scored as dummy
            log.warning("accuracy: %s on %s failed: %s", model.name, spec.name, exc)
            result = _failure(exc)
            result["normalised"] = {"energy": 1.0, "force": 1.0}
        seconds = time.perf_counter() - start
        result.update(domain=spec.domain, fingerprint=fingerprint(spec.path),
                      wall_s=seconds, structs_per_s=len(frames.atoms) / seconds)
        per_dataset[spec.name] = result
        for kind, value in result["normalised"].items():
            if value is None:
                continue
            normalised.setdefault(spec.domain, {}).setdefault(kind, []).append(value)
    return per_dataset, normalised


# -- EOS and the Delta gauge ---------------------------------------------------------------------
def ase_engine_spec(model: ModelSpec) -> dict[str, Any]:
    """core's `ase` engine with this model's calculator (what opshelf-props runs on)."""
    return {"name": "ase", "settings": {"calculator": model.calculator, "kwargs": model.kwargs,
                                        "probe_elements": False}}


def run_delta(model: ModelSpec, params: DeltaTask, workdir: Path) -> dict[str, Any]:
    """EOS of each element's dcdft structure (fixed fractional positions, +-6 % around the
    WIEN2k volume) through opshelf-props, Birch-Murnaghan fit, Delta vs WIEN2k."""
    from ase.collections import dcdft

    from opshelf.props import EosParams, compute_property

    per_element: dict[str, Any] = {}
    for element in params.elements:
        if element not in dcdft.data:
            raise ConfigError(f"delta: element {element!r} is not in ase.collections.dcdft")
        ref = dcdft.data[element]
        atoms = dcdft[element]
        scale = (ref["wien2k_volume"] * len(atoms) / atoms.get_volume()) ** (1 / 3)
        atoms.set_cell(atoms.cell[:] * scale, scale_atoms=True)
        try:
            eos = compute_property(EosParams(volume_ratio_min=0.94, volume_ratio_max=1.06,
                                             n_points=params.n_points),
                                   atoms, ase_engine_spec(model), workdir / element)
            fit = eos["fits"]["birch_murnaghan"]
            delta = metrics.delta_meV_per_atom(fit["v0_A3_per_atom"], fit["b0_GPa"],
                                               fit["b0_prime"], ref["wien2k_volume"],
                                               ref["wien2k_B"], ref["wien2k_Bp"])
            per_element[element] = {
                "status": "succeeded", "delta_meV_per_atom": delta,
                "v0_A3_per_atom": fit["v0_A3_per_atom"], "b0_GPa": fit["b0_GPa"],
                "b0_prime": fit["b0_prime"], "e0_eV_per_atom": fit["e0_eV_per_atom"],
                "wien2k": {"v0_A3_per_atom": ref["wien2k_volume"], "b0_GPa": ref["wien2k_B"],
                           "b0_prime": ref["wien2k_Bp"]},
                "volumes_A3_per_atom": np.asarray(eos["volumes_A3_per_atom"]).tolist(),
                "energies_eV_per_atom": np.asarray(eos["energies_eV_per_atom"]).tolist(),
            }
        except Exception as exc:  # props raise PropertyFailed; a model may not know the element
            log.warning("delta: %s on %s failed: %s", model.name, element, exc)
            per_element[element] = _failure(exc)
    done = [r["delta_meV_per_atom"] for r in per_element.values() if r["status"] == "succeeded"]
    return {"elements": per_element,
            "mean_delta_meV_per_atom": float(np.mean(done)) if done else None,
            "n_failed": len(per_element) - len(done)}


# -- properties vs reference values ---------------------------------------------------------------
def _lookup(result: dict[str, Any], key: str) -> Any:
    value: Any = result
    for part in key.split("/"):
        value = value[part]
    return value


def run_properties(model: ModelSpec, params: PropertiesTask, workdir: Path, config_dir: Path
                   ) -> dict[str, Any]:
    """Relax each reference structure, compute its properties through opshelf-props, compare
    every value the reference file gives (relative and absolute errors)."""
    from opshelf.props import compute_properties

    path = params.reference or PROPERTY_REFERENCE
    path = path if path.is_absolute() else config_dir / path
    if not path.is_file():
        raise MissingInputError(f"properties: reference file not found: {path}")
    reference = json.loads(path.read_text())["elements"]
    elements = params.elements or sorted(reference)
    out: dict[str, Any] = {}
    rel_errors: list[float] = []
    for element in elements:
        if element not in reference:
            raise ConfigError(f"properties: {element!r} is not in {path} "
                              f"(it has {sorted(reference)})")
        entry = reference[element]
        s = entry["structure"]
        atoms = bulk(element, s["crystal"], s.get("lattice_constant_A"),
                     where=f"properties reference {element}")
        types = [{"type": name, **prop.get("params", {})}
                 for name, prop in entry["properties"].items()]
        try:
            results = compute_properties(atoms, ase_engine_spec(model), types,
                                         workdir / element, relax={"relax_cell": True})
        except Exception as exc:
            log.warning("properties: %s on %s failed: %s", model.name, element, exc)
            out[element] = _failure(exc)
            continue
        rows = []
        for name, prop in entry["properties"].items():
            for key, ref_value in prop["values"].items():
                value = float(_lookup(results[name], key))
                rel = (value - ref_value) / abs(ref_value)
                rel_errors.append(abs(rel))
                rows.append({"property": name, "key": key, "model": value,
                             "reference": ref_value, "error": value - ref_value,
                             "relative_error": rel, "source": prop.get("source", "")})
        out[element] = {"status": "succeeded", "comparisons": rows}
    return {"elements": out, "reference_file": str(path), "reference_sha256": fingerprint(path),
            "mean_abs_relative_error": float(np.mean(rel_errors)) if rel_errors else None}


# -- MD stability ------------------------------------------------------------------------------------
def nve_run(atoms: Any, calc: Any, params: MdTask) -> dict[str, Any]:
    """One NVE run (velocity Verlet) from a Maxwell-Boltzmann start at `temperature_K`.
    Failure: an exception, a non-finite energy or force, atoms closer than min_distance_A."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=params.temperature_K,
                                 rng=np.random.default_rng(params.seed))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=params.timestep_fs * units.fs)
    n = len(atoms)
    times: list[float] = []
    energies: list[float] = []
    reason = None
    start = time.perf_counter()
    for step in range(params.n_steps + 1):
        if step:
            try:
                dyn.run(1)
            except Exception as exc:  # the calculator gave up (e.g. no neighbours, NaN)
                reason = f"step {step}: {type(exc).__name__}: {exc}"
                break
        e_total = atoms.get_potential_energy() + atoms.get_kinetic_energy()
        if not np.isfinite(e_total) or not np.isfinite(atoms.get_forces()).all():
            reason = f"step {step}: non-finite energy or forces"
            break
        if n > 1:
            d = atoms.get_all_distances(mic=True)[np.triu_indices(n, 1)].min()
            if d < params.min_distance_A:
                reason = f"step {step}: atoms {d:.2f} A apart (< {params.min_distance_A})"
                break
        times.append(step * params.timestep_fs / 1000)
        energies.append(e_total / n)
    seconds = time.perf_counter() - start
    if reason is not None:
        return {"status": "failed", "reason": reason, "n_atoms": n,
                "instability": metrics.FAILED_MD_PENALTY, "times_ps": times,
                "energy_eV_per_atom": energies}
    drift = metrics.drift_slope(np.array(times), np.array(energies))
    return {"status": "succeeded", "n_atoms": n, "drift_eV_per_atom_per_ps": drift,
            "instability": metrics.instability(drift), "wall_s": seconds,
            "times_ps": times, "energy_eV_per_atom": energies}


def run_md(model: ModelSpec, params: MdTask) -> dict[str, Any]:
    from opshelf.core.models import load_calculator

    runs: dict[str, Any] = {}
    for system in params.systems:
        label = f"{system.element}-{system.crystal}-{'x'.join(map(str, system.supercell))}"
        try:
            runs[label] = nve_run(system.atoms(),
                                  load_calculator(model.calculator, **model.kwargs), params)
        except Exception as exc:  # building the structure or the calculator
            runs[label] = {**_failure(exc), "instability": metrics.FAILED_MD_PENALTY}
    values = [r["instability"] for r in runs.values()]
    return {"runs": runs, "instability": float(np.mean(values)),
            "n_failed": sum(r["status"] != "succeeded" for r in runs.values())}


# -- efficiency ------------------------------------------------------------------------------------
def time_force_calls(atoms: Any, calc: Any, n_warmup: int, n_steps: int, seed: int = 0
                     ) -> float:
    """Seconds per energy+forces call, averaged over `n_steps` calls after `n_warmup` (each
    call on freshly displaced positions, so no calculator can return a cached result)."""
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.calc = calc
    base = atoms.positions.copy()
    elapsed = 0.0
    for step in range(n_warmup + n_steps):
        atoms.positions = base + rng.normal(0.0, 0.02, base.shape)
        start = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        if step >= n_warmup:
            elapsed += time.perf_counter() - start
    return elapsed / n_steps


def run_efficiency(model: ModelSpec, params: EfficiencyTask) -> dict[str, Any]:
    from opshelf.core.models import load_calculator

    calc = load_calculator(model.calculator, **model.kwargs)
    base = bulk(params.element, params.crystal, where="efficiency")
    sizes = []
    for repeat in params.supercells:
        atoms = base * repeat
        seconds = time_force_calls(atoms, calc, params.n_warmup, params.n_steps)
        sizes.append({"supercell": list(repeat), "n_atoms": len(atoms),
                      "s_per_step": seconds, "us_per_atom_per_step": 1e6 * seconds / len(atoms)})
    largest = sizes[-1]["us_per_atom_per_step"]
    return {"sizes": sizes, "device": device_name(), "us_per_atom_per_step": largest,
            "efficiency_score": metrics.efficiency_score(largest)}


def device_name() -> str:
    """What the models run on: the GPU's name when torch sees one, else the CPU."""
    import platform

    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"cpu: {platform.processor() or platform.machine()}"


def run_task(task: str, model: ModelSpec, tasks: TasksConfig, datasets: Sequence[DatasetSpec],
             workdir: Path, config_dir: Path) -> dict[str, Any]:
    """One task of one model; the result carries its wall time."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    start = time.perf_counter()
    # each task's config runs it
    result = getattr(tasks, task).run(TaskContext(model, datasets, workdir, config_dir))
    result["task_wall_s"] = time.perf_counter() - start
    return result


def evaluate_model(model: ModelSpec, tasks: TasksConfig, datasets: Sequence[DatasetSpec],
                   workdir: Path, config_dir: Path) -> dict[str, Any]:
    """Every enabled task of one model -> {"model": spec, task: result}."""
    from opshelf.lameval.models import torch_thread_count, torch_threads

    out: dict[str, Any] = {"model": model.model_dump(mode="json")}
    with torch_threads(model.threads):
        for task in tasks.enabled():
            log.info("lameval: %s: %s", model.name, task)
            out[task] = run_task(task, model, tasks, datasets, workdir, config_dir)
        # what the timings (efficiency, wall times) were measured with
        out["torch_threads"] = torch_thread_count()
    return out
