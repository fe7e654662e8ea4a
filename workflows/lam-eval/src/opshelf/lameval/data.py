"""Labelled data sets (any dpdata format), the shipped reference set, and data fingerprints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from opshelf.core.config import StrictModel
from opshelf.core.errors import ConfigError, MissingInputError

if TYPE_CHECKING:
    from ase import Atoms

#: the small real-DFT (CP2K PBE) reference set made by scripts/make_lameval_reference.py
REFERENCE_DIR = Path(__file__).parent / "data" / "reference"
#: reference values of elastic constants and vacancy energies (with their sources)
PROPERTY_REFERENCE = Path(__file__).parent / "data" / "property-reference.json"


class DatasetSpec(StrictModel):
    """A labelled data set: energies, forces (and virials) in any dpdata format."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="the data set's name in results and the report")
    path: Path = Field(description="file or folder (relative to the config file)")
    fmt: str = Field("deepmd/npy", description="dpdata format of a labelled system, e.g. "
                     "'deepmd/npy', 'vasp/outcar', 'extxyz', 'cp2k/output'")
    domain: str = Field("default", description="group of data sets averaged together (LAMBench "
                        "domains: inorganic materials, catalysis, ...)")


@dataclass
class LabelledFrames:
    """Frames of one data set with their reference labels (eV, eV/A, virial eV)."""

    atoms: list[Atoms]
    energies: np.ndarray
    forces: list[np.ndarray]
    virials: list[np.ndarray] | None

    @property
    def symbols(self) -> list[list[str]]:
        return [a.get_chemical_symbols() for a in self.atoms]


def is_deepmd_dir(path: Path) -> bool:
    return path.is_dir() and (path / "type.raw").is_file()


def reference_datasets(root: Path = REFERENCE_DIR) -> list[DatasetSpec]:
    """The shipped reference set: one data set per folder, its domain the element."""
    provenance = json.loads((root / "provenance.json").read_text()) \
        if (root / "provenance.json").is_file() else {"systems": {}}
    specs = []
    for folder in sorted(p for p in root.iterdir() if is_deepmd_dir(p)):
        info = provenance["systems"].get(folder.name, {})
        specs.append(DatasetSpec(name=folder.name, path=folder, fmt="deepmd/npy",
                                 domain=info.get("element", folder.name.split("-")[0])))
    if not specs:
        raise MissingInputError(f"no reference data sets under {root}: run "
                                "scripts/make_lameval_reference.py")
    return specs


def load_frames(path: Path, fmt: str) -> LabelledFrames:
    """Every frame of a labelled data set; a folder of deepmd/npy systems is read whole."""
    import dpdata

    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"data set not found: {path}")
    try:
        if fmt == "deepmd/npy" and path.is_dir() and not is_deepmd_dir(path):
            systems = list(dpdata.MultiSystems().from_dir(str(path), "type.raw",
                                                           fmt="deepmd/npy").systems.values())
        else:
            systems = [dpdata.LabeledSystem(str(path), fmt=fmt)]
    except Exception as exc:  # dpdata raises many types for files it cannot read
        raise ConfigError(f"data set {path}: dpdata cannot read it as {fmt!r}: "
                          f"{type(exc).__name__}: {exc}") from None
    atoms: list[Atoms] = []
    energies: list[float] = []
    forces: list[np.ndarray] = []
    virials: list[np.ndarray] | None = []
    for system in systems:
        if "energies" not in system.data or "forces" not in system.data:
            raise ConfigError(f"data set {path}: no energies/forces (not labelled)")
        atoms += system.to("ase/structure")
        energies += [float(e) for e in system["energies"]]
        forces += [np.asarray(f, dtype=float) for f in system["forces"]]
        if virials is not None and "virials" in system.data:
            virials += [np.asarray(v, dtype=float) for v in system["virials"]]
        else:
            virials = None  # only compared where every frame has one
    if not atoms:
        raise ConfigError(f"data set {path}: no frames")
    return LabelledFrames(atoms, np.array(energies), forces, virials)


def fingerprint(path: Path) -> str:
    """sha256 of a data set's files (relative names and contents, sorted): equal
    fingerprints mean two runs evaluated the same data."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.relative_to(path if path.is_dir() else path.parent).as_posix()
                      .encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
