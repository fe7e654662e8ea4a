"""Inputs of a run prepared before the loop starts: initial data, initial confs, template.

Pure functions (no dflow): they read the user's files through dpdata/ASE and write what the
steps receive into `<run>/inputs/`. Every problem is a UserError naming the file or key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from opshelf.cl.config import ClConfig, ConfSource, DataSource, ExploreEngine, LatticeConfs
from opshelf.core.energy_reference import fit_reference
from opshelf.core.engine import EngineSpec, load_engine
from opshelf.core.errors import ConfigError, MissingInputError
from opshelf.md.ase_ensemble import CalculatorSpec
from opshelf.md.explore import ExploreConfig
from opshelf.md.lammps import DeepmdPotential

INIT_DATA_DIR = "init-data"
TEST_DATA_DIR = "test-data"
CONFS_DIR = "confs"


def resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def read_labelled(source: DataSource, base: Path, type_map: list[str],
                  key: str = "init_data") -> Any:
    """A dpdata MultiSystems of the labelled frames of `source` (errors name `key`)."""
    import dpdata

    path = resolve(source.path, base)
    if not path.exists():
        raise MissingInputError(f"{key}: not found: {source.path} (looked at {path})")
    # a copy: dpdata appends the elements it meets to the list it is given, and the check
    # below would then find every element of the data in type_map
    multi = dpdata.MultiSystems(type_map=list(type_map))
    try:
        if source.fmt == "auto" and path.is_dir():
            systems = [p.parent for p in sorted(path.rglob("type.raw"))]
            if not systems:
                raise MissingInputError(f"{key}: no deepmd/npy system in {path}")
            for system in systems:
                multi.append(dpdata.LabeledSystem(str(system), fmt="deepmd/npy"))
        elif source.fmt == "auto":
            import ase.io

            for atoms in ase.io.read(path, index=":"):
                multi.append(dpdata.LabeledSystem(atoms, fmt="ase/structure"))
        else:
            loaded = dpdata.MultiSystems.from_file(str(path), fmt=source.fmt,
                                                   labeled=True, type_map=list(type_map))
            for system in loaded:
                multi.append(system)
    except (MissingInputError, ConfigError):
        raise
    except Exception as exc:  # dpdata/ASE raise anything on a bad file
        raise ConfigError(f"{key}: cannot read {path} as labelled frames "
                          f"(fmt {source.fmt!r}): {type(exc).__name__}: {exc}") from None
    if not multi.get_nframes():
        raise ConfigError(f"{key}: {path} holds no labelled frame")
    extra = sorted({n for s in multi for n, c in zip(s["atom_names"], s["atom_numbs"]) if c}
                   - set(type_map))
    if extra:
        raise ConfigError(f"{key}: {path} holds elements {extra} not in type_map {type_map}")
    return multi


def write_labelled(sources: list[DataSource], type_map: list[str], base: Path, out: Path,
                   key: str) -> int:
    """Every entry of `sources` into `out` (deepmd/npy, one folder per formula); frames."""
    import dpdata

    merged = dpdata.MultiSystems(type_map=type_map)
    for source in sources:
        for system in read_labelled(source, base, type_map, key):
            merged.append(system)
    merged.to("deepmd/npy", str(out))
    return merged.get_nframes()


def write_init_data(config: ClConfig, base: Path, out: Path) -> int:
    """Every init_data entry into `out` (deepmd/npy, one folder per formula); frames."""
    return write_labelled(config.init_data, config.type_map, base, out, "init_data")


def init_energy_reference(config: ClConfig, systems: Iterable[Any]) -> dict[str, Any]:
    """collect-fp's energy_reference: per-element energies fitted to the init data's
    `systems`, with fp.max_energy_deviation_eV_per_atom ({} when that is null)."""
    limit = config.fp.max_energy_deviation_eV_per_atom
    if limit is None:
        return {}
    try:
        reference = fit_reference(systems, max_deviation_eV_per_atom=limit)
    except ConfigError as exc:
        raise ConfigError(f"init_data: {exc}; or set fp.max_energy_deviation_eV_per_atom: "
                          "null") from None
    return reference.model_dump(mode="json")


def lattice_confs(spec: LatticeConfs) -> list[Any]:
    """`spec.n_confs` supercells with random substitutions and rattle (seeded)."""
    base = spec.atoms(where="generate")
    rng = np.random.default_rng(spec.seed)
    confs = []
    for _ in range(spec.n_confs):
        atoms = base.copy()
        symbols = atoms.get_chemical_symbols()
        for sub in spec.substitutions:
            sites = [i for i, s in enumerate(symbols) if s == sub.replace]
            if not sites:
                raise ConfigError(f"generate.substitutions: no {sub.replace!r} site in the "
                                  f"{spec.element} lattice")
            order = rng.permutation(sites)
            start = 0
            for element, fraction in sub.by.items():
                n = int(round(fraction * len(sites)))
                for i in order[start:start + n]:
                    symbols[i] = element
                start += n
        atoms.set_chemical_symbols(symbols)
        if spec.rattle_A:
            atoms.positions += rng.normal(0.0, spec.rattle_A, atoms.positions.shape)
        confs.append(atoms)
    return confs


def stage_confs(source: ConfSource, base: Path) -> list[Any]:
    """The initial confs of a stage as ASE Atoms."""
    if source.generate is not None:
        return lattice_confs(source.generate)
    from opshelf.core.ops.labelling import read_frames

    atoms = []
    for entry in source.files or []:
        path = resolve(entry, base)
        if not path.exists():
            raise MissingInputError(f"explore.stages: conf file not found: {entry} "
                                    f"(looked at {path})")
        atoms.extend(frame.to("ase/structure")[0] for frame in read_frames(path, source.fmt))
    if not atoms:
        raise ConfigError(f"explore.stages: no conf in {source.files}")
    return atoms


def write_stage_confs(config: ClConfig, base: Path, out: Path | None
                      ) -> tuple[list[Path], list[ExploreConfig]]:
    """Every stage's confs into one extxyz per stage under `out` (not written when None);
    returns (files, each stage's exploration: opshelf-md's ExploreConfig, without the models
    (``with_models``), its groups' conf indices made global)."""
    import ase.io

    files: list[Path] = []
    explores: list[ExploreConfig] = []
    offset = 0
    for i, stage in enumerate(config.explore.stages):
        atoms = stage_confs(stage.confs, base)
        bad = sorted({s for a in atoms for s in a.get_chemical_symbols()} - set(config.type_map))
        if bad:
            raise ConfigError(f"explore.stages[{i}]: confs hold {bad}, not in type_map")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"stage-{i:03d}.extxyz"
            ase.io.write(path, atoms, format="extxyz")
            files.append(path)
        groups = []
        for g, group in enumerate(stage.groups):
            local = group.confs if group.confs is not None else list(range(len(atoms)))
            wrong = [c for c in local if not 0 <= c < len(atoms)]
            if wrong:
                raise ConfigError(f"explore.stages[{i}].groups[{g}].confs: {wrong} out of "
                                  f"range; the stage has {len(atoms)} confs")
            groups.append(group.model_copy(update={"confs": [offset + c for c in local]}))
        offset += len(atoms)
        try:
            explores.append(ExploreConfig(engine=EngineSpec(
                name=config.explore.engine, settings=config.explore.settings,
                profile=config.explore.profile), groups=groups))
        except ValidationError as exc:
            raise ConfigError(f"explore.stages[{i}]: {exc}") from None
        # explore.settings checked now against the engine's Settings (bounds included), with
        # a stand-in ensemble where the trained models go
        load_engine(with_models(explores[-1], ["model.pb"]).engine)
    return files, explores


def _deepmd_potential(models: list[str]) -> dict[str, Any]:
    return {"potential": DeepmdPotential(style="deepmd", models=models).model_dump(mode="json")}


def _deepmd_calculators(models: list[str]) -> dict[str, Any]:
    return {"calculators": [CalculatorSpec(calculator="deepmd", kwargs={"model": m}
                                           ).model_dump(mode="json") for m in models]}


#: how each exploration engine takes the trained ensemble: the settings it adds
ENSEMBLE_SETTINGS: dict[ExploreEngine, Callable[[list[str]], dict[str, Any]]] = {
    "lammps": _deepmd_potential,        # pair_style deepmd with every model
    "ase-ensemble": _deepmd_calculators,  # one DeePMD calculator per model
}


def with_models(explore: ExploreConfig, models: list[str]) -> ExploreConfig:
    """`explore` with the ensemble `models` as its potential (typed: the engine's settings
    gain the engine's own DeePMD entry; nothing else changes)."""
    engine = explore.engine
    if engine.name not in ENSEMBLE_SETTINGS:
        raise ConfigError(f"explore.engine {engine.name!r}: cl explores with "
                          f"{sorted(ENSEMBLE_SETTINGS)}")
    ensemble = ENSEMBLE_SETTINGS[engine.name](models)  # type: ignore[index]
    return explore.model_copy(update={"engine": EngineSpec(
        name=engine.name, settings={**engine.settings, **ensemble}, profile=engine.profile)})


def load_template(config: ClConfig, base: Path) -> dict[str, Any]:
    template = config.train.template
    if isinstance(template, dict):
        return template
    path = resolve(template, base)
    if not path.is_file():
        raise MissingInputError(f"train.template: file not found: {template} (looked at {path})")
    from opshelf.core.config import read_mapping

    data = read_mapping(path) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    return data


def init_model_files(config: ClConfig, base: Path) -> list[Path]:
    """`train.init_models` resolved against the config's folder, each checked to exist."""
    files = [resolve(model, base) for model in config.train.init_models]
    for given, path in zip(config.train.init_models, files):
        if not path.is_file():
            raise MissingInputError(f"train.init_models: file not found: {given} (looked at "
                                    f"{path})")
    return files
