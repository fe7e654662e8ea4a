"""Trajectories -> frames through dpdata, reading only the frames asked for.

Formats: `lammps/dump` (LAMMPS, read by dpdata with `f_idx`: other frames are skipped, not
parsed) and `extxyz` (ASE MD, read frame by frame through ASE's index).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dpdata
import numpy as np

from opshelf.core.errors import ConfigError, MissingInputError

TRAJ_FORMATS = ("lammps/dump", "extxyz")


def dump_steps(path: Path) -> np.ndarray:
    """The timestep of every frame of a LAMMPS dump (a line scan, no parsing of atoms)."""
    steps: list[int] = []
    with open(path, "rb") as fh:
        expect = False
        for line in fh:
            if expect:
                steps.append(int(line))
                expect = False
            elif line.startswith(b"ITEM: TIMESTEP"):
                expect = True
    return np.asarray(steps, dtype=np.int64)


def extxyz_steps(path: Path) -> np.ndarray:
    """The `md_step` of every frame of an extxyz trajectory written by opshelf's ASE MD."""
    import ase.io

    return np.asarray([int(a.info.get("md_step", i)) for i, a in
                       enumerate(ase.io.iread(path, index=":", format="extxyz"))], dtype=np.int64)


def trajectory_steps(path: Path, fmt: str) -> np.ndarray:
    check_format(fmt)
    return dump_steps(path) if fmt == "lammps/dump" else extxyz_steps(path)


def check_format(fmt: str) -> None:
    if fmt not in TRAJ_FORMATS:
        raise ConfigError(f"trajectory format {fmt!r} is not supported; use one of "
                          f"{list(TRAJ_FORMATS)}")


def read_trajectory_frames(path: Path, fmt: str, indices: Sequence[int],
                           type_map: Sequence[str]) -> dpdata.System:
    """Frames `indices` (0-based, in this order) of trajectory `path` as one System whose
    atom names are `type_map` (LAMMPS type i+1 is type_map[i])."""
    check_format(fmt)
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"trajectory not found: {path}")
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("read_trajectory_frames: no frame index given")
    if fmt == "lammps/dump":
        system = dpdata.System(str(path), fmt="lammps/dump", type_map=list(type_map),
                               f_idx=indices)
    else:
        import ase.io

        frames = [dpdata.System(ase.io.read(path, index=i, format="extxyz"),
                                fmt="ase/structure") for i in indices]
        system = frames[0]
        for frame in frames[1:]:
            system.append(frame)
    system.sort_atom_names(type_map=list(type_map))
    return system
