"""`opshelf alloy import-apex param.json [more.json ...] [global.json]`: APEX (apex-flow)
parameter files -> an opshelf alloy config.

Mapped: `structures` (globs of folders holding a POSCAR, or with the abacus interaction an
ABACUS STRU), `interaction` (deepmd, eam_alloy, eam_fs, meam, vasp, abacus),
`relaxation.cal_setting` (relax_pos/shape/vol, ftol, maxiter; ABACUS's K_POINTS) and the
properties eos, elastic, vacancy, interstitial, surface, gamma (-> stacking_fault),
gamma_surface and phonon. Everything else is listed in a note that says why it is not
mapped; a mapping that would change what is computed (absolute EOS volumes, another
interaction type, per-task ABACUS inputs opshelf's one engine cannot give) is an error,
and so is a conversion left with no property (e.g. APEX's annealing or finite_t_elastic
alone). The EOS volumes are the ones the APEX version given computes (its
own loop, floating point included); model and potential files are resolved against the
folder of the APEX file that names them and must exist. Pure functions, no dflow.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from pathlib import Path
from typing import Any

from opshelf.core.config import read_mapping
from opshelf.core.errors import ConfigError
from opshelf.core.outputs import refuse_output_over_inputs
from opshelf.props.eos import MIN_POINTS as EOS_MIN_POINTS

#: APEX LAMMPS interaction type -> opshelf-md potential style
LAMMPS_STYLES = {"eam_alloy": "eam/alloy", "eam_fs": "eam/fs"}
#: APEX gamma plane (Miller) -> opshelf-props slip system
GAMMA_PLANES = {(1, 1, 1): "fcc_111_112", (1, 1, 0): "bcc_110_111", (0, 0, 1): "hcp_0001_1010",
                (0, 0, 0, 1): "hcp_0001_1010"}
#: keys of the global (machine) file: execution is opshelf's `steps` block, not the config
#: The APEX release whose EOS rule is the default (APEX includes `vol_end` from this version
#: on: `while vol_start + vol_step * n <= vol_end`, apex/core/property/EOS.py, May 2025; the
#: releases before it loop while `< vol_end`).
APEX_CURRENT = "1.2.8"
EOS_END_INCLUDED_FROM = (1, 2, 8)
GLOBAL_KEYS = {"apex_image_name", "run_image_name", "run_command", "batch_type", "context_type",
               "local_root", "remote_root", "machine", "resources", "dflow_host", "k8s_api_server",
               "group_size", "pool_size", "is_bohrium_dflow", "email", "password", "program_id",
               "job_type", "platform", "scass_type", "debug_workdir", "mode", "submit_only",
               "flow_name", "user_name", "lammps_image_name", "vasp_image_name"}


class ApexImport:
    """The config being built and the notes about what was not mapped."""

    def __init__(self, out_dir: Path, apex_version: str = APEX_CURRENT) -> None:
        self.out_dir = out_dir
        self.apex_version = parse_apex_version(apex_version)
        self.notes: list[str] = []
        self.config: dict[str, Any] = {}
        #: cal_setting keys the interaction's mapping used (ABACUS's K_POINTS, input_prop)
        self.consumed: set[str] = set()
        #: (where, cal_setting) of the relaxation and of every property computed: the
        #: settings APEX gives each task (ABACUS reads K_POINTS and input_prop there)
        self.cal_settings: list[tuple[str, dict[str, Any]]] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def rel(self, path: Path) -> str:
        return os.path.relpath(path.resolve(), self.out_dir.resolve())


def parse_apex_version(text: str) -> tuple[int, ...]:
    """(1, 2, 8) from '1.2.8' or 'v1.2.8'; ConfigError for anything else."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if match is None:
        raise ConfigError(f"--apex-version {text!r}: give an APEX release such as "
                          f"{APEX_CURRENT!r}")
    return tuple(int(g or 0) for g in match.groups())


def slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (name or "structure")[:32].strip("-")


def is_global_file(data: dict[str, Any]) -> bool:
    return not ({"structures", "interaction", "properties", "relaxation"} & set(data)) and \
        bool(set(data) & GLOBAL_KEYS)


def _structure_file(folder: Path, abacus: bool) -> tuple[Path, str] | None:
    """(file, dpdata format or 'auto') APEX reads in a structure folder: POSCAR; with the
    abacus interaction its STRU first (APEX's ABACUS.make_potential_files: STRU, else the
    POSCAR converted)."""
    if not folder.is_dir():
        return (folder, "auto") if folder.is_file() else None
    candidates = [("STRU", "abacus/stru"), ("POSCAR", "auto")]
    for name, fmt in candidates if abacus else candidates[1:]:
        if (folder / name).is_file():
            return folder / name, fmt
    return None


def map_structures(patterns: list[str], base: Path, imp: ApexImport,
                   abacus: bool = False) -> list[dict[str, Any]]:
    out = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(base / pattern)))
        if not matches:
            imp.note(f"structures: {pattern!r} matches no folder under {base}")
        for folder in map(Path, matches):
            found = _structure_file(folder, abacus)
            if found is None:
                imp.note(f"structures: {folder} holds no {'STRU or ' if abacus else ''}POSCAR "
                         "(APEX's 'confs' from Materials Project ids need a download: not "
                         "mapped)")
                continue
            spec = {"name": slug(folder.name), "file": imp.rel(found[0])}
            out.append(spec if found[1] == "auto" else {**spec, "format": found[1]})
    names = [s["name"] for s in out]
    for index, item in enumerate(out):  # make repeated names unique
        if names.count(item["name"]) > 1:
            item["name"] = f"{item['name'][:28]}-{index}"
    return out


#: APEX interaction types whose `model` names files (deepmd model, LAMMPS potentials)
MODEL_TYPES = {"deepmd", "meam", *LAMMPS_STYLES}


def _model_file(name: str, base: Path, imp: ApexImport) -> str:
    """`name` as APEX resolves it (against the folder of the file that names it), relative
    to the output folder; ConfigError when it is not there."""
    path = Path(name).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ConfigError(f"interaction.model: {name!r} not found (looked for {path}, "
                          "relative to the APEX file's folder)")
    return imp.rel(path)


def map_interaction(inter: dict[str, Any], base: Path, imp: ApexImport) -> dict[str, Any]:
    kind = inter.get("type")
    models = inter.get("model")
    models = [models] if isinstance(models, str) else list(models or [])
    files = [_model_file(str(m), base, imp) for m in models] if kind in MODEL_TYPES else []
    if "type_map" in inter:
        imp.note("interaction.type_map: not needed (opshelf maps atom types by element name)")
    if kind == "vasp":
        return {"name": "vasp", "engine": {"name": "vasp", "settings": vasp_settings(inter, base)}}
    if kind == "abacus":
        settings = abacus_settings(inter, base, imp)
        return {"name": "abacus", "engine": {"name": "abacus", "settings": settings}}
    for key in sorted(set(inter) - {"type", "model", "type_map", "deepmd_version"}):
        imp.note(f"interaction.{key}: not mapped")
    name = slug(str(kind))
    if kind == "deepmd":
        if len(files) != 1:
            raise ConfigError(f"interaction deepmd: one model expected, got {models}")
        return {"name": name, "deepmd": files[0]}
    if kind in LAMMPS_STYLES:
        if len(files) != 1:
            raise ConfigError(f"interaction {kind}: one potential file expected, got {models}")
        return {"name": name, "lammps": {"potential": {"style": LAMMPS_STYLES[kind],
                                                       "file": files[0]}}}
    if kind == "meam":
        if len(files) not in (1, 2):
            raise ConfigError(f"interaction meam: [library, parameters] expected, got {models}")
        potential: dict[str, Any] = {"style": "meam", "library": files[0]}
        if len(files) == 2:
            potential["parameters"] = files[1]
        return {"name": name, "lammps": {"potential": potential}}
    raise ConfigError(f"interaction type {kind!r} cannot be mapped: opshelf maps deepmd, "
                      f"eam_alloy, eam_fs, meam, vasp and abacus; for {kind} write an "
                      "`engine:` interaction (opshelf-fp) by hand")


def _incar_tags(path: Path) -> dict[str, str]:
    """KEY = value tags of an INCAR ('!' and '#' start comments, ';' separates)."""
    tags: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        for statement in raw.split("!", 1)[0].split("#", 1)[0].split(";"):
            if "=" in statement:
                key, value = statement.split("=", 1)
                tags[key.strip().upper()] = value.strip()
    return tags


def vasp_settings(inter: dict[str, Any], base: Path) -> dict[str, Any]:
    """APEX's vasp interaction (apex/core/calculator/VASP.py) -> opshelf-fp vasp settings:
    the INCAR as is; APEX's k-points, a mesh from the INCAR's KSPACING (2*pi included, as
    opshelf-fp's kspacing_per_A) centred on Gamma when KGAMMA (default false); POTCARs at
    potcar_prefix/potcars[element], which must be laid out as opshelf-fp's library
    (<potcar_dir>/<element or variant>/POTCAR). Paths absolute: the engine reads them in its
    task folder."""
    unknown = sorted(set(inter) - {"type", "incar", "potcar_prefix", "potcars", "type_map"})
    if unknown:
        raise ConfigError(f"interaction.{unknown[0]}: not a key opshelf maps for vasp "
                          "(incar, potcar_prefix, potcars)")
    incar = (base / str(inter.get("incar", ""))).resolve()
    if "incar" not in inter or not incar.is_file():
        raise ConfigError(f"interaction.incar: INCAR not found ({incar})")
    tags = _incar_tags(incar)
    if "KSPACING" not in tags:
        raise ConfigError(f"interaction.incar: {incar} has no KSPACING (APEX requires it)")
    prefix = base / str(inter.get("potcar_prefix", ""))
    files = {el: (prefix / str(f)).resolve() for el, f in (inter.get("potcars") or {}).items()}
    missing = sorted(str(f) for f in files.values() if not f.is_file())
    if not files or missing:
        raise ConfigError(f"interaction.potcars: POTCAR files not found {missing or '(none)'}")
    libraries = {f.parent.parent for f in files.values()}
    if len(libraries) != 1 or any(f.name != "POTCAR" for f in files.values()):
        raise ConfigError("interaction.potcars: opshelf-fp reads <potcar_dir>/<element or "
                          "variant>/POTCAR; lay these files out so (links will do) "
                          f"({sorted(map(str, files.values()))})")
    settings: dict[str, Any] = {
        "incar_file": str(incar), "kspacing_per_A": float(tags["KSPACING"]),
        "gamma_centered": tags.get("KGAMMA", "F").strip(".").upper().startswith("T"),
        "potcar_dir": str(libraries.pop())}
    variants = {el: f.parent.name for el, f in files.items() if f.parent.name != el}
    if variants:
        settings["potcar_variants"] = variants
    return settings


#: ABACUS INPUT keyword -> opshelf-fp abacus setting (typed, bounded there)
ABACUS_TYPED: dict[str, tuple[str, type]] = {
    "ecutwfc": ("ecutwfc_Ry", float), "scf_thr": ("scf_thr", float),
    "scf_nmax": ("scf_nmax", int)}
#: ABACUS's own defaults (abacus-develop docs/advanced/input_files/input-main.md, v3.x) for
#: the typed keywords, by basis: written when the user's INPUT leaves them out, since
#: opshelf-fp's engine always writes them (its defaults are not ABACUS's)
ABACUS_DEFAULTS = {"pw": {"ecutwfc_Ry": 50.0, "scf_thr": 1e-9, "scf_nmax": 100},
                   "lcao": {"ecutwfc_Ry": 100.0, "scf_thr": 1e-7, "scf_nmax": 100}}
#: keywords the engine writes per task (APEX sets them per task too: calculation from the
#: cal_setting, the files from its pp_orb folder)
ABACUS_OWNED = {"calculation", "ntype", "pseudo_dir", "orbital_dir", "cal_force", "cal_stress",
                "stru_file", "kpoint_file", "suffix", "out_stru"}
ABACUS_KEYS = {"type", "incar", "potcar_prefix", "potcars", "orb_files", "atom_masses",
               "type_map"}


def abacus_input(path: Path) -> dict[str, str]:
    """keyword -> value of an ABACUS INPUT file, read as ABACUS reads it: after the
    INPUT_PARAMETERS line, '#' and '//' start comments, the last of a repeated keyword wins."""
    words: dict[str, str] = {}
    started = False
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].split("//", 1)[0].strip()
        if not started:
            started = line.upper().startswith("INPUT_PARAMETERS")
            continue
        tokens = line.split()
        if len(tokens) >= 2:
            words[tokens[0].lower()] = " ".join(tokens[1:])
    return words


def _one_folder(files: dict[str, Path], key: str) -> tuple[str, dict[str, str]]:
    """(folder, element -> file name): opshelf-fp's abacus engine reads each kind of file
    from one folder, as APEX links them into one pp_orb folder."""
    missing = sorted(str(f) for f in files.values() if not f.is_file())
    if missing:
        raise ConfigError(f"interaction.{key}: files not found {missing}")
    folders = {f.parent for f in files.values()}
    if len(folders) != 1:
        raise ConfigError(f"interaction.{key}: files in several folders "
                          f"{sorted(map(str, folders))}; opshelf-fp's abacus engine reads "
                          "them from one (links will do)")
    return str(folders.pop()), {el: f.name for el, f in files.items()}


def _abacus_kpoints(words: dict[str, str], imp: ApexImport) -> list[int] | None:
    """APEX's k-points: the INPUT's kspacing (1/Bohr; kept in the INPUT, where ABACUS makes
    its mesh from it, as in APEX's run) else every task's cal_setting K_POINTS
    [n1, n2, n3, 0, 0, 0] (one mesh here: opshelf has one engine per interaction)."""
    if "kspacing" in words:
        return None
    given = {where: k for where, setting in imp.cal_settings
             if (k := setting.get("K_POINTS")) is not None}
    lacking = [where for where, setting in imp.cal_settings if "K_POINTS" not in setting]
    if not given or lacking:
        raise ConfigError(f"interaction.incar: no kspacing in the INPUT and no K_POINTS in "
                          f"{'; '.join(lacking) or 'any cal_setting'} (APEX stops there: give "
                          "kspacing (1/Bohr) or K_POINTS [n1, n2, n3, 0, 0, 0] in each)")
    meshes = sorted({tuple(k) for k in given.values()})
    if len(meshes) > 1 or len(meshes[0]) != 6 or any(meshes[0][3:]):
        raise ConfigError(f"cal_setting.K_POINTS: {[list(m) for m in meshes]}: opshelf maps "
                          "one unshifted mesh [n1, n2, n3, 0, 0, 0] for all tasks")
    mesh = meshes[0]
    imp.consumed.add("K_POINTS")
    return [int(n) for n in mesh[:3]]


def abacus_settings(inter: dict[str, Any], base: Path, imp: ApexImport) -> dict[str, Any]:
    """APEX's abacus interaction (apex/core/calculator/ABACUS.py) -> opshelf-fp abacus
    settings: the INPUT's keywords (typed where opshelf-fp types them, the rest verbatim in
    `extra`, ABACUS's own defaults where the INPUT is silent), pseudopotentials and orbitals
    at potcar_prefix/potcars[element] and potcar_prefix/orb_files[element], k-points as APEX
    sets them. Paths absolute: the engine reads them in its task folder."""
    unknown = sorted(set(inter) - ABACUS_KEYS)
    if unknown:
        raise ConfigError(f"interaction.{unknown[0]}: not a key opshelf maps for abacus "
                          f"({', '.join(sorted(ABACUS_KEYS - {'type', 'type_map'}))}; "
                          "deepks_desc: DeePKS is not in opshelf-fp)")
    incar = (base / str(inter.get("incar", ""))).resolve()
    if "incar" not in inter or not incar.is_file():
        raise ConfigError(f"interaction.incar: ABACUS INPUT not found ({incar})")
    for where, setting in imp.cal_settings:
        prop = setting.get("input_prop")
        if prop is not None and (base / str(prop)).resolve() != incar:
            raise ConfigError(f"{where}.input_prop: {prop!r} is not interaction.incar; opshelf "
                              "has one INPUT per interaction")
    imp.consumed.add("input_prop")
    words = abacus_input(incar)
    prefix = base / str(inter.get("potcar_prefix", ""))
    pp = {el: (prefix / str(f)).resolve() for el, f in (inter.get("potcars") or {}).items()}
    if not pp:
        raise ConfigError("interaction.potcars: no pseudopotential (element -> file)")
    settings: dict[str, Any] = {}
    settings["pseudo_dir"], settings["pseudopotentials"] = _one_folder(pp, "potcars")
    orbitals = {el: (prefix / str(f)).resolve() for el, f in (inter.get("orb_files") or {}).items()}
    if orbitals:
        settings["orbital_dir"], settings["orbitals"] = _one_folder(orbitals, "orb_files")
    basis = words.pop("basis_type", "pw").lower()
    if basis == "lcao" and not orbitals:
        raise ConfigError("interaction.orb_files: the INPUT's basis_type is lcao and no "
                          "orbital file is given (APEX stops there too)")
    settings["basis_type"] = basis
    settings.update(ABACUS_DEFAULTS.get(basis, ABACUS_DEFAULTS["pw"]))
    extra: dict[str, str] = {}
    for word, value in words.items():
        if word in ABACUS_TYPED:
            name, cast = ABACUS_TYPED[word]
            settings[name] = cast(value)
        elif word not in ABACUS_OWNED:
            extra[word] = value  # smearing, kspacing, ...: written as the user gave them
    if extra:
        settings["extra"] = extra
    kpoints = _abacus_kpoints(words, imp)
    if kpoints is not None:
        settings["kpoints"] = kpoints
    if "atom_masses" in inter:
        imp.note("interaction.atom_masses: not mapped (masses enter neither an SCF nor a "
                 "relaxation; opshelf-fp writes the standard masses)")
    return settings


def map_relaxation(relaxation: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    setting = dict(relaxation.get("cal_setting") or {})
    relax: dict[str, Any] = {}
    pos = setting.pop("relax_pos", True)
    shape = setting.pop("relax_shape", True)
    vol = setting.pop("relax_vol", True)
    relax["relax_positions"] = bool(pos)
    relax["relax_cell"] = bool(shape or vol)
    relax["relax_volume_only"] = bool(vol and not shape)
    if shape and not vol:
        imp.note("relaxation: relax_shape without relax_vol has no opshelf equivalent; "
                 "the cell shape and volume are relaxed")
    ftol = setting.pop("ftol", None)
    if ftol:
        relax["fmax_eV_per_A"] = float(ftol)
    maxiter = setting.pop("maxiter", None)
    if maxiter:
        relax["max_steps"] = int(maxiter)
    for key in sorted(set(setting) - imp.consumed):
        imp.note(f"relaxation.cal_setting.{key}: not mapped (opshelf stops on fmax_eV_per_A)")
    for key in sorted(set(relaxation) - {"cal_setting"}):
        imp.note(f"relaxation.{key}: not mapped")
    return relax


def _eos(p: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    if p.pop("vol_abs", False):
        raise ConfigError("eos: vol_abs (absolute volumes per atom) cannot be mapped: opshelf "
                          "scans ratios of the relaxed volume")
    start, end, step = float(p.pop("vol_start")), float(p.pop("vol_end")), float(p.pop("vol_step"))
    ratios = eos_ratios(start, end, step, imp.apex_version)
    if len(ratios) < EOS_MIN_POINTS:
        raise ConfigError(f"eos: vol_start {start}, vol_end {end}, vol_step {step} give "
                          f"{len(ratios)} volume(s) in APEX; opshelf-props fits an equation "
                          f"of state to {EOS_MIN_POINTS} or more: make vol_step smaller")
    return {"type": "eos", "volume_ratio_min": ratios[0], "volume_ratio_max": ratios[-1],
            "n_points": len(ratios)}


def eos_ratios(start: float, end: float, step: float, version: tuple[int, ...]
               ) -> list[float]:
    """The relative volumes APEX `version` scans, with its own float arithmetic: from
    EOS_END_INCLUDED_FROM on `start + step * n <= end`, before it `< end`."""
    if step <= 0:
        raise ConfigError(f"eos: vol_step {step} must be > 0")
    inside = (lambda v: v <= end) if version >= EOS_END_INCLUDED_FROM else (lambda v: v < end)
    ratios: list[float] = []
    while inside(start + step * len(ratios)):
        ratios.append(start + len(ratios) * step)
    return ratios


def _elastic(p: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    out = {"type": "elastic"}
    if "norm_deform" in p:
        out["normal_strain"] = float(p.pop("norm_deform"))
    if "shear_deform" in p:
        out["shear_strain"] = float(p.pop("shear_deform"))
    return out


def _vacancy(p: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    return {"type": "vacancy", **({"supercell": list(p.pop("supercell"))}
                                  if "supercell" in p else {})}


def _interstitial(p: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    inserted = p.pop("insert_ele", None)
    if inserted:
        imp.note(f"interstitial.insert_ele {inserted}: opshelf inserts the host element at "
                 "the standard sites of the lattice")
    return {"type": "interstitial", **({"supercell": list(p.pop("supercell"))}
                                       if "supercell" in p else {})}


def _surface(p: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "surface"}
    if "max_miller" in p:
        out["max_miller_index"] = int(p.pop("max_miller"))
    if "min_slab_size" in p:
        out["min_slab_size_A"] = float(p.pop("min_slab_size"))
    if "min_vacuum_size" in p:
        out["min_vacuum_size_A"] = float(p.pop("min_vacuum_size"))
    cal_type = p.pop("cal_type", "relaxation")
    out["relax_ions"] = cal_type != "static"
    return out


def _gamma(p: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "stacking_fault"}
    plane = p.pop("plane_miller", None) or p.pop("miller_index", None)
    if plane is not None:
        system = GAMMA_PLANES.get(tuple(int(i) for i in plane))
        if system is None:
            raise ConfigError(f"gamma: plane {plane} has no opshelf slip system (fcc (111), "
                              "bcc (110), hcp (0001))")
        out["slip_system"] = system
    direction = p.pop("slip_direction", None) or p.pop("displace_direction", None)
    if direction is not None:
        imp.note(f"gamma.slip_direction {direction}: opshelf shifts along the slip system's "
                 "standard direction (fcc <112>, bcc <111>, hcp <10-10>)")
    if "n_steps" in p:
        out["n_points"] = max(4, int(p.pop("n_steps")))
    imp.note("gamma: opshelf's stacking fault is a periodic cell (no vacuum); atoms relax "
             "normal to the plane where the engine implements move_axes (ase, lammps), else "
             "the shifts are rigid (the result's `relaxed` says which)")
    return out


def _gamma_surface(p: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    """APEX's gamma_surface (a 2-D grid of shifts of one plane) -> opshelf-props'."""
    line = _gamma(p, imp)
    out: dict[str, Any] = {"type": "gamma_surface"}
    if "slip_system" in line:
        out["slip_system"] = line["slip_system"]
    for apex_key, key in (("n_steps_x", "n_points_x"), ("n_steps_y", "n_points_y")):
        if apex_key in p:
            out[key] = max(2, int(p.pop(apex_key)))
    return out


def _phonon(p: dict[str, Any], imp: ApexImport) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "phonon"}
    if "supercell_size" in p:
        out["supercell"] = list(p.pop("supercell_size"))
    if p.pop("approach", "linear") != "linear":
        imp.note("phonon.approach: opshelf uses finite displacements (phonopy) only")
    return out


PROPERTY_MAPS = {"eos": _eos, "elastic": _elastic, "vacancy": _vacancy,
                 "interstitial": _interstitial, "surface": _surface, "gamma": _gamma,
                 "gamma_surface": _gamma_surface, "phonon": _phonon}
#: keys every APEX property may have that carry no physics
IGNORED_KEYS = {"skip", "req_calc", "start_confs_path"}


def map_property(raw: dict[str, Any], index: int, imp: ApexImport) -> dict[str, Any] | None:
    p = dict(raw)
    kind = p.pop("type", None)
    where = f"properties[{index}] ({kind})"
    if p.get("skip"):
        imp.note(f"{where}: skip: true, left out")
        return None
    if kind not in PROPERTY_MAPS:
        imp.note(f"{where}: no such property in opshelf-props (it has {sorted(PROPERTY_MAPS)} "
                 "as APEX names); left out")
        return None
    try:
        out = PROPERTY_MAPS[kind](p, imp)
    except KeyError as exc:
        raise ConfigError(f"{where}: missing key {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    setting = p.pop("cal_setting", None) or {}
    if "ftol" in setting and out["type"] in ("elastic", "vacancy", "interstitial", "surface"):
        out["fmax_eV_per_A"] = float(setting.pop("ftol"))
    for key in sorted(set(setting) - imp.consumed):
        imp.note(f"{where}.cal_setting.{key}: not mapped")
    for key in sorted(set(p) - IGNORED_KEYS):
        imp.note(f"{where}.{key}: not mapped")
    return out


def _param_files(files: list[Path], imp: ApexImport) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, data) of each parameter file; a global (machine) file is noted and left out."""
    out = []
    for path in files:
        data = read_mapping(path)
        if is_global_file(data):
            imp.note(f"{path.name}: global (machine) settings are not part of the config; "
                     "set execution in its `steps` block")
            continue
        for key in sorted(set(data) - {"structures", "interaction", "relaxation",
                                       "properties"}):
            imp.note(f"{path.name}: {key}: not mapped")
        out.append((path.resolve().parent, data))
    return out


def _task_settings(params: list[tuple[Path, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, cal_setting) of the relaxation and of each property APEX computes."""
    out = []
    for _, data in params:
        if "relaxation" in data:
            out.append(("relaxation.cal_setting",
                        dict(data["relaxation"].get("cal_setting") or {})))
        for index, raw in enumerate(data.get("properties") or []):
            if not raw.get("skip"):
                out.append((f"properties[{index}] ({raw.get('type')}).cal_setting",
                            dict(raw.get("cal_setting") or {})))
    return out


def import_apex(files: list[Path], out_dir: Path, apex_version: str = APEX_CURRENT
                ) -> tuple[dict[str, Any], list[str]]:
    """(opshelf alloy config, notes) from APEX parameter files (relax, props or joint) and
    an optional global file, as APEX `apex_version` reads them. Paths in the config are
    relative to `out_dir`."""
    imp = ApexImport(out_dir, apex_version)
    params = _param_files(files, imp)
    imp.cal_settings = _task_settings(params)
    interactions = [(base, dict(d["interaction"])) for base, d in params if "interaction" in d]
    abacus = bool(interactions) and interactions[0][1].get("type") == "abacus"
    structures: list[dict[str, Any]] = []
    for base, data in params:
        if "structures" in data and not structures:
            structures = map_structures(list(data["structures"]), base, imp, abacus)
    if not structures:
        raise ConfigError("no structure found: the APEX files give no `structures` that "
                          f"match a folder with a {'STRU or ' if abacus else ''}POSCAR")
    if not interactions:
        raise ConfigError("no `interaction` in the APEX files")
    interaction = map_interaction(interactions[0][1], interactions[0][0], imp)
    relax: dict[str, Any] | None = None
    properties: list[dict[str, Any]] = []
    for _, data in params:
        if "relaxation" in data:
            relax = map_relaxation(dict(data["relaxation"]), imp)
        for index, raw in enumerate(data.get("properties") or []):
            mapped = map_property(dict(raw), index, imp)
            if mapped is not None:
                properties.append(mapped)
    config: dict[str, Any] = {"structures": structures, "interactions": [interaction]}
    config["relax"] = relax if relax is not None else {"relax_cell": True}
    if relax is None:
        imp.note("no relaxation block: the structures are relaxed (cell and positions) first, "
                 "as APEX's props flow expects relaxed structures")
    if not properties:
        why = [n for n in imp.notes if n.startswith("properties[")] or ["the files list none"]
        raise ConfigError("no property left to compute: " + "; ".join(why))
    config["properties"] = properties
    return config, imp.notes


def cmd_import_apex(args: argparse.Namespace) -> int:
    import yaml

    out = Path(args.output) if args.output else None
    if out is not None:
        refuse_output_over_inputs(out, args.files)
    config, notes = import_apex([Path(f) for f in args.files],
                                out.parent if out else Path.cwd(), args.apex_version)
    # validate what was made: a mapping bug must not give a config the workflow rejects
    from opshelf.alloy.config import AlloyConfig
    from opshelf.core.config import validate_into

    validate_into(AlloyConfig, config, where="imported config")
    text = "# imported from APEX: " + " ".join(str(f) for f in args.files) + "\n"
    text += "".join(f"# note: {n}\n" for n in notes)
    text += yaml.safe_dump(config, sort_keys=False)
    if out:
        out.write_text(text)
        print(f"opshelf: wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for note in notes:
        print(f"opshelf: note: {note}", file=sys.stderr)
    return 0


def add_import_apex_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("import-apex", help="turn APEX parameter files into an alloy config")
    p.add_argument("files", nargs="+", help="APEX param.json (relax, props or joint), more "
                   "param files, and optionally global.json")
    p.add_argument("-o", "--output", help="config file to write (default: stdout); paths "
                   "in it are relative to its folder")
    p.add_argument("--apex-version", default=APEX_CURRENT, help="the APEX release the files "
                   f"were written for (default {APEX_CURRENT}); it decides the EOS volumes "
                   "(vol_end included from 1.2.8 on)")
    p.set_defaults(func=cmd_import_apex)
