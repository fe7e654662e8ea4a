"""Bad input never gets past the door (issue 19): a corpus of bad inputs through every command.

Each case runs `opshelf.core.cli.main` in this process (one Python process, many inputs: the
corpus stays fast) and asserts the contract of every entry point:

- exit status 2, and stderr is one `opshelf: error: ...` message (no traceback);
- the message names what is wrong: the key, or the file;
- nothing was written: the case's folder (inputs, runs dir, output path) is byte for byte as
  it was, and no run was launched (launching fails the test).

The inputs are the classes of issue 19 (binary and non-UTF-8 files, empty and damaged run
records, nonsense numbers, empty or impossible structures, path tricks, absurd names, a DPGEN2
file whose top level is a list) applied to every command that reads them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import py_compile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from opshelf.core.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: the workflows' own example configs: each case breaks one thing in a copy of one
BASE = {"label": EXAMPLES / "label-cu-emt" / "config.yaml",
        "alloy": EXAMPLES / "cu-eam" / "config.yaml",
        "cl": EXAMPLES / "cu-emt" / "config.yaml",
        "lameval": EXAMPLES / "lameval-emt-chgnet-sevennet" / "config.yaml"}


@dataclass(frozen=True)
class Case:
    """One bad input: `make(folder)` writes the inputs and returns argv; every string of
    `expect` must appear in the error message."""

    id: str
    make: Callable[[Path], list[str]]
    expect: tuple[str, ...]


def _config(workflow: str, folder: Path, change: Callable[[dict[str, Any]], None],
            name: str = "config.yaml") -> Path:
    data = yaml.safe_load(BASE[workflow].read_text(encoding="utf-8"))
    change(data)
    for extra in ("init-data.extxyz",):  # cl's init_data, relative to the config
        source = BASE[workflow].parent / extra
        if source.is_file():
            (folder / extra).write_bytes(source.read_bytes())
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _setter(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set `a.b[0].c` (list indices as numbers between dots) to `value` in a config dict."""
    def change(data: dict[str, Any]) -> None:
        parts = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        node: Any = data
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = copy.deepcopy(value)
    return change


def _run_argv(workflow: str, path: Path, folder: Path, command: str) -> list[str]:
    if command == "run":
        return ["run", workflow, str(path), "--runs-dir", str(folder / "runs")]
    return ["export-argo", workflow, str(path), "-o", str(folder / "wf.yaml")]


def value_cases() -> list[Case]:
    """Nonsense numbers (and a few other values) in each workflow's config, through `run`
    and `export-argo`: the message names the key (and the value where it is a number)."""
    wrong: dict[str, list[tuple[str, Any, str]]] = {
        "label": [
            ("generate.n_frames", 1.0e12, "1000000000000"), ("generate.n_frames", 0, "n_frames"),
            ("generate.n_frames", -5, "-5"),
            ("generate.lattice_constant_A", 0.1, "0.1"),
            ("generate.lattice_constant_A", 0.359, "0.359"),
            ("generate.lattice_constant_A", float("inf"), "inf"),
            ("generate.lattice_constant_A", float("nan"), "nan"),
            ("generate.lattice_constant_A", -3.59, "-3.59"),
            ("generate.lattice_constant_A", 1.0e6, "1000000"),
            ("generate.supercell", [0, 2, 2], "supercell[0]"),
            ("generate.supercell", [2, -1, 2], "supercell[1]"),
            ("generate.supercell", [1000, 1, 1], "1000"), ("generate.supercell", [2, 2], "supercell"),
            ("generate.rattle_A", 100.0, "rattle_A"), ("generate.rattle_A", -0.1, "rattle_A"),
            ("generate.random_strain", 5.0, "random_strain"),
            ("generate.seed", -1, "seed"), ("generate.element", 42, "element"),
            ("min_success_ratio", 2.0, "min_success_ratio"),
            ("min_success_ratio", float("nan"), "min_success_ratio"),
            ("engine.profile", {"timeout_s": float("inf")}, "timeout_s"),
            ("engine.profile", {"timeout_s": 0}, "timeout_s"),
            ("engine.profile", {"timeout_s": -5}, "timeout_s"),
            ("engine.profile", {"threads": 0}, "threads"),
            ("engine.name", "no-such-engine", "no-such-engine"),
            ("engine", {"name": "cp2k", "settings": {"cutoff_Ry": 1.0e9}}, "cutoff_Ry"),
            ("engine", {"name": "qe", "settings": {"kpoints": [0, 4, 4]}}, "kpoints"),
            ("steps.default", {"pool_size": 0}, "pool_size"),
            ("steps.default", {"pool_size": -2}, "pool_size"),
            ("steps.default", {"timeout_s": float("inf")}, "timeout_s"),
            ("steps.default", {"retries": -1}, "retries"),
            ("steps.default", {"retries": 1.0e9}, "retries"),
            ("steps.default", {"group_size": 0}, "group_size"),
            ("steps.default", {"executor": {"kind": "dispatcher", "machine": {},
                                            "poll_interval_s": float("inf")}}, "poll_interval_s"),
            ("task", {"kind": "md", "md": {"temperature_K": 1.0e9}}, "temperature_K"),
            ("task", {"kind": "md", "md": {"temperature_K": -100}}, "temperature_K"),
            ("task", {"kind": "md", "md": {"temperature_K": 0}}, "temperature_K"),
            ("task", {"kind": "md", "md": {"n_steps": 0}}, "n_steps"),
            ("task", {"kind": "md", "md": {"timestep_fs": 100}}, "timestep_fs"),
            ("task", {"kind": "md", "md": {"pressure_GPa": 1.0e9}}, "pressure_GPa"),
            ("task", {"kind": "relax", "relax": {"fmax_eV_per_A": 0}}, "fmax_eV_per_A"),
            ("task", {"kind": "relax", "relax": {"max_steps": 1.0e12}}, "max_steps"),
            ("task", {"kind": "teleport"}, "kind"),
            ("no_such_key", 1, "no_such_key"),
            # fp thresholds, smearing, orbitals, charge, k points (core.bounds' ranges)
            ("engine", {"name": "cp2k", "settings": {"eps_scf": 1.0}}, "eps_scf"),
            ("engine", {"name": "cp2k", "settings": {"eps_default": 0.1}}, "eps_default"),
            ("engine", {"name": "cp2k", "settings": {"smearing_K": 1.0e7}}, "smearing_K"),
            ("engine", {"name": "cp2k", "settings": {"added_mos": -1}}, "added_mos"),
            ("engine", {"name": "cp2k", "settings": {"max_scf": 0}}, "max_scf"),
            ("engine", {"name": "cp2k", "settings": {"charge": 1000}}, "charge"),
            ("engine", {"name": "qe", "settings": {"degauss_Ry": 2.0}}, "degauss_Ry"),
            ("engine", {"name": "qe", "settings": {"conv_thr_Ry": 1.0}}, "conv_thr_Ry"),
            ("engine", {"name": "qe", "settings": {"kpoint_shift": [2, 0, 0]}}, "kpoint_shift"),
            ("engine", {"name": "qe", "settings": {"kspacing_per_A": 100}}, "kspacing_per_A"),
            ("engine", {"name": "qe", "settings": {"ecutrho_Ry": 1.0e9}}, "ecutrho_Ry"),
            ("engine", {"name": "lammps", "settings": {
                "potential": {"style": "eam", "files": {"Cu": "Cu_u3.eam"}},
                "neighbor_skin_A": 100.0}}, "neighbor_skin_A"),
            ("task", {"kind": "md", "md": {"thermostat_tau_fs": 0}}, "thermostat_tau_fs"),
            ("task", {"kind": "md", "md": {"dump_every": 0}}, "dump_every"),
            ("steps.default", {"group_size": 10**9}, "group_size"),
        ],
        "alloy": [
            ("structures.0.generate.lattice_constant_A", 0.1, "lattice_constant_A"),
            ("structures.0.generate.lattice_constant_A", 0.359, "0.359"),
            ("structures.0.generate.supercell", [0, 1, 1], "supercell"),
            ("properties.2.supercell", [0, 4, 4], "supercell"),
            ("properties.5.supercell", [-3, 3, 3], "supercell"),
            ("properties.5", {"type": "phonon", "temperatures_K": [1000, 0, -100]},
             "temperatures_K"),
            ("properties.5", {"type": "phonon", "temperatures_K": [1000, 0, 100]},
             "temperatures_K"),
            ("properties.5", {"type": "phonon", "mesh": [0, 20, 20]}, "mesh"),
            ("properties.0", {"type": "eos", "volume_ratio_min": 0.01}, "volume_ratio_min"),
            ("properties.0", {"type": "eos", "n_points": 1.0e12}, "n_points"),
            ("relax", {"relax_cell": True, "pressure_GPa": float("inf")}, "pressure_GPa"),
            ("relax", {"relax_cell": True, "max_steps": 0}, "max_steps"),
            # LAMMPS settings and alloy compositions
            ("interactions.0.lammps.neighbor_skin_A", 100.0, "neighbor_skin_A"),
            ("interactions.0.lammps.relax_max_evaluations", 0, "relax_max_evaluations"),
            ("interactions.0.lammps.relax_etol", 2.0, "relax_etol"),
            ("structures.0.generate.substitution", {"fractions": {"Au": 25}}, "fractions"),
            ("structures.0.generate.substitution", {"fractions": {"Au": -0.1}}, "fractions"),
            ("structures.0.generate.substitution", {"fractions": {"Au": 0.6, "Ag": 0.6}},
             "fractions"),
        ],
        "cl": [
            ("explore.stages.0.groups.0.temperatures_K", [-100], "temperatures_K"),
            ("explore.stages.0.groups.0.temperatures_K", [1.0e9], "temperatures_K"),
            ("explore.stages.0.groups.0.n_steps", 0, "n_steps"),
            ("explore.stages.0.groups.0.timestep_fs", float("inf"), "timestep_fs"),
            ("explore.stages.0.confs.generate.lattice_constant_A", 0.359, "lattice_constant_A"),
            ("explore.stages.0.confs.generate.supercell", [0, 2, 2], "supercell"),
            ("select.trust.f_hi", -1.0, "f_hi"),
            ("select.trust.f_hi", float("nan"), "f_hi"),
            ("seed", -1, "seed"), ("max_iterations", 0, "max_iterations"),
            ("train.numb_models", 1, "numb_models"),
            ("init_data.0.path", "missing.extxyz", "missing.extxyz"),
            ("train.template.model.descriptor.rcutt", 4.0, "rcutt"),
            ("train.template.training.numb_step", 100, "numb_step"),
            ("type_map", ["Al"], "type_map"),
            ("type_map", ["Cu", "Cu"], "type_map"),
            ("explore.stages.0.groups.0.dump_every", 0, "dump_every"),
            ("explore.stages.0.groups.0.thermostat_tau_fs", 0, "thermostat_tau_fs"),
            ("explore.settings", {"neighbor_skin_A": 100.0}, "neighbor_skin_A"),
            ("explore.stages.0.confs.generate.substitutions",
             [{"replace": "Cu", "by": {"Au": 1.5}}], "by"),
            ("explore.stages.0.confs.generate.substitutions",
             [{"replace": "Cu", "by": {"Au": 0.6, "Ag": 0.6}}], "by"),
            ("fp.engine", {"name": "cp2k", "settings": {"eps_scf": 1.0}}, "eps_scf"),
            ("select.trust.v_hi", 1.0e9, "v_hi"),
            ("fp.max_energy_deviation_eV_per_atom", -1.0, "max_energy_deviation_eV_per_atom"),
        ],
        "lameval": [
            ("tasks.md.temperature_K", 1.0e9, "temperature_K"),
            ("tasks.md.temperature_K", -600, "temperature_K"),
            ("tasks.efficiency.supercells", [[0, 2, 2]], "supercells"),
            ("tasks.md.timestep_fs", float("inf"), "timestep_fs"),
        ],
    }
    cases = []
    for workflow, changes in wrong.items():
        for key, value, expect in changes:
            for command in ("run", "export-argo"):
                def make(folder: Path, workflow: str = workflow, key: str = key,
                         value: Any = value, command: str = command) -> list[str]:
                    path = _config(workflow, folder, _setter(key, value))
                    return _run_argv(workflow, path, folder, command)
                cases.append(Case(f"{command}-{workflow}-{key}={value!r}", make, (expect,)))
    return cases


#: broken files: (name, content); the message names the file
BROKEN_FILES: list[tuple[str, bytes]] = [
    ("binary.yaml", b"\x00\x01\xff\xfe\x89PNG\r\n"),
    ("latin1.yaml", "element: Cu\u00e9\n".encode("latin-1")),
    ("list.yaml", b"- 1\n- 2\n"),
    ("scalar.yaml", b"just a string\n"),
    ("broken.yaml", b"a: [1, 2\nb: }\n"),
    ("nul.yaml", b"a: 1\x00\n"),
    ("utf16.yaml", "a: 1\n".encode("utf-16")),
]


def file_cases() -> list[Case]:
    """Every command that reads a config or input file, given a broken, missing or
    directory path."""
    readers: dict[str, Callable[[Path, Path], list[str]]] = {
        f"run-{wf}": (lambda p, f, wf=wf: ["run", wf, str(p), "--runs-dir", str(f / "runs")])
        for wf in BASE}
    readers.update({
        f"export-argo-{wf}": (lambda p, f, wf=wf: ["export-argo", wf, str(p), "-o",
                                                   str(f / "wf.yaml")])
        for wf in ("label", "alloy", "cl")})
    readers["cl-import-dpgen2"] = lambda p, f: ["cl", "import-dpgen2", str(p), "-o",
                                                str(f / "out.yaml")]
    readers["alloy-import-apex"] = lambda p, f: ["alloy", "import-apex", str(p), "-o",
                                                 str(f / "out.yaml")]
    cases = []
    for reader, argv in readers.items():
        for name, content in BROKEN_FILES:
            def make(folder: Path, name: str = name, content: bytes = content,
                     argv: Callable[[Path, Path], list[str]] = argv) -> list[str]:
                path = folder / name
                path.write_bytes(content)
                return argv(path, folder)
            cases.append(Case(f"{reader}-{name}", make, (name,)))
        cases.append(Case(f"{reader}-missing", lambda f, argv=argv: argv(f / "nope.yaml", f),
                          ("nope.yaml",)))
        cases.append(Case(f"{reader}-directory", lambda f, argv=argv: argv(
            _mkdir(f / "a-folder.yaml"), f), ("a-folder.yaml",)))
    return cases


def _run_dir(folder: Path, record: bytes | None) -> Path:
    run = folder / "runs" / "broken-run"
    run.mkdir(parents=True)
    if record is not None:
        (run / "run.json").write_bytes(record)
    return run


def run_cases() -> list[Case]:
    """Commands on an existing run, given a run that is not there or whose record is
    empty, binary or damaged."""
    records: list[tuple[str, bytes | None, str]] = [
        ("no-record", None, "broken-run"), ("empty", b"", "run.json"),
        ("binary", b"\xff\xfe\x00\x01", "run.json"), ("list", b"[1, 2]", "run.json"),
        ("no-keys", b"{}", "run.json"), ("wrong-type", b'{"workflow": 5}', "run.json"),
    ]
    cases = []
    for command in ("status", "resume", "report", "rerun", "stop", "logs"):
        for label, record, expect in records if command != "logs" else ():
            def make(folder: Path, command: str = command,
                     record: bytes | None = record) -> list[str]:
                _run_dir(folder, record)
                extra = [str(BASE["label"])] if command == "rerun" else []
                return [command, "broken-run", *extra, "--runs-dir", str(folder / "runs")]
            cases.append(Case(f"{command}-{label}", make, (expect,)))
        cases.append(Case(f"{command}-unknown-run", lambda f, command=command: [
            command, "no-such-run", *([str(BASE["label"])] if command == "rerun" else []),
            "--runs-dir", str(f / "runs")], ("no-such-run",)))
        cases.append(Case(f"{command}-path-escape", lambda f, command=command: [
            command, "../../etc/passwd", *([str(BASE["label"])] if command == "rerun" else []),
            "--runs-dir", str(f / "runs")], ("passwd",)))
    # logs of the driver reads no run.json (a run without a driver log yet); of a step it does
    cases.append(Case("logs-no-driver-log", lambda f: [
        "logs", str(_run_dir(f, b"{}")), "--runs-dir", str(f / "runs")], ("no driver log",)))
    cases.append(Case("logs-step-of-a-damaged-run", lambda f: [
        "logs", str(_run_dir(f, b"{}")), "no-such-step", "--runs-dir", str(f / "runs")],
        ("run.json",)))
    cases.append(Case("logs-negative-tail", lambda f: [
        "logs", str(_run_dir(f, b"{}")), "--tail", "-3", "--runs-dir", str(f / "runs")],
        ("--tail",)))
    cases.append(Case("stop-negative-grace", lambda f: [
        "stop", str(_run_dir(f, b"{}")), "--grace", "-1", "--runs-dir", str(f / "runs")],
        ("--grace",)))
    cases.append(Case("runs-dir-is-a-file", lambda f: [
        "runs", "--runs-dir", str(_write(f / "runs", b"not a folder"))], ("runs",)))
    return cases


def _toy_package(folder: Path) -> Path:
    package = folder / "toy"
    module = package / "src" / "opshelf" / "toy"
    module.mkdir(parents=True)
    (package / "tests").mkdir()
    (package / "pyproject.toml").write_text(
        '[project]\nname = "opshelf-toy"\nversion = "0.1.0"\n'
        '[project.entry-points."opshelf.ops"]\n', encoding="utf-8")
    (module / "__init__.py").write_text('"""A toy package."""\n', encoding="utf-8")
    return package


def other_cases() -> list[Case]:
    """Workflow references, scaffold names, the DPGEN2 and APEX importers, the runs dir."""
    cases = []
    for ref, expect in [("../../etc/passwd:X", "passwd"), ("no-such-workflow", "no-such"),
                        ("os:system", "os:system"), ("a:b:c", "a:b:c"),
                        ("json:JSONDecoder", "json:JSONDecoder"), (":", "':'")]:
        cases.append(Case(f"run-workflow-{ref}", lambda f, ref=ref: [
            "run", ref, str(BASE["label"]), "--runs-dir", str(f / "runs")], (expect,)))
        cases.append(Case(f"schema-{ref}", lambda f, ref=ref: ["schema", ref], (expect,)))
        cases.append(Case(f"export-argo-workflow-{ref}", lambda f, ref=ref: [
            "export-argo", ref, str(BASE["label"]), "-o", str(f / "wf.yaml")], (expect,)))
    for command in ("new-op", "new-engine"):
        for name, expect in [("x" * 5000, "5000 characters"), ("1abc", "1abc"), ("", "''"),
                             ("a b", "a b"), ("../evil", "../evil"), ("test", "test"),
                             ("count--atoms", "count--atoms")]:
            cases.append(Case(f"{command}-{name[:20]}", lambda f, c=command, n=name: [
                c, str(_toy_package(f)), n], (expect,)))
        cases.append(Case(f"{command}-no-package", lambda f, c=command: [
            c, str(f / "nowhere"), "count-atoms"], ("nowhere",)))
    cases += [
        Case("export-argo-output-is-input", lambda f: [
            "export-argo", "label", str(_config("label", f, lambda d: None)), "-o",
            str(f / "config.yaml")], ("config.yaml",)),
        Case("import-dpgen2-output-is-input", lambda f: [
            "cl", "import-dpgen2", str(_write(f / "in.json", b'{"inputs": {}}')), "-o",
            str(f / "in.json")], ("in.json",)),
        Case("run-env-reference-unset", lambda f: _with_machine(f, {"password": {
            "env": "OPSHELF_CORPUS_NEVER_SET"}}), ("remote_profile.password",
                                                   "OPSHELF_CORPUS_NEVER_SET", "not set")),
        Case("run-env-reference-not-in-remote-profile", lambda f: _with_machine(
            f, {}, resources={"envs": {"HF_TOKEN": {"env": "HOME"}}}), ("resources.envs",)),
        Case("run-env-reference-bad-name", lambda f: _with_machine(f, {"password": {
            "env": "1 x"}}), ("remote_profile.password", "no environment variable name")),
        Case("import-dpgen2-no-sections", lambda f: [
            "cl", "import-dpgen2", str(_write(f / "in.json", b'{"name": "x"}'))],
            ("inputs", "in.json")),
        Case("import-dpgen2-section-a-list", lambda f: [
            "cl", "import-dpgen2", str(_write(f / "in.json", b'{"inputs": [], "train": [], '
                                              b'"explore": [], "fp": []}'))], ("inputs",)),
        Case("import-apex-empty-object", lambda f: [
            "alloy", "import-apex", str(_write(f / "param.json", b"{}"))], ("structures",)),
        Case("run-runs-dir-unwritable", lambda f: [
            "run", "label", str(BASE["label"]), "--runs-dir", str(_unwritable(f))],
            ("locked-runs",)),
        Case("run-runs-dir-under-a-file", lambda f: [
            "run", "label", str(BASE["label"]), "--runs-dir",
            str(_write(f / "afile", b"x") / "runs")], ("afile",)),
        Case("run-alloy-empty-structure-file", lambda f: _alloy_with_file(f, b""),
             ("empty.xyz",)),
        Case("run-alloy-overlapping-atoms", lambda f: _alloy_with_file(f, _XYZ.format(
            cell="3 0 0 0 3 0 0 0 3", atoms="Cu 0 0 0\nCu 0 0 0.1").encode()),
            ("empty.xyz", "apart")),
        Case("run-alloy-zero-volume-cell", lambda f: _alloy_with_file(f, _XYZ.format(
            cell="3 0 0 0 3 0 0 0 0", atoms="Cu 0 0 0\nCu 1.5 1.5 0").encode()),
            ("empty.xyz", "volume")),
        Case("run-alloy-flat-cell", lambda f: _alloy_with_file(f, _XYZ.format(
            cell="3 0 0 3 0 0 0 0 3", atoms="Cu 0 0 0\nCu 1.5 0 1.5").encode()),
            ("empty.xyz", "volume")),
    ]
    return cases


def _with_machine(folder: Path, profile: dict[str, Any],
                  resources: dict[str, Any] | None = None) -> list[str]:
    """`run label` with a dispatcher machine whose remote_profile is `profile`."""
    machine = {"batch_type": "Shell", "context_type": "LocalContext",
               "remote_root": str(folder / "remote"), "remote_profile": profile}
    executor = {"kind": "dispatcher", "machine": machine, "resources": resources or {}}
    path = _config("label", folder, _setter("steps", {"run-task": {"executor": executor}}))
    return ["run", "label", str(path), "--runs-dir", str(folder / "runs")]


_XYZ = ('2\nLattice="{cell}" Properties=species:S:1:pos:R:3 pbc="T T T"\n{atoms}\n')


def _unwritable(folder: Path) -> Path:
    """A runs dir this user cannot create: under a read-only folder, or for root (who may
    write anywhere) under /sys, where mkdir is refused (EPERM) even to root."""
    if os.geteuid() == 0:
        return Path("/sys/locked-runs")
    locked = _mkdir(folder / "ro")
    locked.chmod(0o555)
    return locked / "locked-runs"


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _alloy_with_file(folder: Path, content: bytes) -> list[str]:
    _write(folder / "empty.xyz", content)
    path = _config("alloy", folder, _setter("structures", [{"name": "cu", "file": "empty.xyz"}]))
    return ["run", "alloy", str(path), "--runs-dir", str(folder / "runs")]


CORPUS = value_cases() + file_cases() + run_cases() + other_cases()


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(autouse=True)
def _no_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad input that reached the launch would start a real run: fail instead."""
    from opshelf.core.local import runner

    def launch(*_args: object, **_kwargs: object) -> int:
        pytest.fail("a bad input got past the checks: the run was launched")

    monkeypatch.setattr(runner, "launch", launch)


def test_the_corpus_is_large_and_its_ids_unique() -> None:
    assert len(CORPUS) >= 150, len(CORPUS)
    assert len({c.id for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id[:80])
def test_bad_input_exits_2_with_one_line_naming_it_and_writes_nothing(
        case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    monkeypatch.chdir(folder)
    argv = case.make(folder)
    before = _snapshot(folder)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors exit 2 as well
            code = exc.code
    message = err.getvalue()
    assert code == 2, f"exit {code}; stderr:\n{message}"
    assert "Traceback" not in message, message
    # warnings may come first (import-dpgen2); then one error, or argparse's usage error
    errors = [line for line in message.splitlines() if line.startswith("opshelf: error: ")]
    assert len(errors) == 1 or "usage: " in message, message
    for expect in case.expect:
        assert expect in message, f"{expect!r} not in the message: {message}"
    assert _snapshot(folder) == before, "a refused input left files behind"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml", b"\xff\xfe")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["--debug", "run", "label", str(bad), "--runs-dir", str(tmp_path)]) == 2
    assert "Traceback" in err.getvalue() and "bad.yaml" in err.getvalue()


def test_new_op_named_after_a_keyword_writes_modules_that_compile(tmp_path: Path) -> None:
    package = _toy_package(tmp_path)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["new-op", str(package), "class"]) == 0
    written = sorted(package.rglob("*.py"))
    assert any(p.name == "class_.py" for p in written), written
    for path in written:
        py_compile.compile(str(path), doraise=True)
