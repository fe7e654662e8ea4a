"""Make opshelf-lameval's small real-DFT reference set with CP2K PBE (opshelf-fp's cp2k engine).

For each element (Cu, Al fcc; Si diamond), 4-8 atom cells: rattled, randomly strained, a
vacancy, and an EOS series (5 volumes, +-6 %). Each group is one deepmd/npy system under
`workflows/lam-eval/src/opshelf/lameval/data/reference/<Element>-<kind>/`, and
`provenance.json` records the inputs, the CP2K version and settings, the seeds, the wall
time and a fingerprint of every file, so a run can say which data it evaluated on.

    .venv/bin/python scripts/make_lameval_reference.py            # Al+Si: minutes on 2 cores
    .venv/bin/python scripts/make_lameval_reference.py --only Cu  # one element
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import dpdata
import numpy as np
from ase import Atoms
from ase.build import bulk

from opshelf.core.engine import EngineSpec
from opshelf.fp import label_frames

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "workflows/lam-eval/src/opshelf/lameval/data/reference"

#: element -> (crystal, lattice constant in A near the PBE value, cells repeat). PBE lattice
#: constants: Cu 3.63, Al 4.04, Si 5.47 A (e.g. Haas, Tran & Blaha, PRB 79, 085104 (2009)).
CRYSTALS: dict[str, tuple[str, float]] = {"Al": ("fcc", 4.04), "Si": ("diamond", 5.47),
                                          "Cu": ("fcc", 3.63)}
#: CP2K settings (opshelf-fp Cp2kSettings): PBE, DZVP-MOLOPT, 300/40 Ry grids, k-points by
#: spacing 0.6 /A (Al 3x3x3, Si 2x2x2, Cu 3x3x3 for these cells), Fermi-Dirac smearing for
#: the metals. Chosen to label ~30 frames in minutes on 2 shared cores: consistent labels for
#: a model comparison, not converged absolute values (k-points and basis are coarse).
def cp2k_settings(element: str) -> dict[str, Any]:
    settings: dict[str, Any] = {"xc": "PBE", "cutoff_Ry": 300.0, "rel_cutoff_Ry": 40.0,
                                "basis": "DZVP", "kspacing_per_A": 0.6, "eps_scf": 1e-6,
                                "max_scf": 200}
    if element != "Si":
        settings["smearing_K"] = 1000.0
    return settings


def base_cell(element: str) -> Atoms:
    crystal, a = CRYSTALS[element]
    return bulk(element, crystal, a=a, cubic=True)  # 4 atoms (fcc) or 8 atoms (diamond)


def make_frames(element: str, seed: int) -> dict[str, list[Atoms]]:
    """The groups of frames of one element (deterministic by seed)."""
    rng = np.random.default_rng(seed)
    base = base_cell(element)
    groups: dict[str, list[Atoms]] = {"rattled": [], "strained": [], "vacancy": [], "eos": []}
    for _ in range(3):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.08, atoms.positions.shape)
        groups["rattled"].append(atoms)
    for _ in range(2):
        strain = rng.uniform(-0.04, 0.04, (3, 3))
        atoms = base.copy()
        atoms.set_cell(base.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        groups["strained"].append(atoms)
    # vacancy: fcc in a 2x1x1 conventional cell (8 -> 7 atoms), diamond in the 8-atom cell
    vacancy = base * (2, 1, 1) if len(base) == 4 else base.copy()
    del vacancy[0]
    vacancy.positions += rng.normal(0.0, 0.03, vacancy.positions.shape)
    groups["vacancy"].append(vacancy)
    for ratio in np.linspace(0.94, 1.06, 5):
        atoms = base.copy()
        atoms.set_cell(base.cell[:] * ratio ** (1 / 3), scale_atoms=True)
        groups["eos"].append(atoms)
    return groups


def fingerprint(folder: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(CRYSTALS), help="elements")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of cp2k")
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    version = subprocess.run(["cp2k", "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[:2]
    provenance_path = args.out / "provenance.json"
    provenance: dict[str, Any] = (json.loads(provenance_path.read_text())
                                  if provenance_path.is_file() else {"systems": {}})
    provenance.update({
        "made_by": "scripts/make_lameval_reference.py",
        "code": "CP2K (Quickstep, GPW) through opshelf-fp's cp2k engine",
        "code_version": [line.strip() for line in version],
        "basis_and_potentials": "/usr/share/cp2k BASIS_MOLOPT, GTH_POTENTIALS (Debian cp2k-data)",
        "host": platform.platform(),
        "units": "deepmd/npy: energies eV, coordinates and cells A, forces eV/A, virials eV",
    })
    for index, element in enumerate(args.only):
        settings = cp2k_settings(element)
        spec = EngineSpec(name="cp2k", settings=settings,
                          profile={"threads": args.threads, "timeout_s": 600})
        for kind, frames in make_frames(element, args.seed + index).items():
            name = f"{element}-{kind}"
            start = time.monotonic()
            with tempfile.TemporaryDirectory(prefix=f"lameval-{name}-") as workdir:
                systems = [dpdata.System(atoms, fmt="ase/structure") for atoms in frames]
                labelled, failures = label_frames(systems, spec, workdir)
                if failures:
                    raise SystemExit(f"{name}: {len(failures)} CP2K task(s) failed: "
                                     f"{[f.reason for f in failures]}")
                # one system per group: frames of one group share the atom count
                merged = None
                for system in labelled.systems.values():
                    merged = system if merged is None else merged + system
                assert merged is not None
            folder = args.out / name
            if folder.exists():
                shutil.rmtree(folder)
            merged.to("deepmd/npy", folder)
            seconds = time.monotonic() - start
            provenance["systems"][name] = {
                "element": element, "kind": kind, "n_frames": merged.get_nframes(),
                "n_atoms": merged.get_natoms(), "crystal": CRYSTALS[element][0],
                "lattice_constant_A": CRYSTALS[element][1], "seed": args.seed + index,
                "cp2k_settings": settings, "cp2k_threads": args.threads,
                "wall_s": round(seconds, 1), "sha256": fingerprint(folder),
            }
            print(f"{name}: {merged.get_nframes()} frames x {merged.get_natoms()} atoms "
                  f"in {seconds:.0f} s", flush=True)
            provenance_path.write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
