"""Training data on disk: deepmd/npy systems (standard or mixed-type), found, counted, checked.

A *system* is a folder holding `type.raw` and `set.*/` folders (dpdata's `deepmd/npy` and
`deepmd/npy/mixed` formats). Inputs may name systems or folders of them (a multi-system
set as written by `collect_labels`): `find_systems` expands them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from opshelf.core.errors import ConfigError, MissingInputError

#: In a mixed-type system, each set holds the real types of every frame's atoms here.
MIXED_TYPES_FILE = "real_atom_types.npy"


def is_system(path: Path) -> bool:
    return path.is_dir() and (path / "type.raw").is_file()


def find_systems(paths: Iterable[str | Path]) -> list[Path]:
    """Every deepmd/npy system at or below `paths`, sorted within each path, absolute.

    A path holding no system is an error naming it (an empty data artifact is a mistake
    upstream, not something to train on silently).
    """
    systems: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MissingInputError(f"training data not found: {path}")
        found = [path] if is_system(path) else sorted(
            p.parent for p in path.rglob("type.raw") if ".dflow" not in p.parts)
        if not found:
            raise MissingInputError(f"no deepmd/npy system (a folder with type.raw) in {path}")
        systems.extend(p.resolve() for p in found)
    return systems


def set_dirs(system: Path) -> list[Path]:
    sets = sorted(p for p in system.glob("set.*") if p.is_dir())
    if not sets:
        raise MissingInputError(f"{system}: no set.* folder; not a deepmd/npy system")
    return sets


def count_frames(systems: Iterable[Path]) -> int:
    """Frames in `systems` (standard or mixed-type)."""
    total = 0
    for system in systems:
        for set_dir in set_dirs(system):
            coords = np.load(set_dir / "coord.npy", mmap_mode="r")
            total += int(coords.shape[0])
    return total


def is_mixed_type(system: Path) -> bool:
    return any((s / MIXED_TYPES_FILE).is_file() for s in set_dirs(system))


def system_elements(system: Path) -> list[str]:
    """The elements that occur in `system`, from its type_map.raw and its atom types."""
    map_file = system / "type_map.raw"
    if not map_file.is_file():
        raise ConfigError(f"{system}: no type_map.raw, so its atom types cannot be checked "
                          "against the model's type_map; write the data with dpdata")
    names = map_file.read_text().split()
    if is_mixed_type(system):
        used: set[int] = set()
        for set_dir in set_dirs(system):
            used.update(int(t) for t in np.unique(np.load(set_dir / MIXED_TYPES_FILE)))
    else:
        used = {int(t) for t in np.loadtxt(system / "type.raw", dtype=int, ndmin=1)}
    bad = sorted(t for t in used if t >= len(names) or t < 0)
    if bad:
        raise ConfigError(f"{system}: atom types {bad} have no name in type_map.raw {names}")
    return [names[t] for t in sorted(used)]


def check_type_map(type_map: Sequence[str], systems: Iterable[Path]) -> None:
    """Raise ConfigError naming each system holding an element the model's type_map lacks."""
    problems = []
    for system in systems:
        missing = [e for e in system_elements(system) if e not in type_map]
        if missing:
            problems.append(f"{system} holds {missing}")
    if problems:
        raise ConfigError(f"the model's type_map {list(type_map)} lacks elements of the data: "
                          + "; ".join(problems))
