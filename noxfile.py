"""Nox sessions of the opshelf monorepo (`./dev` bootstraps a venv holding nox, then calls these).

Sessions are discovered from the tree, so a new package gets its session without editing this file:

- ``tests-<short>``: one per package under packages/ and workflows/. Its venv holds ONLY that package
  (built as a wheel, like ``pip install opshelf-<pkg>``), the local packages it depends on and its
  ``test`` extra; pytest runs the package's tests/. This is the proof that a package installs alone.
- ``integration``: every package installed (editable), pytest over the root tests/.
- ``lint``: ruff over the repo, the layout rules, no hand-written step key
  (``f"{block}--{step}"``, ``"--".join``, a split or ``re`` pattern at ``--``: see
  scripts/step_key_check.py) outside ``opshelf.core.keys``, and import-linter with contracts
  generated from the packages present: core <- OP packages <- workflows, siblings independent,
  no import cycle in a package.
- ``docs`` (reference pages generated from the code, then mkdocs build --strict), ``bench``
  (benchmarks/*.py in the dev venv), ``demo`` (``./dev demo``).
- ``build`` (every package's wheel, each installed alone in a fresh venv, every module imported),
  ``changelog`` (a package changed without a CHANGELOG.md entry fails; ``-- --base REF``).

Each package declares its session name and local dependencies in its pyproject.toml::

    [tool.opshelf]
    short-name = "fp"        # -> session tests-fp (default: the directory name)
    local-deps = ["core"]    # local packages it depends on, by short name (default: none)

Session venvs are reused while their inputs are unchanged: a stamp in each venv records the hash
of the pyproject.toml files it was built from (a change rebuilds the venv from scratch) and of the
package sources (a change reinstalls just the local packages).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import nox
import nox.command
import nox.project
import nox.virtualenv
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).resolve().parent
ROOT_PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
DEV_VENV = ROOT / ".venv"
STAMP_NAME = ".opshelf-inputs.json"
# Bump to rebuild every session venv (e.g. after changing how sessions install packages).
INSTALL_RECIPE = "2"
# Environment variables the test sessions pass on to pytest explicitly (nox inherits the rest).
PASSED_ENV = ("OPSHELF_REQUIRE_ENGINES",)
# Files and folders of a package that do not go into its wheel: not part of its source hash.
NOT_SOURCE = {"tests", "__pycache__", "build", "dist", ".pytest_cache", ".ruff_cache"}

OPSHELF_KEYS = ("short-name", "local-deps")  # the keys of a package's [tool.opshelf] table

Layer = str  # "core" | "op" | "workflow"


@dataclass(frozen=True)
class LocalPackage:
    """One pip-installable package of the monorepo, as described by its pyproject.toml."""

    path: Path
    dist_name: str
    short_name: str
    layer: Layer
    local_deps: tuple[str, ...]
    requirements: tuple[str, ...]  # [project] dependencies
    modules: tuple[str, ...]  # importable names under the opshelf namespace, e.g. opshelf.fp
    problems: tuple[str, ...] = field(default=())

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def _layer_of(package_dir: Path) -> Layer:
    if package_dir.parent.name == "workflows":
        return "workflow"
    return "core" if package_dir.name == "core" else "op"


def _read_package(pyproject: Path) -> LocalPackage:
    """Describe one package; every inconsistency found becomes a `problem` (reported, not fatal)."""
    package_dir = pyproject.parent
    rel = pyproject.relative_to(ROOT).as_posix()
    problems: list[str] = []
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        data = {}
        problems.append(f"{rel}: not valid TOML: {err}")
    project = data.get("project", {})
    table = data.get("tool", {}).get("opshelf", {})
    dist_name = project.get("name") or ""
    if not dist_name:
        problems.append(f"{rel}: [project] name is missing")
    for key in sorted(set(table) - set(OPSHELF_KEYS)):
        close = difflib.get_close_matches(key, OPSHELF_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(OPSHELF_KEYS)})"
        problems.append(f"{rel}: unknown key {key!r} in [tool.opshelf]{hint}")
    local_deps = table.get("local-deps", [])
    if not isinstance(local_deps, list) or not all(isinstance(d, str) for d in local_deps):
        problems.append(f"{rel}: [tool.opshelf] local-deps must be a list of short names")
        local_deps = []
    namespace = package_dir / "src" / "opshelf"
    if (namespace / "__init__.py").exists():
        problems.append(
            f"{rel}: src/opshelf/__init__.py exists, but opshelf is a PEP 420 namespace: delete it"
        )
    modules = tuple(
        sorted(
            f"opshelf.{child.name}"
            for child in namespace.glob("*")
            if child.is_dir() and (child / "__init__.py").exists()
        )
    )
    return LocalPackage(
        path=package_dir,
        dist_name=dist_name,
        short_name=str(table.get("short-name") or package_dir.name),
        layer=_layer_of(package_dir),
        local_deps=tuple(local_deps),
        requirements=tuple(project.get("dependencies", [])),
        modules=modules,
        problems=tuple(problems),
    )


def _check_local_deps(packages: dict[str, LocalPackage]) -> dict[str, LocalPackage]:
    """Cross-check `local-deps` against [project] dependencies, so the two cannot drift apart."""
    by_dist = {canonicalize_name(p.dist_name): p for p in packages.values() if p.dist_name}
    checked: dict[str, LocalPackage] = {}
    for short, package in packages.items():
        problems = list(package.problems)
        rel = f"{package.rel}/pyproject.toml"
        for dep in package.local_deps:
            if dep not in packages:
                problems.append(
                    f"{rel}: [tool.opshelf] local-deps names {dep!r}, which is no local package"
                    f" (known: {', '.join(sorted(packages))})"
                )
        for requirement in package.requirements:
            try:
                name = canonicalize_name(Requirement(requirement).name)
            except InvalidRequirement as err:
                problems.append(f"{rel}: invalid dependency {requirement!r}: {err}")
                continue
            needed = by_dist.get(name)
            if needed is not None and needed.short_name not in package.local_deps:
                problems.append(
                    f"{rel}: depends on {needed.dist_name} but [tool.opshelf] local-deps"
                    f" lacks {needed.short_name!r}"
                )
        checked[short] = replace(package, problems=tuple(problems))
    return checked


def discover_packages() -> dict[str, LocalPackage]:
    """Every package under packages/ and workflows/, keyed by short name."""
    packages: dict[str, LocalPackage] = {}
    for group in ("packages", "workflows"):
        for pyproject in sorted((ROOT / group).glob("*/pyproject.toml")):
            package = _read_package(pyproject)
            if package.short_name in packages:
                clash = (
                    f"{package.rel}: short-name {package.short_name!r} is already used by"
                    f" {packages[package.short_name].rel}"
                )
                package = replace(
                    package, short_name=package.path.name, problems=(*package.problems, clash)
                )
            packages[package.short_name] = package
    return _check_local_deps(packages)


PACKAGES = discover_packages()
LAYOUT_PROBLEMS = [problem for package in PACKAGES.values() for problem in package.problems]


def dependency_closure(package: LocalPackage) -> list[LocalPackage]:
    """The package followed by every local package it needs, transitively, without repeats."""
    order: list[LocalPackage] = []
    pending = [package.short_name]
    while pending:
        short = pending.pop(0)
        if short not in PACKAGES or PACKAGES[short] in order:
            continue
        order.append(PACKAGES[short])
        pending.extend(PACKAGES[short].local_deps)
    return order


# ---------------------------------------------------------------- venv reuse keyed on inputs


def _hash(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def environment_key(packages: Sequence[LocalPackage], requirements: Sequence[str]) -> str:
    """What a venv is built from: its python, the install recipe, pyproject files, requirements."""
    parts = [f"{INSTALL_RECIPE} {sys.version_info[:2]}".encode(), *map(str.encode, requirements)]
    for package in sorted(packages, key=lambda p: p.rel):
        parts += [package.rel.encode(), (package.path / "pyproject.toml").read_bytes()]
    return _hash(parts)


def source_key(packages: Sequence[LocalPackage]) -> str:
    """Hash of the files that go into the packages' wheels (everything but tests and caches)."""
    parts: list[bytes] = []
    for package in sorted(packages, key=lambda p: p.rel):
        for dirpath, dirnames, filenames in os.walk(package.path):
            dirnames[:] = sorted(
                d
                for d in dirnames
                if d not in NOT_SOURCE and not d.startswith(".") and not d.endswith(".egg-info")
            )
            for name in sorted(filenames):
                path = Path(dirpath, name)
                parts += [path.relative_to(ROOT).as_posix().encode(), path.read_bytes()]
    return _hash(parts)


def _read_stamp(stamp: Path) -> dict[str, str]:
    try:
        return json.loads(stamp.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def reuse_venv(session_name: str, environment: str) -> bool:
    """Reuse a session's venv only if it was built from the same inputs (decided at load time).

    nox names a venv after its session under .nox/ (our session names need no escaping).
    """
    return _read_stamp(ROOT / ".nox" / session_name / STAMP_NAME).get("environment") == environment


def install_once(
    session: nox.Session,
    environment: str,
    install_args: Sequence[str],
    local: Sequence[LocalPackage] = (),
    rebuild_local: bool = False,
) -> None:
    """Install into the session venv unless the stamp says these very inputs are installed.

    With `rebuild_local`, the local packages are built as wheels, so a change in their sources
    must reinstall them (uv keeps an installed local package otherwise).
    """
    sources = source_key(local) if rebuild_local else ""
    stamp = Path(session.virtualenv.location) / STAMP_NAME
    previous = _read_stamp(stamp)
    if previous == {"environment": environment, "sources": sources}:
        session.log("inputs unchanged since the last install: skipping it")
        return
    reinstall = []
    if previous.get("environment") == environment and rebuild_local:
        for package in local:
            reinstall += ["--reinstall-package", package.dist_name]
    session.install(*reinstall, *install_args)
    stamp.write_text(json.dumps({"environment": environment, "sources": sources}), "utf-8")


def engine_env() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSED_ENV if name in os.environ}


def group(name: str) -> list[str]:
    """A PEP 735 dependency group of the root pyproject.toml."""
    return list(nox.project.dependency_groups(ROOT_PYPROJECT, name))


# ---------------------------------------------------------------- sessions


def importlinter_config() -> str:
    """An import-linter INI config for the packages present: layers and independent siblings,
    and no import cycle among the modules of one package."""
    modules = {layer: [] for layer in ("workflow", "op", "core")}
    for package in PACKAGES.values():
        modules[package.layer] += package.modules
    layers = [" | ".join(sorted(names)) for names in modules.values() if names]
    lines = [
        "[importlinter]",
        "root_package = opshelf",
        "include_external_packages = False",
        "",
        "[importlinter:contract:layers]",
        "name = Layers: core <- OP packages <- workflows; siblings independent",
        "type = layers",
        "layers =",
        *(f"    {layer}" for layer in layers),
        "",
        # inside a package too, imports point one way (lazy imports in functions count)
        "[importlinter:contract:acyclic]",
        "name = No import cycles inside a package",
        "type = acyclic_siblings",
        "ancestors =",
        *(f"    {module}" for package in PACKAGES.values() for module in package.modules),
    ]
    return "\n".join(lines) + "\n"


_LINT_GROUP = group("lint")
_LINT_ENV = environment_key([], _LINT_GROUP)


@nox.session(reuse_venv=reuse_venv("lint", _LINT_ENV))
def lint(session: nox.Session) -> None:
    """ruff check, layout rules, and the import layers (core <- OP packages <- workflows)."""
    install_once(session, _LINT_ENV, _LINT_GROUP)
    failures: list[str] = []
    try:
        session.run("ruff", "check", str(ROOT), *session.posargs)
    except nox.command.CommandFailed:
        failures.append("ruff check")
    for problem in LAYOUT_PROBLEMS:
        session.warn(problem)
    if LAYOUT_PROBLEMS:
        failures.append(f"{len(LAYOUT_PROBLEMS)} layout problem(s)")
    try:  # no step key written by hand outside opshelf.core.keys
        session.run(sys.executable, str(ROOT / "scripts" / "step_key_check.py"), external=True)
    except nox.command.CommandFailed:
        failures.append("hand-written step key(s)")
    config = Path(session.create_tmp()) / "importlinter.ini"
    config.write_text(importlinter_config(), encoding="utf-8")
    session.log(f"import-linter contract ({config}):\n{config.read_text(encoding='utf-8')}")
    # import-linter reads sources statically: finding them on PYTHONPATH is enough, no install.
    source_dirs = [str(package.path / "src") for package in PACKAGES.values()]
    if any(package.modules for package in PACKAGES.values()):
        try:
            session.run(
                "lint-imports",
                "--no-logo",
                "--cache-dir",
                str(config.parent / "import-linter-cache"),
                str(config),
                env={"PYTHONPATH": os.pathsep.join(source_dirs)},
            )
        except nox.command.CommandFailed:
            failures.append("lint-imports")
    if failures:
        session.error("lint failed: " + ", ".join(failures))


def _register_tests_session(package: LocalPackage) -> str:
    name = f"tests-{package.short_name}"
    closure = dependency_closure(package)
    environment = environment_key(closure, ["test extra", "wheel"])

    def tests(session: nox.Session) -> None:
        if package.problems:
            session.error("; ".join(package.problems))
        if not (package.path / "tests").is_dir():
            session.error(f"{package.rel} has no tests/ folder: every package tests itself")
        # Non-editable: the venv holds the wheels, as `pip install opshelf-<pkg>` would.
        targets = [f"{package.path}[test]", *(str(dep.path) for dep in closure[1:])]
        install_once(session, environment, targets, local=closure, rebuild_local=True)
        with session.chdir(package.path):
            session.run("pytest", "tests", *session.posargs, env=engine_env())

    tests.__doc__ = f"{package.rel}: install it alone (+ {', '.join(package.local_deps) or 'no'}"
    tests.__doc__ += " local deps) and run its tests."
    nox.session(name=name, reuse_venv=reuse_venv(name, environment))(tests)
    return name


TEST_SESSIONS = [_register_tests_session(package) for package in PACKAGES.values()]

_INTEGRATION_ENV = environment_key(list(PACKAGES.values()), ["test extra", "editable"])


@nox.session(reuse_venv=reuse_venv("integration", _INTEGRATION_ENV))
def integration(session: nox.Session) -> None:
    """Every package installed; the cross-package tests under tests/."""
    editables: list[str] = []
    for package in PACKAGES.values():
        editables += ["-e", f"{package.path}[test]"]
    install_once(session, _INTEGRATION_ENV, editables)
    test_files = [
        path
        for path in (ROOT / "tests").rglob("*.py")
        if path.name.startswith("test_") or path.name.endswith("_test.py")
    ]
    # pytest exits 5 when it collects nothing: fine while tests/ holds no test file, only then.
    success_codes = [0] if test_files else [0, 5]
    with session.chdir(ROOT):
        session.run(
            "pytest", "tests", *session.posargs, env=engine_env(), success_codes=success_codes
        )


_DOCS_GROUP = group("docs")
_DOCS_ENV = environment_key([], _DOCS_GROUP)


@nox.session(reuse_venv=reuse_venv("docs", _DOCS_ENV))
def docs(session: nox.Session) -> None:
    """Generate docs/reference/ from the code, then mkdocs build --strict (warnings: errors).

    scripts/docs_reference.py runs with the dev venv: it imports every package."""
    install_once(session, _DOCS_ENV, _DOCS_GROUP)
    site = Path(session.create_tmp()) / "site"
    session.run(str(DEV_VENV / "bin" / "python"), str(ROOT / "scripts" / "docs_reference.py"),
                str(ROOT / "docs" / "reference"), env=_dev_venv_env(), external=True)
    with session.chdir(ROOT):
        session.run(
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(site),
            *session.posargs,
            env={"NO_MKDOCS_2_WARNING": "1"},  # Material's end-of-life notice, on every build
        )
    session.log(f"site built in {site}")


# Imports every module of the packages named in argv[2:]; a module may fail only for lack of
# a distribution of the package's optional extras (argv[1], comma-separated), e.g. pytest.
_IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
optional = set(filter(None, sys.argv[1].split(",")))
names, problems = [], []
for top in sys.argv[2:]:
    names.append(top)
    names += [i.name for i in pkgutil.walk_packages(importlib.import_module(top).__path__,
                                                     top + ".")]
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0].lower() not in optional:
            problems.append(f"{name}: {exc}")
    except Exception as exc:
        problems.append(f"{name}: {type(exc).__name__}: {exc}")
print(f"imported {len(names)} modules", *problems, sep="\\n  ")
sys.exit(1 if problems else 0)
"""


def _build_wheels(session: nox.Session, shorts: Sequence[str], dist: Path) -> dict[str, Path]:
    """`uv build --wheel` of each package (short names) into `dist`, emptied first: one flat
    folder of wheels, a wheelhouse pip reads with --find-links."""
    if dist.exists():
        shutil.rmtree(dist)
    wheels: dict[str, Path] = {}
    for short in shorts:
        package = PACKAGES[short]
        out = dist / ".build" / short
        session.run(nox.virtualenv.UV, "build", "--quiet", "--wheel", "--out-dir", str(out),
                    str(package.path), external=True)
        found = sorted(out.glob("*.whl"))
        if len(found) != 1:
            session.error(f"{package.rel}: expected one wheel in {out}, found {found}")
        wheels[short] = Path(shutil.move(found[0], dist / found[0].name))
    shutil.rmtree(dist / ".build")
    return wheels


#: where `./dev wheels` (nox -s wheels) writes the wheelhouse (dist/ is git-ignored)
WHEELHOUSE = ROOT / "dist" / "wheelhouse"


@nox.session(venv_backend="none")
def wheels(session: nox.Session) -> None:
    """Write every package's wheel into dist/wheelhouse (args: short names, default all);
    then `pip install --find-links dist/wheelhouse opshelf-fp` installs one package with its
    local dependencies from it."""
    wanted = list(session.posargs) or list(PACKAGES)
    unknown = sorted(set(wanted) - set(PACKAGES))
    if unknown:
        session.error(f"unknown package(s) {unknown}; known: {sorted(PACKAGES)}")
    needed = {dep.short_name for short in wanted for dep in dependency_closure(PACKAGES[short])}
    built = _build_wheels(session, sorted(needed), WHEELHOUSE)
    session.log(f"wheelhouse {WHEELHOUSE}: {', '.join(w.name for w in built.values())}")
    session.log(f"install one package: pip install --find-links {WHEELHOUSE} opshelf-fp")


@nox.session(venv_backend="none")
def build(session: nox.Session) -> None:
    """Build every package's wheel (uv build) and install each alone (+ its local deps' wheels)
    in a fresh venv, then import its modules. Args: short names (default: all)."""
    wanted = list(session.posargs) or list(PACKAGES)
    unknown = sorted(set(wanted) - set(PACKAGES))
    if unknown:
        session.error(f"unknown package(s) {unknown}; known: {sorted(PACKAGES)}")
    uv = nox.virtualenv.UV  # the uv nox itself uses (found next to nox, else on PATH)
    work = ROOT / ".nox" / "build"
    needed = {dep.short_name for short in wanted for dep in dependency_closure(PACKAGES[short])}
    wheels = _build_wheels(session, sorted(needed), work / "dist")
    importer = work / "import_every_module.py"
    importer.write_text(_IMPORT_EVERY_MODULE, encoding="utf-8")
    failed: list[str] = []
    for short in wanted:
        package = PACKAGES[short]
        venv = work / "venvs" / short
        python = venv / "bin" / "python"
        closure = [wheels[dep.short_name] for dep in dependency_closure(package)]
        extras = nox.project.load_toml(package.path / "pyproject.toml")["project"].get(
            "optional-dependencies", {})
        optional = sorted({Requirement(r).name.replace("-", "_").lower()
                           for reqs in extras.values() for r in reqs})
        try:
            session.run(uv, "venv", "--quiet", "--clear", "--python", sys.executable,
                        str(venv), external=True)
            session.run(uv, "pip", "install", "--quiet", "--python", str(python),
                        *map(str, closure), external=True)
            session.run(str(python), str(importer), ",".join(optional), *package.modules,
                        external=True)
            session.log(f"{package.dist_name}: {wheels[short].name} installs alone, every "
                        "module imports")
        except nox.command.CommandFailed as err:
            failed.append(f"{short} ({err.reason})")
    if failed:
        session.error(f"package(s) that do not install alone: {', '.join(failed)}")


@nox.session(venv_backend="none")
def changelog(session: nox.Session) -> None:
    """Fail when a package changed without a CHANGELOG.md entry, against the merge-base of
    origin/main (else main) and HEAD; `nox -s changelog -- --base REF` compares with REF."""
    session.run(sys.executable, str(ROOT / "scripts" / "changelog_check.py"), *session.posargs,
                external=True)


def _dev_venv_env() -> dict[str, str]:
    """Run with the dev venv first on PATH: dflow's local mode starts `python3` from PATH."""
    if not (DEV_VENV / "bin" / "python").exists():
        raise FileNotFoundError(f"{DEV_VENV} is missing: run ./dev first")
    return {"PATH": f"{DEV_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Run every benchmarks/*.py with the dev venv's packages; print each one's final line."""
    try:
        env = _dev_venv_env()
    except FileNotFoundError as err:
        session.error(str(err))
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    if not scripts:
        session.log("no benchmarks/*.py to run")
        return
    results: list[tuple[str, str]] = []
    for script in scripts:
        rel = script.relative_to(ROOT).as_posix()
        try:
            output = session.run(
                str(DEV_VENV / "bin" / "python"), rel, *session.posargs, env=env, silent=True
            )
        except nox.command.CommandFailed as err:
            results.append((rel, f"FAILED ({err.reason})"))
            continue
        lines = [line for line in str(output).splitlines() if line.strip()]
        results.append((rel, lines[-1] if lines else "(no output)"))
    for rel, last_line in results:
        print(f"{rel}: {last_line}")
    failed = [rel for rel, last_line in results if last_line.startswith("FAILED")]
    if failed:
        session.error(f"benchmark(s) failed: {', '.join(failed)}")


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """The main job, exactly as `./dev demo` runs it (the dev script names the demo).

    It must converge: exit status 3 (every step ran, the loop did not converge) fails this
    session, as any other failure does. The demo converged in 2 min 56 s on 2 idle cores (2026-12-06)."""
    session.run(str(ROOT / "dev"), "demo", *session.posargs, external=True)

CONTAINERS = ROOT / "containers"
BASE_IMAGE_ENV = "OPSHELF_BASE_IMAGE"
LOCAL_BASE_IMAGE = "localhost/opshelf-base:bookworm-python3.11"
VERSION_LABEL = "org.opencontainers.image.version"


def _image_name(package: LocalPackage) -> tuple[str, str]:
    """(image, version) of a package, named by core's opshelf.core.images (the one place)."""
    version = nox.project.load_toml(package.path / "pyproject.toml")["project"]["version"]
    code = ("import sys; from opshelf.core.images import package_image; "
            "print(package_image(sys.argv[1], sys.argv[2]))")
    proc = subprocess.run([str(DEV_VENV / "bin" / "python"), "-c", code, package.dist_name,
                           version], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"cannot name the image with opshelf.core.images (run ./dev first): "
                           f"{proc.stderr.strip()}")
    return proc.stdout.strip(), version


@nox.session(venv_backend="none")
def containers(session: nox.Session) -> None:
    """Build containers/<name>/Containerfile images (buildah, --isolation chroot) and run each
    image's smoke.sh inside it. Args: image names (default: all). Needs root and buildah; the
    base is $OPSHELF_BASE_IMAGE, else a local debootstrap base (containers/base/); every image
    starts from the shared stage containers/runtime, built on that base first."""
    names = sorted(p.parent.name for p in CONTAINERS.glob("*/Containerfile")
                   if p.parent.name not in ("base", "runtime"))
    wanted = list(session.posargs) or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        session.error(f"no containers/<name>/Containerfile for {unknown}; known: {names}")
    base = os.environ.get(BASE_IMAGE_ENV)
    if not base:
        base = LOCAL_BASE_IMAGE
        present = subprocess.run(["buildah", "inspect", "--type", "image", base],
                                 capture_output=True, check=False).returncode == 0
        if not present:
            session.run(str(CONTAINERS / "base" / "build-base.sh"), base,
                        str(ROOT / ".nox" / "container-base"), external=True)
    # the shared stage (venv, user, common labels), tagged by its base
    runtime = f"localhost/opshelf-runtime:{hashlib.sha1(base.encode()).hexdigest()[:12]}"
    session.run("buildah", "bud", "--isolation", "chroot", "--layers",
                "-f", str(CONTAINERS / "runtime" / "Containerfile"),
                "--build-arg", f"BASE_IMAGE={base}", "-t", runtime, str(ROOT), external=True)
    build_args = ["--build-arg", f"RUNTIME_IMAGE={runtime}"]
    volumes: list[str] = []
    # pip inside the build sees the build machine's wheel folder and CA bundle, if it has them
    for name in ("PIP_FIND_LINKS", "PIP_CERT"):
        path = os.environ.get(name, "")
        if path and Path(path).exists():
            volumes += ["--volume", f"{path}:{path}:ro"]
            build_args += ["--build-arg", f"{name}={path}"]
    failed: list[str] = []
    for name in wanted:
        package = PACKAGES.get(name)
        if package is None:
            session.error(f"containers/{name}: no package with short-name {name!r}")
        image, version = _image_name(package)
        try:
            session.run("buildah", "bud", "--isolation", "chroot", "--layers",
                        "-f", str(CONTAINERS / name / "Containerfile"),
                        *build_args, "--build-arg", f"VERSION={version}", *volumes,
                        "-t", image, str(ROOT), external=True)
            label = session.run("buildah", "inspect", "--type", "image", "--format",
                                f'{{{{index .OCIv1.Config.Labels "{VERSION_LABEL}"}}}}',
                                image, external=True, silent=True)
            if str(label).strip() != version:
                raise nox.command.CommandFailed(f"{image}: label {VERSION_LABEL}={label!r}")
            container = str(session.run("buildah", "from", image, external=True,
                                        silent=True)).strip().splitlines()[-1]
            try:
                session.run("buildah", "run", "--isolation", "chroot", container, "--",
                            "/opt/opshelf/smoke.sh", external=True)
            finally:
                session.run("buildah", "rm", container, external=True, silent=True)
            session.log(f"{image}: built, smoke test passed")
        except nox.command.CommandFailed as err:
            failed.append(f"{name} ({err.reason})")
    if failed:
        session.error(f"container image(s) failed: {', '.join(failed)}")


# `nox` alone (and `./dev test`) runs the checks and builds the docs (~10 s); build (~1-2 min),
# changelog, bench, demo and containers run on request.
# demo: CI proves that `./dev demo`, the main job, works (`./dev test` starts it first: it is the
# longest session, CP2K labels and DeePMD training)
nox.options.sessions = ["lint", "demo", *TEST_SESSIONS, "integration", "docs"]
