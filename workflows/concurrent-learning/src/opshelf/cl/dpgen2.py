"""DPGEN2 input -> opshelf cl config (`opshelf cl import-dpgen2 input.json`).

Pure functions (no dflow). DPGEN2's keys come in two layouts (dpgen2 0.0.x examples and
later ones): trust levels and convergence at `explore` level (`f_trust_lo`, `conv_accuracy`)
or in `explore.convergence` (`level_f_lo`, `type`); FP inputs at `fp` level or in
`fp.inputs_config`. Both are read. Every DPGEN2 key that cannot be mapped is named: as a
warning when the config is still right without it (execution settings, a sampling knob),
as an error when the config would compute something else (then nothing is written).

Units: DPGEN2's LAMMPS groups use LAMMPS `metal` units (ps, bar); opshelf-md uses fs and
GPa. DPGEN2's VASP `kspacing` includes the 2*pi factor (`make_kspacing_kpoints`), as
opshelf-fp's `kspacing_per_A` does.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: DPGEN2 execution/plumbing keys: opshelf's `steps` block is set by hand instead.
EXECUTION_KEYS = ("dflow_config", "dflow_s3_config", "bohrium_config", "lebesgue_context_config",
                  "default_step_config", "step_configs", "upload_python_package",
                  "upload_python_packages", "name", "default_config", "workflow_name")
BAR_IN_GPA = 1e-4
PS_IN_FS = 1000.0
#: DPGEN2's lmp-md defaults (dpgen2/exploration/task/lmp: dt 0.001 ps, tau_t 0.1, tau_p 0.5).
DEFAULT_DT_PS, DEFAULT_TAU_T_PS, DEFAULT_TAU_P_PS = 0.001, 0.1, 0.5
ENSEMBLES = {"nvt": "nvt", "nve": "nve", "npt": "npt", "npt-i": "npt", "npt-iso": "npt"}


@dataclass
class Dpgen2Import:
    """The opshelf config made from a DPGEN2 input, with what could not be mapped."""

    config: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def warn(self, key: str, why: str) -> None:
        self.warnings.append(f"dpgen2 key {key!r}: {why}")

    def error(self, key: str, why: str) -> None:
        self.errors.append(f"dpgen2 key {key!r}: {why}")


def _public(section: dict[str, Any]) -> dict[str, Any]:
    """Without DPGEN2's `_comment` (and any `_`-prefixed) keys."""
    return {k: v for k, v in section.items() if not k.startswith("_")}


class _Paths:
    """DPGEN2 paths are relative to the input's folder; the config's to its own folder."""

    def __init__(self, input_dir: Path, out_dir: Path) -> None:
        self.input_dir, self.out_dir = input_dir.resolve(), out_dir.resolve()

    def __call__(self, path: str, prefix: str | None = None) -> str:
        p = Path(prefix, path) if prefix else Path(path)
        absolute = p if p.is_absolute() else self.input_dir / p
        return os.path.relpath(absolute, self.out_dir)

    def absolute(self, path: str) -> Path:
        return self.out_dir / path


def import_dpgen2(data: dict[str, Any], input_dir: Path, out_dir: Path) -> Dpgen2Import:
    """Map a DPGEN2 input (parsed JSON) to an opshelf cl config dict."""
    result = Dpgen2Import()
    paths = _Paths(input_dir, out_dir)
    for key in sorted(set(data) & set(EXECUTION_KEYS)):
        result.warn(key, "execution settings are not mapped; set the `steps` block "
                    "(local by default; dispatcher or argo per step)")
    known = {"inputs", "train", "explore", "fp", *EXECUTION_KEYS}
    for key in sorted(k for k in _public(data) if k not in known):
        result.warn(key, "not mapped (unknown to this importer)")
    for section in ("inputs", "train", "explore", "fp"):
        if not isinstance(data.get(section), dict):
            result.error(section, "missing or not a mapping: a DPGEN2 input needs it")
    if result.errors:
        return result
    config: dict[str, Any] = {}
    _inputs(_public(data["inputs"]), config, result, paths)
    config["train"] = _train(_public(data["train"]), result, paths)
    _explore(_public(data["explore"]), config, result, paths)
    config["fp"] = _fp(_public(data["fp"]), config, result, paths)
    finish_lattices(config, result)
    result.config = config
    return result


def _inputs(inputs: dict[str, Any], config: dict[str, Any], result: Dpgen2Import,
            paths: _Paths) -> None:
    type_map = inputs.get("type_map")
    if not type_map:
        result.error("inputs.type_map", "missing")
        type_map = []
    config["type_map"] = list(type_map)
    config["seed"] = 0
    masses = inputs.get("mass_map")
    if masses is not None:
        from ase.data import atomic_masses, atomic_numbers

        for element, mass in zip(type_map, masses):
            standard = float(atomic_masses[atomic_numbers.get(element, 0)])
            if abs(float(mass) - standard) > 1.0:
                result.error("inputs.mass_map", f"{element} mass {mass} differs from the "
                             f"standard {standard:.2f}; opshelf uses the standard masses")
    systems = inputs.get("init_data_sys")
    if not systems:
        result.error("inputs.init_data_sys", "no initial data")
        systems = []
    prefix = inputs.get("init_data_prefix")
    config["init_data"] = [{"path": paths(s, prefix)} for s in systems]
    for key in sorted(set(inputs) - {"type_map", "mass_map", "init_data_sys",
                                     "init_data_prefix"}):
        if key == "mixed_type" and inputs[key]:
            result.error(f"inputs.{key}", "mixed-type data: convert to deepmd/npy first")
        elif key not in ("mixed_type", "do_finetune"):
            result.warn(f"inputs.{key}", "not mapped")
        elif inputs[key]:
            result.error(f"inputs.{key}", "fine-tuning is not supported")


def _train(train: dict[str, Any], result: Dpgen2Import, paths: _Paths) -> dict[str, Any]:
    if train.get("type", "dp") != "dp":
        result.error("train.type", f"{train['type']!r}: only 'dp' maps to opshelf-train")
    template = train.get("template_script")
    if template is None:
        result.error("train.template_script", "missing")
    section: dict[str, Any] = {
        "template": paths(template) if isinstance(template, str) else template,
        "numb_models": int(train.get("numb_models", 4)),
    }
    options = _public(train.get("config") or {})
    init_model: dict[str, Any] = {}
    for dpgen2_key, key in (("init_model_policy", "policy"),
                            ("init_model_numb_steps", "numb_steps"),
                            ("init_model_start_lr", "start_lr"),
                            ("init_model_start_pref_e", "start_pref_e"),
                            ("init_model_start_pref_f", "start_pref_f"),
                            ("init_model_start_pref_v", "start_pref_v")):
        if dpgen2_key in options:
            init_model[key] = options.pop(dpgen2_key)
    if init_model:
        section["init_model"] = init_model
    if "command" in options:
        section["dp"] = {"command": shlex.split(str(options.pop("command")))}
    for key in sorted(options):
        result.warn(f"train.config.{key}", "not mapped")
    for key in sorted(set(train) - {"type", "template_script", "numb_models", "config"}):
        result.warn(f"train.{key}", "not mapped")
    return section


def _levels(explore: dict[str, Any], result: Dpgen2Import) -> tuple[dict[str, Any], dict[str, Any]]:
    """(select.trust, stage convergence) from either DPGEN2 layout."""
    conv = _public(explore.get("convergence") or {})
    style = conv.get("type", "fixed-levels")
    where = "explore.convergence" if conv else "explore"
    get = (lambda new, old: conv.get(new)) if conv else (lambda new, old: explore.get(old))
    trust: dict[str, Any] = {"style": style}
    convergence: dict[str, Any] = {}
    f_hi = get("level_f_hi", "f_trust_hi")
    if f_hi is None:
        result.error(f"{where}.level_f_hi", "missing upper force trust level")
    trust["f_hi"] = f_hi
    if style in ("fixed-levels", "fixed-levels-max-select"):
        trust["f_lo"] = get("level_f_lo", "f_trust_lo")
        v_lo, v_hi = get("level_v_lo", "v_trust_lo"), get("level_v_hi", "v_trust_hi")
        if v_lo is not None and v_hi is not None:
            trust.update(v_lo=v_lo, v_hi=v_hi)
        convergence = {"style": "accurate-ratio",
                       "min_accurate_ratio": get("conv_accuracy", "conv_accuracy")}
        if convergence["min_accurate_ratio"] is None:
            result.error(f"{where}.conv_accuracy", "missing")
    elif style == "adaptive-lower":
        for key in ("numb_candi_f", "rate_candi_f", "numb_candi_v", "rate_candi_v"):
            if key in conv:
                trust[key] = conv[key]
        if conv.get("level_v_hi") is not None:
            trust["v_hi"] = conv["level_v_hi"]
        convergence = {"style": "adaptive-lower"}
        if "conv_tolerance" in conv:
            convergence["level_tolerance"] = conv["conv_tolerance"]
        if "n_checked_steps" in conv:
            convergence["n_checked"] = conv["n_checked_steps"]
    else:
        result.error(f"{where}.type", f"{style!r}: opshelf knows fixed-levels, "
                     "fixed-levels-max-select and adaptive-lower")
    mapped = {"type", "level_f_lo", "level_f_hi", "level_v_lo", "level_v_hi", "conv_accuracy",
              "numb_candi_f", "rate_candi_f", "numb_candi_v", "rate_candi_v", "conv_tolerance",
              "n_checked_steps", "max_numb_sel"}
    for key in sorted(set(conv) - mapped):
        result.warn(f"explore.convergence.{key}", "not mapped")
    return trust, convergence


def _explore(explore: dict[str, Any], config: dict[str, Any], result: Dpgen2Import,
             paths: _Paths) -> None:
    if explore.get("type", "lmp") != "lmp":
        result.error("explore.type", f"{explore['type']!r}: only 'lmp' (LAMMPS) is mapped")
    trust, convergence = _levels(explore, result)
    convergence["max_iterations"] = int(explore.get("max_numb_iter", 10))
    convergence["fatal_at_max"] = bool(explore.get("fatal_at_max", True))
    select: dict[str, Any] = {"trust": trust}
    max_sel = (explore.get("convergence") or {}).get("max_numb_sel")
    if max_sel is not None:
        select["max_select"] = int(max_sel)
    config["select"] = select
    command = _public(explore.get("config") or {}).get("command")
    section: dict[str, Any] = {"engine": "lammps", "stages": []}
    if command:
        argv = [a for a in shlex.split(str(command)) if a]
        # DPGEN2 appends '-var restart 0' for its own restart logic: not a program argument
        if argv[-3:] == ["-var", "restart", "0"]:
            argv = argv[:-3]
        section["profile"] = {"command": argv}
    for key in sorted(set(_public(explore.get("config") or {})) - {"command"}):
        result.warn(f"explore.config.{key}", "not mapped")
    configurations = explore.get("configurations") or []
    prefix = explore.get("configuration_prefix")
    stages = explore.get("stages") or []
    if not stages:
        result.error("explore.stages", "no stage")
    for s, groups in enumerate(stages):
        where = f"explore.stages[{s}]"
        if not isinstance(groups, list) or not groups:
            result.error(where, "a stage is a non-empty list of task groups")
            continue
        used = sorted({i for g in groups for i in (g.get("conf_idx") or [])})
        confs, offsets = _stage_confs(used, configurations, prefix, where, result, paths)
        stage = {"name": f"stage-{s}", "confs": confs, "convergence": dict(convergence),
                 "groups": [_group(g, offsets, used, f"{where}[{k}]", result, paths)
                            for k, g in enumerate(groups)]}
        section["stages"].append(stage)
    config["explore"] = section
    config["max_iterations"] = max(1, convergence["max_iterations"] * max(1, len(stages)))
    mapped = {"type", "config", "convergence", "max_numb_iter", "fatal_at_max", "f_trust_lo",
              "f_trust_hi", "v_trust_lo", "v_trust_hi", "conv_accuracy", "configurations",
              "configuration_prefix", "stages"}
    for key in sorted(set(explore) - mapped):
        if key == "output_nopbc" and not explore[key]:
            continue
        result.warn(f"explore.{key}", "not mapped")


def _stage_confs(used: list[int], configurations: list[dict[str, Any]], prefix: str | None,
                 where: str, result: Dpgen2Import, paths: _Paths
                 ) -> tuple[dict[str, Any], dict[int, list[int]]]:
    """opshelf's `confs` for one stage and DPGEN2 conf_idx -> opshelf conf indices."""
    if not used:
        result.error(f"{where}[*].conf_idx", "no configuration referenced")
        return {"files": []}, {}
    bad = [i for i in used if not 0 <= i < len(configurations)]
    if bad:
        result.error(f"{where}[*].conf_idx", f"{bad} out of range: "
                     f"explore.configurations has {len(configurations)} entries")
        return {"files": []}, {}
    entries = [_public(configurations[i]) for i in used]
    kinds = {e.get("type", "alloy" if "lattice" in e else "file") for e in entries}
    if kinds == {"alloy"} and len(entries) == 1:
        return _lattice(entries[0], f"explore.configurations[{used[0]}]", result), {}
    if kinds != {"file"}:
        result.error(where, "a stage uses several generated (alloy) configurations or mixes "
                     "them with files; opshelf has one conf source per stage: split the stage")
        return {"files": []}, {}
    files: list[str] = []
    fmts = set()
    offsets: dict[int, list[int]] = {}
    running: int | None = 0  # None once a file's frames cannot be counted here
    for i, entry in zip(used, entries):
        key = f"explore.configurations[{i}]"
        fmts.add(entry.get("fmt", "auto"))
        names = [paths(f, entry.get("prefix") or prefix) for f in entry.get("files") or []]
        if not names:
            result.error(f"{key}.files", "no file")
        counts = [_count_frames(paths.absolute(n), entry.get("fmt", "auto")) for n in names]
        if running is None or None in counts:
            running, offsets[i] = None, []
        else:
            n_frames = sum(c or 0 for c in counts)
            offsets[i] = list(range(running, running + n_frames))
            running += n_frames
        files.extend(names)
        for extra in sorted(set(entry) - {"type", "files", "fmt", "prefix"}):
            result.warn(f"{key}.{extra}", "not mapped")
    if len(fmts) > 1:
        result.error(where, f"configurations of several formats {sorted(fmts)} in one stage")
    fmt = fmts.pop() if fmts else "auto"
    confs: dict[str, Any] = {"files": files}
    if fmt != "auto":
        confs["fmt"] = fmt
    return confs, offsets


def _count_frames(path: Path, fmt: str) -> int | None:
    """Frames in a conf file, or None when it cannot be read here."""
    if not path.exists():
        return None
    try:
        from opshelf.core.ops.labelling import read_frames

        return len(read_frames(path, fmt))
    except Exception:  # any reader error: the mapping then needs the whole stage's confs
        return None


def _lattice(entry: dict[str, Any], key: str, result: Dpgen2Import) -> dict[str, Any]:
    lattice = entry.get("lattice")
    if not (isinstance(lattice, list) and len(lattice) == 2):
        result.error(f"{key}.lattice", "expected [crystal, lattice constant]")
        return {"files": []}
    crystal, constant = lattice
    generate: dict[str, Any] = {"crystal": crystal, "lattice_constant_A": float(constant),
                                "supercell": list(entry.get("replicate", [1, 1, 1])),
                                "n_confs": int(entry.get("numb_confs", 1))}
    concentration = entry.get("concentration")
    if concentration is not None and len(concentration) != 1:
        result.error(f"{key}.concentration", f"{len(concentration)} compositions; opshelf "
                     "generates one composition per stage: one configuration per composition")
    generate["_concentration"] = concentration[0] if concentration else None
    if entry.get("atom_pert_dist"):
        generate["rattle_A"] = float(entry["atom_pert_dist"])
    if entry.get("cell_pert_frac"):
        result.warn(f"{key}.cell_pert_frac", "cell perturbation is not mapped (confs keep "
                    "the ideal cell)")
    for extra in sorted(set(entry) - {"type", "lattice", "replicate", "numb_confs",
                                      "concentration", "atom_pert_dist", "cell_pert_frac"}):
        result.warn(f"{key}.{extra}", "not mapped")
    return {"generate": generate}


def _group(group: dict[str, Any], offsets: dict[int, list[int]], used: list[int], key: str,
           result: Dpgen2Import, paths: _Paths) -> dict[str, Any]:
    group = _public(group)
    kind = group.get("type", "lmp-md")
    idx = group.get("conf_idx") or []
    out: dict[str, Any]
    if kind in ("lmp-md", "lmp-npt"):
        ensemble = str(group.get("ensemble", "nvt")).lower()
        if ensemble not in ENSEMBLES:
            result.error(f"{key}.ensemble", f"{ensemble!r}: opshelf-md has nvt, npt "
                         "(isotropic) and nve")
        out = {"kind": "md", "ensemble": ENSEMBLES.get(ensemble, "nvt"),
               "temperatures_K": [float(t) for t in group.get("temps") or []],
               "n_steps": int(group.get("nsteps", 1000)),
               "timestep_fs": float(group.get("dt", DEFAULT_DT_PS)) * PS_IN_FS,
               "dump_every": int(group.get("trj_freq", 10)),
               "thermostat_tau_fs": float(group.get("tau_t", DEFAULT_TAU_T_PS)) * PS_IN_FS,
               "barostat_tau_fs": float(group.get("tau_p", DEFAULT_TAU_P_PS)) * PS_IN_FS}
        if not out["temperatures_K"]:
            result.error(f"{key}.temps", "missing")
        if group.get("press") is not None and out["ensemble"] == "npt":
            out["pressures_GPa"] = [float(p) * BAR_IN_GPA for p in group["press"]]
        mapped = {"type", "ensemble", "temps", "press", "nsteps", "dt", "trj_freq", "tau_t",
                  "tau_p", "conf_idx", "n_sample"}
        wrong = {"pka_e", "use_clusters", "relative_f_epsilon", "relative_v_epsilon",
                 "neidelay", "no_pbc", "model_devi_time_step"}
    elif kind == "lmp-template":
        template = group.get("lmp") or group.get("lmp_template_fname")
        out = {"kind": "lmp-template", "template": paths(template) if template else "",
               "revisions": group.get("revisions") or {},
               "dump_every": int(group.get("trj_freq", group.get("traj_freq", 10)))}
        if not template:
            result.error(f"{key}.lmp", "missing LAMMPS template")
        mapped = {"type", "lmp", "lmp_template_fname", "revisions", "trj_freq", "traj_freq",
                  "conf_idx", "n_sample"}
        wrong = {"plm", "plm_template_fname"}
    else:
        result.error(f"{key}.type", f"{kind!r}: opshelf maps lmp-md and lmp-template groups")
        return {"kind": "md", "temperatures_K": [0.0]}
    if offsets and set(idx) != set(used):
        if any(not offsets.get(i) for i in idx):
            result.error(f"{key}.conf_idx", "the group uses some of the stage's conf files "
                         "and they cannot be read here to count their frames")
        out["confs"] = [c for i in idx for c in offsets.get(i, [])]
    if "n_sample" in group:
        result.warn(f"{key}.n_sample", "every conf of conf_idx is explored (opshelf samples "
                    "no subset)")
    for extra in sorted(set(group) - mapped):
        if extra in wrong:
            result.error(f"{key}.{extra}", "not supported by opshelf-md; the exploration "
                         "would differ")
        else:
            result.warn(f"{key}.{extra}", "not mapped")
    return out


def _fp(fp: dict[str, Any], config: dict[str, Any], result: Dpgen2Import,
        paths: _Paths) -> dict[str, Any]:
    kind = str(fp.get("type", ""))
    name = kind.removeprefix("fpop_")
    inputs = _public(fp.get("inputs_config") or {}) or {
        k: v for k, v in fp.items() if k not in ("type", "task_max", "run_config", "config")}
    run = _public(fp.get("run_config") or fp.get("config") or {})
    section: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    if run.get("command"):
        command = str(run.pop("command"))
        if any(token in command for token in ("&&", ";", "|", "source ")):
            result.warn("fp.run_config.command", f"{command!r} is a shell line; set "
                        "fp.engine.profile (command, mpi_prefix, env) by hand")
        else:
            argv = shlex.split(command)
            launchers = ("mpirun", "mpiexec", "srun")
            if argv and argv[0] in launchers:
                at = next((i for i, a in enumerate(argv[1:], 1) if not a.startswith("-")
                           and not argv[i - 1].startswith("-")), len(argv) - 1)
                profile["mpi_prefix"], argv = argv[:at], argv[at:]
            profile["command"] = argv
    for key in sorted(run):
        result.warn(f"fp.run_config.{key}", "not mapped")
    if "task_max" in fp:
        config["select"]["max_select"] = min(int(fp["task_max"]),
                                             config["select"].get("max_select", 1 << 30))
    mappers = {"vasp": _fp_vasp, "cp2k": _fp_cp2k, "abacus": _fp_abacus,
               "gaussian": _fp_gaussian}
    if name not in mappers:
        result.error("fp.type", f"{kind!r}: opshelf maps vasp, cp2k, abacus and gaussian")
        return {"engine": {"name": name or "unknown"}}
    settings = mappers[name](inputs, result, paths, config.get("type_map", []))
    section["engine"] = {"name": name, "settings": settings}
    if profile:
        section["engine"]["profile"] = profile
    return section


def _fp_vasp(inputs: dict[str, Any], result: Dpgen2Import, paths: _Paths,
             type_map: list[str]) -> dict[str, Any]:
    where = "fp.inputs_config"
    settings: dict[str, Any] = {}
    if inputs.get("incar"):
        settings["incar_file"] = paths(inputs["incar"])
    else:
        result.error(f"{where}.incar", "missing")
    if "kspacing" in inputs:
        if isinstance(inputs["kspacing"], list):
            result.error(f"{where}.kspacing", "one spacing per direction is not supported")
        else:
            settings["kspacing_per_A"] = float(inputs["kspacing"])
    settings["gamma_centered"] = bool(inputs.get("kgamma", True))
    pp_files = inputs.get("pp_files") or {}
    # opshelf reads POTCARs from a library: <potcar_dir>/<variant>/POTCAR
    folders = {el: Path(paths(p)) for el, p in pp_files.items()}
    libraries = {f.parent.parent for f in folders.values() if f.name == "POTCAR"}
    if len(libraries) == 1 and all(f.name == "POTCAR" for f in folders.values()):
        settings["potcar_dir"] = str(libraries.pop())
        variants = {el: f.parent.name for el, f in folders.items() if f.parent.name != el}
        if variants:
            settings["potcar_variants"] = variants
    else:
        result.error(f"{where}.pp_files", "opshelf-fp reads POTCARs from a library laid out "
                     "as <potcar_dir>/<element or variant>/POTCAR; these files are not "
                     f"({sorted(str(v) for v in folders.values())}): set potcar_dir and "
                     "potcar_variants")
    missing = sorted(set(type_map) - set(pp_files))
    if pp_files and missing:
        result.error(f"{where}.pp_files", f"no POTCAR for {missing}")
    for key in sorted(set(inputs) - {"incar", "kspacing", "kgamma", "pp_files"}):
        result.warn(f"{where}.{key}", "not mapped")
    return settings


def _fp_cp2k(inputs: dict[str, Any], result: Dpgen2Import, paths: _Paths,
             type_map: list[str]) -> dict[str, Any]:
    where = "fp.inputs_config"
    name = inputs.get("inp_file")
    for key in sorted(set(inputs) - {"inp_file"}):
        result.error(f"{where}.{key}", "not mapped (opshelf's cp2k engine takes an input "
                     "file with {{CELL}} and {{COORD}} placeholders: inp_file)")
    if not name:
        result.error(f"{where}.inp_file", "missing")
        return {}
    template = paths(name)
    path = paths.absolute(template)
    if path.is_file():
        text = path.read_text()
        if "{{CELL}}" not in text or "{{COORD}}" not in text:
            result.error(f"{where}.inp_file", f"{name}: add the placeholders {{{{CELL}}}} and "
                         "{{COORD}} inside &SUBSYS (opshelf writes each frame's cell and "
                         "coordinates there; DPGEN2/fpop appended them)")
    else:
        result.warn(f"{where}.inp_file", f"{name} not found from here; it must hold "
                    "{{CELL}} and {{COORD}} placeholders")
    return {"template": template}


def _fp_abacus(inputs: dict[str, Any], result: Dpgen2Import, paths: _Paths,
               type_map: list[str]) -> dict[str, Any]:
    where = "fp.inputs_config"
    settings: dict[str, Any] = {}
    pp_files = inputs.get("pp_files") or {}
    if not pp_files:
        result.error(f"{where}.pp_files", "missing")
    dirs = {str(Path(paths(p)).parent) for p in pp_files.values()}
    if len(dirs) > 1:
        result.error(f"{where}.pp_files", f"pseudopotentials in several folders {sorted(dirs)}; "
                     "opshelf's abacus engine reads them from one pseudo_dir")
    if pp_files:
        settings["pseudo_dir"] = dirs.pop()
        settings["pseudopotentials"] = {el: Path(p).name for el, p in pp_files.items()}
    orbitals = inputs.get("orb_files") or {}
    if orbitals:
        settings["orbital_dir"] = str(Path(paths(next(iter(orbitals.values())))).parent)
        settings["orbitals"] = {el: Path(p).name for el, p in orbitals.items()}
    if inputs.get("kpt_file"):
        mesh = _abacus_kpt_mesh(paths.absolute(paths(inputs["kpt_file"])))
        if mesh is None:
            result.error(f"{where}.kpt_file", "cannot read a Monkhorst-Pack mesh from it")
        else:
            settings["kpoints"] = mesh
    if inputs.get("input_file"):
        _abacus_input(paths.absolute(paths(inputs["input_file"])), settings, result)
    else:
        result.error(f"{where}.input_file", "missing")
    for key in sorted(set(inputs) - {"pp_files", "orb_files", "kpt_file", "input_file",
                                     "element_mass"}):
        result.error(f"{where}.{key}", "not supported by opshelf's abacus engine")
    return settings


def _abacus_kpt_mesh(path: Path) -> list[int] | None:
    if not path.is_file():
        return None
    lines = path.read_text().split("\n")
    try:
        return [int(x) for x in lines[3].split()[:3]]
    except (IndexError, ValueError):
        return None


def _abacus_input(path: Path, settings: dict[str, Any], result: Dpgen2Import) -> None:
    """ABACUS INPUT keywords -> typed settings; the rest into `extra`."""
    key = "fp.inputs_config.input_file"
    if not path.is_file():
        result.error(key, f"not found: {path}")
        return
    typed = {"ecutwfc": ("ecutwfc_Ry", float), "scf_thr": ("scf_thr", float),
             "scf_nmax": ("scf_nmax", int), "basis_type": ("basis_type", str),
             "smearing_method": ("smearing_method", str),
             "smearing_sigma": ("smearing_sigma_Ry", float)}
    # set by opshelf per task (structure, what to compute, where the files are)
    owned = {"calculation", "ntype", "pseudo_dir", "orbital_dir", "cal_force", "cal_stress",
             "stru_file", "kpoint_file", "suffix"}
    extra: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) < 2 or tokens[0].upper() == "INPUT_PARAMETERS":
            continue
        word, value = tokens[0].lower(), " ".join(tokens[1:])
        if word in typed:
            name, cast = typed[word]
            settings[name] = cast(value)
        elif word == "kspacing":
            result.error(f"{key}: kspacing", "ABACUS kspacing (1/Bohr) is not mapped: give "
                         "a kpt_file or set kspacing_per_A (1/A, 2*pi included) by hand")
        elif word not in owned:
            extra[word] = value
    if extra:
        settings["extra"] = extra


def _fp_gaussian(inputs: dict[str, Any], result: Dpgen2Import, paths: _Paths,
                 type_map: list[str]) -> dict[str, Any]:
    where = "fp.inputs_config"
    keywords = inputs.get("keywords")
    if not keywords:
        result.error(f"{where}.keywords", "missing")
        return {}
    if isinstance(keywords, list):
        result.error(f"{where}.keywords", "several route sections (multi-step jobs) are "
                     "not supported")
        keywords = keywords[0]
    # opshelf adds 'force' itself
    words = [w for w in str(keywords).lstrip("#").split() if w.lower() != "force"]
    settings: dict[str, Any] = {"keywords": " ".join(words)}
    for key in ("charge", "multiplicity", "nproc"):
        if key in inputs:
            settings[key] = inputs[key]
    for key in sorted(set(inputs) - {"keywords", "charge", "multiplicity", "nproc"}):
        if key in ("basis_set", "fragment_guesses", "keywords_high_multiplicity"):
            result.error(f"{where}.{key}", "not supported by opshelf's gaussian engine")
        else:
            result.warn(f"{where}.{key}", "not mapped")
    return settings


def finish_lattices(config: dict[str, Any], result: Dpgen2Import) -> None:
    """Turn DPGEN2 concentrations into opshelf substitutions (needs type_map)."""
    type_map = config.get("type_map", [])
    for s, stage in enumerate(config.get("explore", {}).get("stages", [])):
        generate = stage["confs"].get("generate")
        if generate is None:
            continue
        fractions = generate.pop("_concentration", None)
        if fractions is None:
            fractions = [1.0] + [0.0] * (len(type_map) - 1)
        if len(fractions) != len(type_map):
            result.error(f"explore.configurations (stage {s}).concentration",
                         f"{len(fractions)} fractions for type_map {type_map}")
            continue
        host = max(range(len(type_map)), key=lambda i: fractions[i])
        generate["element"] = type_map[host]
        by = {type_map[i]: float(f) for i, f in enumerate(fractions) if i != host and f > 0}
        if by:
            generate["substitutions"] = [{"replace": type_map[host], "by": by}]
