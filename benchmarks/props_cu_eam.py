"""Wall time of opshelf-props for fcc Cu with Cu_u3.eam (LAMMPS, opshelf-md's engine) in
local mode: relax -> EOS, elastic, vacancy (4x4x4), surfaces (max Miller index 2) and the
{111}<112> stacking fault, as one dflow workflow run by core's local runner.

Prints the values next to FIELD-NOTES' measurements (a0 3.6150 A, B 138.5 GPa, C11 167.3,
C12 124.2, C44 76.5 GPa, vacancy 1.285 eV). The last line is machine-readable:
props_wall_s=.. a0_A=.. B_GPa=.. C11_GPa=.. C12_GPa=.. C44_GPa=.. vacancy_eV=.. n_tasks=..

Usage: python benchmarks/props_cu_eam.py [--workdir DIR] [--plain]
  --plain: the plain-Python runner (no dflow) instead, for comparison

Where local mode's time went (issue #6), and what removed it: every forked step imported
what the fork server had not (ase.io ~1 s, pymatgen's EOS/elasticity ~1-1.5 s each,
phonopy), the driver ran every property's `make` once more to size the fan-outs, and
pymatgen's slab centring took most of the surface `make`. Now the fork server preloads the
modules the OPs declare (`preload_modules`) and the engines named in step parameters,
fan-outs are sized by `Property.count_tasks`, slabs are centred from their c coordinates.
Measured on the shared 2-core machine, same load (~7), CPU seconds of the whole process
tree in brackets: before props_wall_s=76.4 (63 CPU-s), after 23.4 (22 CPU-s), --plain 11.2
(11 CPU-s). At load 10-20: before 74 CPU-s, after 27 CPU-s.

Issue 21 (2026-12-05): on LAMMPS each property is now one step (ComputeProperty) with its
tasks in one LAMMPS process (Engine.run_many) instead of make -> one step per task -> post.
Side by side at load 8.5-10 (the older packages from git HEAD on PYTHONPATH, bytecode
caching on for both): before props_wall_s=53.1, after 19.1 (24.9 in a first run at load
8.2), the same values to every printed digit, n_tasks=57.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ENGINE = {"name": "lammps",
          "settings": {"potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}}},
          "profile": {"threads": 1}}
PROPERTIES = [
    {"type": "eos"},
    {"type": "elastic"},
    {"type": "vacancy", "supercell": [4, 4, 4]},
    {"type": "surface", "max_miller_index": 2},
    {"type": "stacking_fault"},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ase.io
    from ase.build import bulk

    from opshelf.props import compute_properties
    from opshelf.props.ops import run_props_locally

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="props-cu-eam-"))
    workdir.mkdir(parents=True, exist_ok=True)
    structure = workdir / "cu.extxyz"
    ase.io.write(structure, bulk("Cu", "fcc", a=3.6, cubic=True))
    relax = {"relax_cell": True}
    start = time.monotonic()
    if args.plain:
        results = compute_properties(structure, ENGINE, PROPERTIES, workdir / "plain",
                                     relax=relax)
    else:
        results = run_props_locally(structure, ENGINE, PROPERTIES, workdir / "local",
                                    relax=relax, workflow_id="props-cu-eam")
    wall = time.monotonic() - start
    eos, elastic = results["eos"], results["elastic"]
    surface = results["surface"]["surface_energies_J_per_m2"]
    key = "stacking-fault" if "stacking-fault" in results else "stacking_fault"
    sf = results[key]
    # task dirs written by make (dflow local mode links them again as step inputs)
    n_tasks = len({p.parent.name for p in workdir.rglob("opshelf-task.json")})
    print(f"mode: {'plain Python' if args.plain else 'dflow local'}; workdir {workdir}")
    print(f"a0 {eos['lattice_constant_A']:.4f} A (FIELD-NOTES 3.6150), "
          f"E0 {eos['e0_eV_per_atom']:.4f} eV/atom, B {eos['bulk_modulus_GPa']:.2f} GPa (138.5)")
    print(f"C11 {elastic['c11_GPa']:.2f} (167.3), C12 {elastic['c12_GPa']:.2f} (124.2), "
          f"C44 {elastic['c44_GPa']:.2f} (76.5) GPa; K_VRH {elastic['bulk_modulus_vrh_GPa']:.2f}, "
          f"G_VRH {elastic['shear_modulus_vrh_GPa']:.2f} GPa")
    print(f"vacancy formation {results['vacancy']['formation_energy_eV']:.4f} eV (1.285)")
    print("surface energies (J/m^2): "
          + ", ".join(f"({k}) {v:.4f}" for k, v in sorted(surface.items())))
    how = "relaxed normal to the plane" if sf["relaxed"] else "rigid shifts"
    print(f"stacking fault {sf['slip_system']}: unstable {sf['unstable_fault_energy_J_per_m2']:.4f}"
          f", stable {sf['stable_fault_energy_J_per_m2']:.4f} J/m^2 ({how})")
    print(f"props_wall_s={wall:.1f} a0_A={eos['lattice_constant_A']:.4f} "
          f"B_GPa={eos['bulk_modulus_GPa']:.2f} C11_GPa={elastic['c11_GPa']:.2f} "
          f"C12_GPa={elastic['c12_GPa']:.2f} C44_GPa={elastic['c44_GPa']:.2f} "
          f"vacancy_eV={results['vacancy']['formation_energy_eV']:.4f} n_tasks={n_tasks}")


if __name__ == "__main__":
    main()
