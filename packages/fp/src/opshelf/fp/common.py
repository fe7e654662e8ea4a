"""Pure helpers shared by the FP engines (no dflow import).

k-point meshes, pseudopotential look-up, and the checks every labelled result passes
before it is accepted: the right atoms in the right order, finite energy, forces present.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Sequence
from pathlib import Path

import dpdata
import numpy as np

from opshelf.core.engine import TaskFailed
from opshelf.core.errors import CommandError, MissingInputError
from opshelf.core.process import tail


def kmesh_from_kspacing(cell: np.ndarray, kspacing_per_A: float) -> list[int]:
    """Monkhorst-Pack divisions n_i = max(1, ceil(|b_i| / kspacing)), with reciprocal
    vectors b_i including the 2*pi factor (VASP's KSPACING convention, in 1/Angstrom)."""
    if kspacing_per_A <= 0:
        raise ValueError(f"kspacing must be positive, got {kspacing_per_A}")
    reciprocal = 2.0 * np.pi * np.linalg.inv(np.asarray(cell, dtype=float)).T
    lengths = np.linalg.norm(reciprocal, axis=1)
    return [max(1, int(np.ceil(length / kspacing_per_A - 1e-9))) for length in lengths]


def frame_symbols(frame: dpdata.System) -> list[str]:
    """Chemical symbol of every atom of the frame, in order."""
    names = frame["atom_names"]
    return [names[t] for t in frame["atom_types"]]


def present_elements(frame: dpdata.System) -> list[str]:
    """Element names that have at least one atom in the frame (type_map order)."""
    return [name for name, count in zip(frame["atom_names"], frame["atom_numbs"]) if count > 0]


def ordered_unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def conform_to_frame(
    result: dpdata.LabeledSystem, frame: dpdata.System, log_path: Path
) -> dpdata.LabeledSystem:
    """Give a parsed result the frame's type map and check it describes the same atoms.

    Parsers name atom types by first appearance; the labelled data must keep the
    frame's `atom_names` (a training type map) so that results of many tasks merge.
    """
    check_labels(result, log_path)
    if result.get_natoms() != frame.get_natoms():
        raise TaskFailed(
            f"output has {result.get_natoms()} atoms, the frame has {frame.get_natoms()} ({log_path})",
            tail(log_path),
        )
    unknown = set(result["atom_names"]) - set(frame["atom_names"])
    if unknown:
        raise TaskFailed(
            f"output names atom types {sorted(unknown)} that the frame does not have ({log_path})",
            tail(log_path),
        )
    result.sort_atom_names(type_map=list(frame["atom_names"]))
    if np.array_equal(result["atom_types"], frame["atom_types"]):
        return result
    # dpdata's POSCAR and STRU writers group atoms by type (a stable sort): undo it.
    by_type = np.lexsort((np.arange(frame.get_natoms()), frame["atom_types"]))
    if np.array_equal(result["atom_types"], frame["atom_types"][by_type]):
        return result.pick_atom_idx(np.argsort(by_type))
    raise TaskFailed(
        f"atom order in the output differs from the frame's ({log_path})", tail(log_path)
    )


def undo_cell_rotation(system: dpdata.LabeledSystem, frame: dpdata.System) -> dpdata.LabeledSystem:
    """Put a single-point result back in the frame's orientation.

    Some dpdata readers (qe/pw/scf) rotate the cell to lower-triangular form. For a
    single point the cell is the frame's up to that rotation R (cell_frame = cell @ R):
    rotate positions, forces and virials by R so the labels match the frame as given.
    """
    cell = system["cells"][0]
    target = frame["cells"][0]
    if np.allclose(cell, target, atol=1e-8):
        return system
    rotation = np.linalg.solve(cell, target)
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6):
        raise TaskFailed("output cell is not the frame's cell up to a rotation")
    system.data["cells"] = system["cells"] @ rotation
    system.data["coords"] = system["coords"] @ rotation
    system.data["forces"] = system["forces"] @ rotation
    if "virials" in system.data:
        system.data["virials"] = rotation.T @ system["virials"] @ rotation
    return system


def check_labels(system: dpdata.LabeledSystem, log_path: Path) -> None:
    """A result is usable only with at least one frame, forces, and finite numbers."""
    if system.get_nframes() == 0:
        raise TaskFailed(f"no labelled frame could be read from {log_path}", tail(log_path))
    if "forces" not in system.data or np.size(system["forces"]) == 0:
        raise TaskFailed(f"no forces in {log_path}", tail(log_path))
    for key in ("energies", "forces", "virials"):
        if key in system.data and not np.all(np.isfinite(system[key])):
            raise TaskFailed(f"non-finite {key} in {log_path}", tail(log_path))


def last_frame(system: dpdata.LabeledSystem) -> dpdata.LabeledSystem:
    """The final frame of a trajectory (relaxations keep only the relaxed structure)."""
    return system[system.get_nframes() - 1] if system.get_nframes() > 1 else system


def find_in_dirs(names: Sequence[str], dirs: Sequence[Path]) -> Path | None:
    """First existing `dir/name` (or `dir/name.gz`) over dirs x names."""
    for directory in dirs:
        for name in names:
            for candidate in (directory / name, directory / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    return None


def copy_maybe_gzipped(source: Path, target: Path) -> Path:
    """Copy `source` to `target`, decompressing `.gz` (Debian ships example UPFs gzipped)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".gz":
        with gzip.open(source, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copyfile(source, target)
    return target


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingInputError(f"{what}: file not found: {path}")
    return path


def with_program_message(exc: CommandError, program: str, message: str) -> CommandError:
    """`exc` with the program's own words on why it stopped appended to its message (the
    reason a failed task is recorded with); `exc` itself when there are none."""
    if not message:
        return exc
    return CommandError(
        f"{exc.args[0]}; {program} says: {message}",
        argv=exc.argv,
        cwd=exc.cwd,
        returncode=exc.returncode,
        log_tail=exc.log_tail,
        timed_out=exc.timed_out,
    )
