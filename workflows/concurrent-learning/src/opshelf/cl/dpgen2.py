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
import re
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
#: DPGEN2's task-group arguments (dpgen2/exploration/task/make_task_group_from_config.py):
#: canonical key -> the aliases DPGEN2 accepts, and the defaults it fills in.
MD_ALIASES = {"conf_idx": ("sys_idx",), "temps": ("Ts",), "press": ("Ps",),
              "ens": ("ensemble",), "trj_freq": ("t_freq", "traj_freq")}
MD_DEFAULTS: dict[str, Any] = {"ens": "nve", "dt": 1e-3, "nsteps": 100, "trj_freq": 10,
                               "tau_t": 5e-2, "tau_p": 5e-1}
#: lmp-md keys whose non-default value changes the run in a way opshelf-md cannot do
MD_UNSUPPORTED: dict[str, Any] = {"pka_e": None, "neidelay": None, "no_pbc": False,
                                  "use_clusters": False, "relative_f_epsilon": None,
                                  "relative_v_epsilon": None}
TEMPLATE_ALIASES = {"conf_idx": ("sys_idx",), "lmp_template_fname": ("lmp_template", "lmp"),
                    "plm_template_fname": ("plm_template", "plm"),
                    "traj_freq": ("t_freq", "trj_freq")}
TEMPLATE_DEFAULTS: dict[str, Any] = {"revisions": {}, "traj_freq": 10}
#: DPGEN2's ensembles (LAMMPS fix nve/nvt/npt iso) -> opshelf-md's; npt-a (anisotropic) and
#: npt-t (triclinic) have no opshelf equivalent
ENSEMBLES = {"nvt": "nvt", "nve": "nve", "npt": "npt"}
#: DPGEN2's report defaults: fixed-levels (explore.conv_accuracy) and adaptive-lower
#: (dpgen2/exploration/report/report_adaptive_lower.py)
CONV_ACCURACY_DEFAULT = 0.9
ADAPTIVE_LOWER_DEFAULTS: dict[str, Any] = {"level_f_hi": 0.5, "numb_candi_f": 200,
                                           "rate_candi_f": 0.01, "numb_candi_v": 0,
                                           "rate_candi_v": 0.0, "n_checked_steps": 2,
                                           "conv_tolerance": 0.05}


@dataclass
class Dpgen2Import:
    """The opshelf config made from a DPGEN2 input, with what could not be mapped."""

    config: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: files the config needs written next to it: absolute path -> text (a CP2K template
    #: converted from fpop's @INCLUDE convention)
    files: dict[Path, str] = field(default_factory=dict)
    #: symbolic links the config needs: absolute link path -> absolute target (a POTCAR
    #: library laid out as opshelf-fp reads it, over DPGEN2's per-element POTCAR files)
    links: dict[Path, Path] = field(default_factory=dict)

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

    def resolved(self, path: str, prefix: str | None = None) -> str:
        """The absolute path: engine settings are read by the engine in its task folder,
        where a path relative to the config would not be found."""
        return str(Path(os.path.normpath(self.absolute(self(path, prefix)))))


#: dpgen2 v0.0.5's flat input (examples/almg/input-v005.json): key -> (section, key) of
#: the later layout; the `*_config` step settings are execution keys
V005_KEYS: dict[str, tuple[str, ...]] = {
    "type_map": ("inputs", "type_map"), "mass_map": ("inputs", "mass_map"),
    "init_data_prefix": ("inputs", "init_data_prefix"),
    "init_data_sys": ("inputs", "init_data_sys"),
    "train_style": ("train", "type"), "numb_models": ("train", "numb_models"),
    "default_training_param": ("train", "template_script"), "train_config": ("train", "config"),
    "explore_style": ("explore", "type"), "lmp_config": ("explore", "config"),
    "max_numb_iter": ("explore", "max_numb_iter"), "conv_accuracy": ("explore", "conv_accuracy"),
    "fatal_at_max": ("explore", "fatal_at_max"),
    "model_devi_f_trust_lo": ("explore", "f_trust_lo"),
    "model_devi_f_trust_hi": ("explore", "f_trust_hi"),
    "model_devi_v_trust_lo": ("explore", "v_trust_lo"),
    "model_devi_v_trust_hi": ("explore", "v_trust_hi"),
    "sys_configs_prefix": ("explore", "configuration_prefix"),
    "sys_configs": ("explore", "configurations"),
    "fp_style": ("fp", "type"), "fp_config": ("fp", "config"), "fp_task_max": ("fp", "task_max"),
    "fp_pp_files": ("fp", "pp_files"), "fp_incar": ("fp", "incar"),
    "fp_kspacing": ("fp", "kspacing"), "fp_kgamma": ("fp", "kgamma")}
V005_EXECUTION = ("run_train_config", "run_explore_config", "run_fp_config",
                  "select_confs_config", "collect_data_config", "cl_step_config",
                  "prep_train_config", "prep_explore_config", "prep_fp_config")


def is_v005_layout(data: dict[str, Any]) -> bool:
    """dpgen2 v0.0.5's flat layout: no `inputs` section, its flat keys instead."""
    return "inputs" not in data and bool({"train_style", "model_devi_jobs",
                                          "default_training_param"} & set(data))


def from_v005(data: dict[str, Any], result: Dpgen2Import) -> dict[str, Any]:
    """The later (sectioned) layout of a v0.0.5 input: each `model_devi_jobs` entry is one
    stage of one lmp-md group, as v0.0.5's scheduler made it."""
    out: dict[str, Any] = {"inputs": {}, "train": {}, "explore": {}, "fp": {}}
    for key, value in _public(data).items():
        if key in V005_KEYS:
            section, name = V005_KEYS[key]
            out[section][name] = value
        elif key == "model_devi_jobs":
            out["explore"]["stages"] = [[job] for job in value]
        elif key in V005_EXECUTION:  # step settings: their envs are read (threads)
            out.setdefault("step_configs", {})[key] = value
        elif key in EXECUTION_KEYS:
            out[key] = value
        else:
            result.warn(key, "not mapped (dpgen2 v0.0.5 key unknown to this importer)")
    return out


def import_dpgen2(data: dict[str, Any], input_dir: Path, out_dir: Path) -> Dpgen2Import:
    """Map a DPGEN2 input (parsed JSON; the sectioned layout or v0.0.5's flat one) to an
    opshelf cl config dict."""
    result = Dpgen2Import()
    paths = _Paths(input_dir, out_dir)
    if is_v005_layout(data):
        result.warn("train_style", "dpgen2 v0.0.5's flat layout: read as the sectioned one")
        data = from_v005(data, result)
    for key in sorted(set(data) & set(EXECUTION_KEYS)):
        result.warn(key, "execution settings are not mapped (the run steps' envs are: "
                    "threads and environment); set the `steps` block (local by default; "
                    "dispatcher or argo per step)")
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
    config["train"] = _train(_public(data["train"]), result, paths,
                             bool(_public(data["inputs"]).get("do_finetune")))
    _explore(_public(data["explore"]), config, result, paths)
    config["fp"] = _fp(_public(data["fp"]), config, result, paths)
    _step_envs(data, config, result)
    result.config = config
    return result


#: DPGEN2 step config -> where its program's environment goes in the opshelf config
STEP_ENVS = {"run_train_config": ("train", "dp"), "run_explore_config": ("explore", "profile"),
             "run_fp_config": ("fp", "engine", "profile")}


def _step_envs(data: dict[str, Any], config: dict[str, Any], result: Dpgen2Import) -> None:
    """DPGEN2's step_configs.<step>.template_config.envs (default_step_config's when the step
    has none) are the environment its programs run with: kept as the engine's (or dp's)
    `env`, OMP_NUM_THREADS as its `threads`, so each program runs with the threads it had."""
    steps = data.get("step_configs") or {}
    default = data.get("default_step_config") or {}
    for step, where in STEP_ENVS.items():
        envs = ((steps.get(step) or default).get("template_config") or {}).get("envs")
        if not envs:
            continue
        if not isinstance(envs, dict):
            result.error(f"step_configs.{step}.template_config.envs", "not a mapping")
            continue
        node = config
        for key in where:
            node = node.setdefault(key, {})
        env = {str(k): str(v) for k, v in envs.items()}
        threads = env.pop("OMP_NUM_THREADS", None)
        if threads is not None:
            if not threads.isdigit() or int(threads) < 1:
                result.error(f"step_configs.{step}.template_config.envs.OMP_NUM_THREADS",
                             f"{threads!r}: a positive whole number")
                continue
            node["threads"] = int(threads)
        if env:
            node["env"] = {**node.get("env", {}), **env}


def _inputs(inputs: dict[str, Any], config: dict[str, Any], result: Dpgen2Import,
            paths: _Paths) -> None:
    type_map = inputs.get("type_map")
    if not type_map:
        result.error("inputs.type_map", "missing")
        type_map = []
    config["type_map"] = list(type_map)
    config["seed"] = 0
    if inputs.get("mass_map") is not None:
        config["_mass_lines"] = _mass_lines(inputs["mass_map"], type_map, result)
    systems = inputs.get("init_data_sys")
    if isinstance(systems, str):  # DPGEN2 accepts one path as a string
        systems = [systems]
    if not systems:
        result.error("inputs.init_data_sys", "no initial data")
        systems = []
    prefix = inputs.get("init_data_prefix")
    config["init_data"] = [{"path": paths(s, prefix)} for s in systems]
    if inputs.get("mixed_type"):
        result.warn("inputs.mixed_type", "mixed-type (deepmd/npy/mixed) data is read as it "
                    "is; train it with a model that takes it (se_atten, DPA-2/3: "
                    "train.dp.backend pytorch)")
    _multitask(inputs, result)
    for key in sorted(set(inputs) - {"type_map", "mass_map", "init_data_sys",
                                     "init_data_prefix", "mixed_type", "do_finetune",
                                     *MULTITASK_KEYS}):
        result.warn(f"inputs.{key}", "not mapped")


#: DPGEN2's multi-task inputs (entrypoint/submit.py workflow_concurrent_learning) and the
#: data it fetches from its own storage instead of the files named
MULTITASK_KEYS = ("multitask", "head", "multi_init_data", "multi_init_data_uri",
                  "init_data_uri")


def _multitask(inputs: dict[str, Any], result: Dpgen2Import) -> None:
    """DPGEN2 reads multi_init_data (head -> {sys, prefix}) only with `multitask` true, then
    trains a multi-task DeePMD model (one data set per head of the template's model_dict,
    the loop's labels to `head`) and explores with that head frozen; without it, the keys
    are ignored and init_data_sys is the data, as here. An *_uri is data in DPGEN2's
    artifact storage, which cannot be read here."""
    if inputs.get("multitask"):
        heads = sorted((inputs.get("multi_init_data") or {}).keys())
        result.error("inputs.multitask", f"multi-task training (heads {heads}, the loop's "
                     f"labels to head {inputs.get('head')!r}) is not in opshelf-train; "
                     "training one head's data alone would make another model")
        return
    for key in ("multi_init_data", "multi_init_data_uri", "head"):
        if inputs.get(key) is not None:
            result.warn(f"inputs.{key}", "left out, as DPGEN2 leaves it without "
                        "inputs.multitask true: the data is init_data_sys")
    if inputs.get("init_data_uri") is not None:
        result.error("inputs.init_data_uri", "data in DPGEN2's artifact storage (it replaces "
                     "init_data_sys there) cannot be read here: download it and name it in "
                     "init_data_sys")


def _mass_lines(masses: Any, type_map: list[str], result: Dpgen2Import) -> list[str]:
    """DPGEN2's mass_map (any masses, in type_map order) as LAMMPS `mass` lines: opshelf-md
    writes the standard masses after read_data and its extra_commands after them, so these
    lines set the masses DPGEN2 would (LAMMPS keeps the last `mass` of a type)."""
    if not isinstance(masses, list) or len(masses) != len(type_map):
        result.error("inputs.mass_map", f"{masses!r}: one mass (amu) per type_map element "
                     f"({len(type_map)})")
        return []
    bad = [m for m in masses if not isinstance(m, int | float) or not 0 < float(m) < 1e4]
    if bad:
        result.error("inputs.mass_map", f"{bad}: masses are numbers in (0, 1e4) amu")
        return []
    return [f"mass {i} {float(m):.10g}" for i, m in enumerate(masses, 1)]


def _train(train: dict[str, Any], result: Dpgen2Import, paths: _Paths,
           finetune: bool = False) -> dict[str, Any]:
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
    backend = options.pop("impl", options.pop("backend", None))
    if backend is not None:  # DPGEN2's impl (alias backend): tensorflow or pytorch
        section.setdefault("dp", {})["backend"] = str(backend)
    if finetune:
        _finetune(train, options, section, result, paths)
    elif train.get("init_models_paths"):  # DPGEN2: the first iteration uses them, untrained
        section["init_models"] = [paths(m) for m in train["init_models_paths"]]
    for key in sorted(options):
        result.warn(f"train.config.{key}", "not mapped")
    for key in sorted(set(train) - {"type", "template_script", "numb_models", "config",
                                    "init_models_paths"}):
        result.warn(f"train.{key}", "not mapped")
    return section


def _finetune(train: dict[str, Any], options: dict[str, Any], section: dict[str, Any],
              result: Dpgen2Import, paths: _Paths) -> None:
    """DPGEN2's do_finetune (entrypoint/submit.py, op/run_dp_train.py): before the loop each
    member is trained with `dp train --finetune <init_models_paths[i]>` (plus finetune_args)
    on the init data, then the loop starts from those models with init_model_policy forced
    to 'yes'. opshelf cl's train.finetune_model: one pretrained model for every member."""
    models = [str(m) for m in train.get("init_models_paths") or []]
    where = "train.init_models_paths"
    if not models:
        result.error(where, "inputs.do_finetune needs the pretrained model(s) here")
        return
    if len({os.path.normpath(paths.resolved(m)) for m in models}) > 1:
        result.error(where, f"{len(set(models))} different pretrained models: opshelf cl "
                     "fine-tunes every member from one (train.finetune_model)")
        return
    section["finetune_model"] = paths(models[0])
    args = shlex.split(str(options.pop("finetune_args", "")))
    finetune: dict[str, Any] = {"use_pretrain_script": "--use-pretrain-script" in args}
    args = [a for a in args if a != "--use-pretrain-script"]
    if args[:1] in (["--model-branch"], ["-m"]) and len(args) >= 2:
        finetune["model_branch"], args = args[1], args[2:]
    if args:
        result.error("train.config.finetune_args", f"{args}: opshelf maps --model-branch and "
                     "--use-pretrain-script")
    section["finetune"] = finetune
    if options.pop("init_model_with_finetune", False):
        result.error("train.config.init_model_with_finetune", "later iterations fine-tuning "
                     "from the previous models is not in opshelf cl (they init-model)")
    policy = section.setdefault("init_model", {}).get("policy", "yes")
    if policy != "yes":
        result.warn("train.config.init_model_policy", f"{policy!r}: DPGEN2 forces 'yes' with "
                    "do_finetune, so does the import")
    section["init_model"]["policy"] = "yes"


def _levels(explore: dict[str, Any], result: Dpgen2Import) -> tuple[dict[str, Any], dict[str, Any]]:
    """(select.trust, stage convergence) from either DPGEN2 layout."""
    conv = _public(explore.get("convergence") or {})
    style = conv.get("type", "fixed-levels")
    where = "explore.convergence" if conv else "explore"
    get = (lambda new, old: conv.get(new)) if conv else (lambda new, old: explore.get(old))
    trust: dict[str, Any] = {"style": style}
    convergence: dict[str, Any] = {}
    f_hi = get("level_f_hi", "f_trust_hi")
    if f_hi is None and style != "adaptive-lower":  # adaptive-lower: DPGEN2's 0.5
        result.error(f"{where}.level_f_hi", "missing upper force trust level")
    trust["f_hi"] = f_hi
    if style in ("fixed-levels", "fixed-levels-max-select"):
        trust["f_lo"] = get("level_f_lo", "f_trust_lo")
        v_lo, v_hi = get("level_v_lo", "v_trust_lo"), get("level_v_hi", "v_trust_hi")
        if v_lo is not None and v_hi is not None:
            trust.update(v_lo=v_lo, v_hi=v_hi)
        accuracy = get("conv_accuracy", "conv_accuracy")
        convergence = {"style": "accurate-ratio", "min_accurate_ratio":
                       CONV_ACCURACY_DEFAULT if accuracy is None else accuracy}
    elif style == "adaptive-lower":
        conv = {**ADAPTIVE_LOWER_DEFAULTS, **conv}  # DPGEN2's defaults, written out
        trust["f_hi"] = conv["level_f_hi"]
        for key in ("numb_candi_f", "rate_candi_f", "numb_candi_v", "rate_candi_v"):
            trust[key] = conv[key]
        if conv.get("level_v_hi") is not None:
            trust["v_hi"] = conv["level_v_hi"]
        convergence = {"style": "adaptive-lower", "level_tolerance": conv["conv_tolerance"],
                       "n_checked": conv["n_checked_steps"]}
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
    mass_lines = config.pop("_mass_lines", None)
    if mass_lines:  # lmp-template groups set their own masses in their templates
        section["settings"] = {"extra_commands": mass_lines}
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
        # conf_idx or its alias sys_idx: which configurations the stage explores
        used = sorted({i for g in groups for i in (g.get("conf_idx", g.get("sys_idx")) or [])})
        confs, offsets = _stage_confs(used, configurations, prefix, where, result, paths,
                                      (s, config.get("type_map", [])))
        n_confs = _n_stage_confs(confs, offsets)
        stage = {"name": f"stage-{s}", "confs": confs, "convergence": dict(convergence),
                 "groups": [_group(g, offsets, used, f"{where}[{k}]", result, paths, n_confs,
                                   seed=1000 * s + k) for k, g in enumerate(groups)]}
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


def _n_stage_confs(confs: dict[str, Any], offsets: dict[int, list[int]]) -> int | None:
    """How many confs a stage explores, when known here."""
    if offsets and all(offsets.values()):
        return sum(len(v) for v in offsets.values())
    return None


def _stage_confs(used: list[int], configurations: list[dict[str, Any]], prefix: str | None,
                 where: str, result: Dpgen2Import, paths: _Paths,
                 stage: tuple[int, list[str]]) -> tuple[dict[str, Any], dict[int, list[int]]]:
    """opshelf's `confs` for one stage and DPGEN2 conf_idx -> opshelf conf indices. Alloy
    configurations are generated here, as DPGEN2 generates them when the workflow is
    submitted, into an extxyz file written next to the config."""
    if not used:
        result.error(f"{where}[*].conf_idx", "no configuration referenced")
        return {"files": []}, {}
    bad = [i for i in used if not 0 <= i < len(configurations)]
    if bad:
        result.error(f"{where}[*].conf_idx", f"{bad} out of range: "
                     f"explore.configurations has {len(configurations)} entries")
        return {"files": []}, {}
    files: list[str] = []
    fmts = set()
    offsets: dict[int, list[int]] = {}
    running: int | None = 0  # None once a file's frames cannot be counted here
    for i in used:
        entry, key = _public(configurations[i]), f"explore.configurations[{i}]"
        if entry.get("type", "alloy" if "lattice" in entry else "file") == "alloy":
            names, counts = _alloy_file(entry, key, result, paths, (*stage, i))
            fmts.add("auto")
        else:
            names = _conf_files(entry.get("files"), entry.get("prefix") or prefix, paths)
            if not names:
                result.error(f"{key}.files", f"{entry.get('files')!r}: no file (DPGEN2 reads "
                             "the files that match, relative to the input's folder)")
            if entry.get("remove_pbc") and names:
                names, counts = _nopbc_file(names, entry, key, result, paths, (*stage, i))
                fmts.add("auto")
            else:
                fmts.add(entry.get("fmt", "auto"))
                counts = [_count_frames(paths.absolute(n), entry.get("fmt", "auto"))
                          for n in names]
            for extra in sorted(set(entry) - {"type", "files", "fmt", "prefix", "remove_pbc"}):
                result.warn(f"{key}.{extra}", "not mapped")
        if running is None or None in counts:
            running, offsets[i] = None, []
        else:
            n_frames = sum(c or 0 for c in counts)
            offsets[i] = list(range(running, running + n_frames))
            running += n_frames
        files.extend(names)
    if len(fmts) > 1:
        result.error(where, f"configurations of several formats {sorted(fmts)} in one stage")
    fmt = fmts.pop() if fmts else "auto"
    confs: dict[str, Any] = {"files": files}
    if fmt != "auto":
        confs["fmt"] = fmt
    return confs, offsets


def _nopbc_file(names: list[str], entry: dict[str, Any], key: str, result: Dpgen2Import,
                paths: _Paths, where: tuple[int, list[str], int]
                ) -> tuple[list[str], list[int | None]]:
    """DPGEN2's remove_pbc (FileConfGenerator): each file read by dpdata, its System's
    remove_pbc() (the box around the atoms plus dpdata's 9 A protect layer, the atoms
    centred), written at import into dpgen2-confs/stage-S-conf-I.extxyz; periodic, as the
    LAMMPS conf DPGEN2 writes from it is (boundary p p p unless no_pbc)."""
    import io

    import ase.io

    from opshelf.core.ops.labelling import read_frames

    s, _, i = where
    frames = []
    for name in names:
        try:
            systems = read_frames(paths.absolute(name), entry.get("fmt", "auto"))
        except Exception as exc:  # any reader error: named, nothing written
            result.error(f"{key}.files", f"{name}: cannot be read as "
                         f"{entry.get('fmt', 'auto')!r} ({exc}), so remove_pbc cannot be done")
            return [], [None]
        for system in systems:
            system.remove_pbc()
            for atoms in system.to("ase/structure"):
                atoms.pbc = True
                frames.append(atoms)
    text = io.StringIO()
    ase.io.write(text, frames, format="extxyz")
    name = f"{CONF_FILES}/stage-{s}-conf-{i}.extxyz"
    result.files[paths.out_dir / name] = text.getvalue()
    result.warn(f"{key}.remove_pbc", f"done at import as DPGEN2 does at submission: {name}")
    return [name], [len(frames)]


def _conf_files(files: str | list[str] | None, prefix: str | None, paths: _Paths) -> list[str]:
    """DPGEN2's FileConfGenerator: one path or a list, under the prefix, each a glob pattern
    expanded and sorted (dpgen2/conf/file_conf.py); written relative to the config."""
    import glob

    out: list[str] = []
    for name in [files] if isinstance(files, str) else files or []:
        pattern = str(paths.input_dir / (Path(prefix, name) if prefix else Path(name)))
        out += [paths(m) for m in sorted(glob.glob(pattern))]
    return out


def _alloy_file(entry: dict[str, Any], key: str, result: Dpgen2Import, paths: _Paths,
                where: tuple[int, list[str], int]) -> tuple[list[str], list[int | None]]:
    """One DPGEN2 alloy configuration generated into dpgen2-confs/stage-S-conf-I.extxyz."""
    import io

    import ase.io

    s, type_map, i = where
    frames = alloy_confs(entry, type_map, key, result, seed=1000 * s + i)
    if frames is None:
        return [], [0]
    text = io.StringIO()
    ase.io.write(text, frames, format="extxyz")
    name = f"{CONF_FILES}/stage-{s}-conf-{i}.extxyz"
    result.files[paths.out_dir / name] = text.getvalue()
    return [name], [len(frames)]


#: the folder of generated alloy configurations the importer writes next to the config
CONF_FILES = "dpgen2-confs"


def _unit_cell(crystal: str, a: float, element: str) -> Any:
    """DPGEN2's unit cells (dpgen2/conf/unit_cells.py) built with ASE: conventional cubic
    fcc, bcc and sc; the 2-atom hcp cell with a = the constant and ideal c/a; diamond as the
    primitive cell with vectors (0, a, a), (a, 0, a), (a, a, 0), i.e. conventional 2a."""
    from ase.build import bulk

    if crystal == "hcp":
        return bulk(element, "hcp", a=a, c=a * 2.0 * (2.0 / 3.0) ** 0.5)
    if crystal == "diamond":
        return bulk(element, "diamond", a=2.0 * a)
    return bulk(element, crystal, a=a, cubic=True)


def alloy_confs(entry: dict[str, Any], type_map: list[str], key: str, result: Dpgen2Import,
                seed: int = 0) -> list[Any] | None:
    """DPGEN2's AlloyConfGenerator, seeded: per conf, one composition drawn from the list
    (None: equal fractions), each atom's element drawn with those weights, then dpdata's
    perturb(1, cell_pert_frac, atom_pert_dist) as DPGEN2 calls it."""
    import dpdata
    import numpy as np

    lattice = entry.get("lattice")
    if not (isinstance(lattice, list) and len(lattice) == 2 and isinstance(lattice[1], int | float)
            and lattice[0] in ("fcc", "bcc", "hcp", "sc", "diamond")):
        result.error(f"{key}.lattice", f"{lattice!r}: expected [fcc|bcc|hcp|sc|diamond, lattice "
                     "constant] (a dpdata system as lattice is not mapped)")
        return None
    n = len(type_map)
    concentration = entry.get("concentration")
    choices = ([[1.0 / n] * n] if concentration is None else concentration
               if concentration and isinstance(concentration[0], list) else [concentration])
    if any(len(c) != n or min(c) < 0 or sum(c) <= 0 for c in choices):
        result.error(f"{key}.concentration", f"{concentration!r}: fractions (>= 0) per "
                     f"type_map element {type_map}, or a list of such")
        return None
    replicate = entry.get("replicate") or [1, 1, 1]
    cell = _unit_cell(lattice[0], float(lattice[1]), type_map[0]).repeat(
        [replicate] * 3 if isinstance(replicate, int) else replicate)
    rng = np.random.default_rng(seed)
    state = np.random.get_state()  # dpdata's perturb draws from numpy's global generator
    np.random.seed(seed)
    try:
        frames = []
        for _ in range(int(entry.get("numb_confs", 1))):
            weights = np.asarray(choices[rng.integers(len(choices))], dtype=float)
            system = dpdata.System(cell, fmt="ase/structure").perturb(
                1, float(entry.get("cell_pert_frac", 0.0)), float(entry.get("atom_pert_dist", 0.0)))
            atoms = system.to("ase/structure")[0]
            types = rng.choice(n, size=len(atoms), p=weights / weights.sum())
            atoms.set_chemical_symbols([type_map[t] for t in types])
            frames.append(atoms)
    finally:
        np.random.set_state(state)
    for extra in sorted(set(entry) - {"type", "lattice", "replicate", "numb_confs",
                                      "concentration", "atom_pert_dist", "cell_pert_frac"}):
        result.warn(f"{key}.{extra}", "not mapped")
    return frames


def _count_frames(path: Path, fmt: str) -> int | None:
    """Frames in a conf file, or None when it cannot be read here."""
    if not path.exists():
        return None
    try:
        from opshelf.core.ops.labelling import read_frames

        return len(read_frames(path, fmt))
    except Exception:  # any reader error: the mapping then needs the whole stage's confs
        return None


def normalize_group(group: dict[str, Any], key: str, result: Dpgen2Import) -> dict[str, Any]:
    """A DPGEN2 task group as DPGEN2 reads it: `lmp-npt` is `lmp-md`, aliases (`sys_idx`,
    `Ts`, `Ps`, `ensemble`, `t_freq`, `lmp`, ...) under their canonical names, DPGEN2's
    defaults filled in (lmp-md: ens nve, nsteps 100, dt 0.001 ps, tau_t 0.05 ps, ...). Two
    names of one key in a group are an error (DPGEN2 would keep one of them silently)."""
    out = _public(group)
    kind = {"lmp-npt": "lmp-md"}.get(out.get("type", "lmp-md"), out.get("type", "lmp-md"))
    out["type"] = kind
    aliases, defaults = {"lmp-md": (MD_ALIASES, MD_DEFAULTS),
                         "lmp-template": (TEMPLATE_ALIASES, TEMPLATE_DEFAULTS)}.get(kind, ({}, {}))
    for canonical, names in aliases.items():
        given = [n for n in (canonical, *names) if n in out]
        if len(given) > 1:
            result.error(f"{key}.{given[1]}", f"given with {given[0]!r}: two names of "
                         f"DPGEN2's {canonical!r}; keep one")
        if given:
            out[canonical] = out.pop(given[0])
            for extra in given[1:]:
                out.pop(extra)
    return {**defaults, **out}


def _md_group(group: dict[str, Any], key: str, result: Dpgen2Import) -> dict[str, Any]:
    """An opshelf-md `md` group computing what DPGEN2's lmp-md group computes."""
    ensemble = str(group["ens"]).lower()
    if ensemble not in ENSEMBLES:
        result.error(f"{key}.ens", f"{ensemble!r}: opshelf-md has nve, nvt and npt "
                     "(isotropic); DPGEN2's npt-a/npt-t (anisotropic/triclinic box) are not")
    temps = [float(t) for t in group.get("temps") or []]
    if not temps:
        result.error(f"{key}.temps", "missing (DPGEN2 requires it)")
    out: dict[str, Any] = {
        "kind": "md", "ensemble": ENSEMBLES.get(ensemble, "nve"), "temperatures_K": temps,
        "n_steps": int(group["nsteps"]), "timestep_fs": float(group["dt"]) * PS_IN_FS,
        "dump_every": int(group["trj_freq"]),
        "thermostat_tau_fs": float(group["tau_t"]) * PS_IN_FS,
        "barostat_tau_fs": float(group["tau_p"]) * PS_IN_FS}
    press = group.get("press")
    if ensemble == "npt":
        if not press:
            result.error(f"{key}.press", "missing: an npt group needs its pressures (bar)")
        else:
            out["pressures_GPa"] = [float(p) * BAR_IN_GPA for p in press]
    elif press and len(press) > 1:
        # DPGEN2 runs every (temperature, pressure) pair; without a barostat the pressure
        # is unused, so each temperature is run len(press) times with different seeds
        out["n_samples"] = len(press)
        result.warn(f"{key}.press", f"{len(press)} pressures in an {ensemble} group: DPGEN2 "
                    f"runs each temperature {len(press)} times (pressure unused): "
                    f"n_samples {len(press)}")
    for name, default in MD_UNSUPPORTED.items():
        if group.get(name, default) != default:
            result.error(f"{key}.{name}", f"{group[name]!r}: not supported by opshelf-md; "
                         "the exploration would differ")
    known = {"type", "conf_idx", "n_sample", *MD_DEFAULTS, "temps", "press", *MD_UNSUPPORTED}
    for extra in sorted(set(group) - known):
        result.error(f"{key}.{extra}", "not a DPGEN2 lmp-md key (DPGEN2 would ignore it): "
                     "check the spelling")
    return out


def _template_group(group: dict[str, Any], key: str, result: Dpgen2Import,
                    paths: _Paths) -> dict[str, Any]:
    template = group.get("lmp_template_fname")
    if not template:
        result.error(f"{key}.lmp_template_fname", "missing LAMMPS template")
    if group.get("plm_template_fname"):
        result.error(f"{key}.plm_template_fname", "PLUMED is not supported by opshelf-md")
    for extra in sorted(set(group) - {"type", "conf_idx", "n_sample", "lmp_template_fname",
                                      "plm_template_fname", *TEMPLATE_DEFAULTS}):
        result.error(f"{key}.{extra}", "not a DPGEN2 lmp-template key (DPGEN2 would ignore "
                     "it): check the spelling")
    # absolute: the exploration step reads it in its own folder (a path relative to the
    # config was not found there: measured in the chno example's first iteration)
    return {"kind": "lmp-template", "template": paths.resolved(template) if template else "",
            "revisions": group["revisions"], "dump_every": int(group["traj_freq"])}


def _group(group: dict[str, Any], offsets: dict[int, list[int]], used: list[int], key: str,
           result: Dpgen2Import, paths: _Paths, n_stage_confs: int | None,
           seed: int = 0) -> dict[str, Any]:
    group = normalize_group(group, key, result)
    idx = group.get("conf_idx") or []
    if group["type"] == "lmp-md":
        out = _md_group(group, key, result)
    elif group["type"] == "lmp-template":
        out = _template_group(group, key, result, paths)
    else:
        result.error(f"{key}.type", f"{group['type']!r}: opshelf maps lmp-md (lmp-npt) and "
                     "lmp-template groups")
        return {"kind": "md", "temperatures_K": [0.0]}
    confs = None if n_stage_confs is None else list(range(n_stage_confs))
    subset = bool(offsets) and set(idx) != set(used)
    if subset:
        if any(not offsets.get(i) for i in idx):
            result.error(f"{key}.conf_idx", "the group uses some of the stage's conf files "
                         "and they cannot be read here to count their frames")
        confs = [c for i in idx for c in offsets.get(i, [])]
        out["confs"] = confs
    drawn = _n_sample(group.get("n_sample"), confs, key, result, seed)
    if drawn is not None:
        out["confs"] = drawn
    return out


def dpgen2_draws(n_confs: int, n_sample: int, n_calls: int, seed: int) -> list[list[int]]:
    """The conf indices DPGEN2 draws for a task group in `n_calls` calls of its make_task:
    ConfSamplingTaskGroup._sample_confs with random_sample=True (entrypoint/submit.py): a
    queue refilled with a shuffled copy of the conf list whenever empty, `n_sample` popped
    per call (so a draw repeats confs only when it runs past the end of a shuffled copy).
    DPGEN2 shuffles with Python's unseeded `random`; here a seeded random.Random."""
    import random

    rng = random.Random(seed)
    queue: list[int] = []
    draws = []
    for _ in range(n_calls):
        draw = []
        for _ in range(n_sample):
            if not queue:
                refill = list(range(n_confs))
                rng.shuffle(refill)
                queue.extend(refill)
            draw.append(queue.pop(0))
        draws.append(draw)
    return draws


def _n_sample(n_sample: int | None, confs: list[int] | None, key: str,
              result: Dpgen2Import, seed: int) -> list[int] | None:
    """DPGEN2's n_sample: the confs its first iteration explores (None: every conf). DPGEN2
    draws at submission (make_task, its tasks then dropped) and again each iteration; the
    first iteration's draw is written here, and explored by every iteration of the stage:
    opshelf's stage has one conf list (no redraw per iteration), said in a warning."""
    if n_sample is None:
        return None
    if not isinstance(n_sample, int) or n_sample < 1:
        result.error(f"{key}.n_sample", f"{n_sample!r}: a whole number >= 1")
        return None
    if confs is None:
        result.error(f"{key}.n_sample", f"{n_sample}: the group's confs cannot be counted "
                     "here (their files are missing or unreadable), so DPGEN2's draw cannot "
                     "be made (make the conf files readable, or remove n_sample)")
        return None
    _, first = dpgen2_draws(len(confs), n_sample, 2, seed)
    if n_sample == len(confs):
        return None  # a whole shuffled copy: every conf once, as without n_sample
    drawn = [confs[i] for i in first]
    shown = drawn if len(drawn) <= 12 else f"[{', '.join(map(str, drawn[:12]))}, ...]"
    result.warn(f"{key}.n_sample", f"{n_sample} of the group's {len(confs)} confs drawn "
                f"here as DPGEN2 draws its first iteration's (seed {seed}): conf indices "
                f"{shown} in the group's confs; DPGEN2 draws the next {n_sample} of its "
                "shuffled queue every iteration, opshelf explores these same confs in every "
                "iteration of the stage")
    return drawn


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
        settings["incar_file"] = paths.resolved(inputs["incar"])
    else:
        result.error(f"{where}.incar", "missing")
    if "kspacing" in inputs:
        if isinstance(inputs["kspacing"], list):
            result.error(f"{where}.kspacing", "one spacing per direction is not supported")
        else:
            settings["kspacing_per_A"] = float(inputs["kspacing"])
    settings["gamma_centered"] = bool(inputs.get("kgamma", True))
    pp_files = inputs.get("pp_files") or {}
    missing = sorted(set(type_map) - set(pp_files))
    if pp_files and missing:
        result.error(f"{where}.pp_files", f"no POTCAR for {missing}")
    if pp_files:
        settings.update(_potcar_library(pp_files, result, paths))
    for key in sorted(set(inputs) - {"incar", "kspacing", "kgamma", "pp_files"}):
        result.warn(f"{where}.{key}", "not mapped")
    return settings


#: the folder of POTCAR links the importer makes next to the config when DPGEN2's pp_files
#: are not laid out as a library
POTCAR_LINKS = "dpgen2-potcars"


def _potcar_library(pp_files: dict[str, str], result: Dpgen2Import, paths: _Paths
                    ) -> dict[str, Any]:
    """potcar_dir (+ potcar_variants): opshelf-fp reads <potcar_dir>/<variant>/POTCAR. Files
    already laid out so are used in place; other per-element files (POTCAR.Al, Al/POTCAR_pv,
    ...) get a library of links next to the config, one <element>/POTCAR each."""
    files = {el: Path(paths.resolved(p)) for el, p in pp_files.items()}
    absent = sorted(str(f) for f in files.values() if not f.is_file())
    if absent:
        result.error("fp.inputs_config.pp_files", f"not found: {absent}")
        return {}
    libraries = {f.parent.parent for f in files.values()}
    if len(libraries) == 1 and all(f.name == "POTCAR" for f in files.values()):
        variants = {el: f.parent.name for el, f in files.items() if f.parent.name != el}
        return {"potcar_dir": str(libraries.pop()),
                **({"potcar_variants": variants} if variants else {})}
    library = paths.out_dir / POTCAR_LINKS
    for element, target in files.items():
        result.links[library / element / "POTCAR"] = target
    result.warn("fp.inputs_config.pp_files", f"per-element POTCAR files: linked as "
                f"{library}/<element>/POTCAR (opshelf-fp's library layout)")
    return {"potcar_dir": str(library)}


def _fp_cp2k(inputs: dict[str, Any], result: Dpgen2Import, paths: _Paths,
             type_map: list[str]) -> dict[str, Any]:
    """fpop's CP2K input: `inp_file` as it is, with `@INCLUDE CELL_PARAMETER` (inside &CELL)
    and `@INCLUDE coord.xyz` (inside &COORD) where fpop writes each frame; opshelf's cp2k
    engine takes {{CELL}}/{{COORD}} placeholders instead, so such an input is converted into
    a template written next to the config. An input with the placeholders is used as it is."""
    where = "fp.inputs_config"
    name = inputs.get("inp_file")
    for key in sorted(set(inputs) - {"inp_file"}):
        result.error(f"{where}.{key}", "not mapped (fpop's cp2k input is inp_file alone)")
    if not name:
        result.error(f"{where}.inp_file", "missing")
        return {}
    path = Path(paths.resolved(name))
    if not path.is_file():
        result.error(f"{where}.inp_file", f"not found: {path}")
        return {}
    text = path.read_text()
    if "{{CELL}}" in text and "{{COORD}}" in text:
        return {"template": str(path)}
    converted = fpop_cp2k_template(text)
    if converted is None:
        result.error(f"{where}.inp_file", f"{name}: neither fpop's '@INCLUDE CELL_PARAMETER' "
                     "in &CELL and '@INCLUDE coord.xyz' in &COORD nor opshelf's {{CELL}} and "
                     "{{COORD}} placeholders inside &SUBSYS")
        return {}
    out = paths.out_dir / f"{path.stem}.opshelf{path.suffix or '.inp'}"
    result.files[out] = converted
    result.warn(f"{where}.inp_file", f"fpop's @INCLUDE CELL_PARAMETER / coord.xyz replaced "
                f"by opshelf's {{{{CELL}}}} / {{{{COORD}}}} placeholders in {out}")
    return {"template": str(out)}


def fpop_cp2k_template(text: str) -> str | None:
    """fpop's CP2K input -> the same with its &CELL block (`@INCLUDE CELL_PARAMETER`, and at
    most `PERIODIC XYZ`, which opshelf's block writes too) replaced by {{CELL}} and its &COORD
    block (`@INCLUDE coord.xyz` alone) by {{COORD}}; None when it is not that."""
    blocks = {"CELL": ({"@INCLUDE CELL_PARAMETER", "PERIODIC XYZ"}, "@INCLUDE CELL_PARAMETER"),
              "COORD": ({"@INCLUDE coord.xyz"}, "@INCLUDE coord.xyz")}
    for section, (allowed, needed) in blocks.items():
        pattern = re.compile(rf"^[ \t]*&{section}\b[^\n]*\n(.*?)^[ \t]*&END[ \t]+{section}\b"
                             r"[^\n]*$", re.MULTILINE | re.DOTALL | re.IGNORECASE)
        found = list(pattern.finditer(text))
        if len(found) != 1:
            return None
        body = {" ".join(line.split("#", 1)[0].split()).upper()
                for line in found[0].group(1).splitlines()} - {""}
        if body - {a.upper() for a in allowed} or needed.upper() not in body:
            return None
        text = text[:found[0].start()] + "{{" + section + "}}" + text[found[0].end():]
    return text


def _fp_abacus(inputs: dict[str, Any], result: Dpgen2Import, paths: _Paths,
               type_map: list[str]) -> dict[str, Any]:
    where = "fp.inputs_config"
    settings: dict[str, Any] = {}
    pp_files = inputs.get("pp_files") or {}
    if not pp_files:
        result.error(f"{where}.pp_files", "missing")
    dirs = {str(Path(paths.resolved(p)).parent) for p in pp_files.values()}
    if len(dirs) > 1:
        result.error(f"{where}.pp_files", f"pseudopotentials in several folders {sorted(dirs)}; "
                     "opshelf's abacus engine reads them from one pseudo_dir")
    if pp_files:
        settings["pseudo_dir"] = dirs.pop()
        settings["pseudopotentials"] = {el: Path(p).name for el, p in pp_files.items()}
    orbitals = inputs.get("orb_files") or {}
    if orbitals:
        settings["orbital_dir"] = str(Path(paths.resolved(next(iter(orbitals.values())))).parent)
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


def write_import_files(files: dict[Path, str], links: dict[Path, Path]) -> None:
    """Write the converted files and links a config needs (Dpgen2Import.files/links); an
    existing link to the same target is kept, anything else in the way is an error."""
    from opshelf.core.errors import UserError

    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for link, target in links.items():
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        if link.exists() or link.is_symlink():
            raise UserError(f"{link} exists and is not a link to {target}: move it away")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
