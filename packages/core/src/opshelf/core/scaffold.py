"""`opshelf new-op` and `opshelf new-engine`: scaffolds for contributors.

`new_op(package, name)` writes, into an OP package of the monorepo (``packages/<pkg>``):
a pure-function module, a thin OP over it, a test applying `assert_op_conformance` and testing
the function, and a docs stub (``docs/<name>.md``, appended to the package's reference page),
and registers the OP in the ``opshelf.ops`` entry-point group. `new_engine(package, name)`
writes an `Engine` subclass, a replay-based test with a recorded output, a docs stub, and
registers it in ``opshelf.engines``. The generated code passes ruff and its own tests as
generated (tests/test_scaffold.py); the templates are in ``opshelf/core/templates``.
"""

from __future__ import annotations

import keyword
import re
import string
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from opshelf.core.errors import ConfigError, UserError

#: a name longer than this makes file names too long, and no one can read it
_MAX_NAME = 64
#: snake-case names that would shadow what the generated modules import or define
_TAKEN = frozenset({"test", "tests", "op", "ops", "dflow", "pathlib", "typing", "opshelf",
                    "annotations", "pytest", "np", "numpy", "ase"})
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*$")


@dataclass(frozen=True)
class Names:
    """The spellings of one new OP or engine name."""

    snake: str  # module and function: count_atoms
    camel: str  # class: CountAtoms
    kebab: str  # entry point and program: count-atoms


def names_of(name: str) -> Names:
    """`count-atoms`, `count_atoms` or `CountAtoms` -> its three spellings."""
    if not _NAME.match(name):
        raise UserError(f"name {name!r}: use letters and digits, words joined by '-' or '_' "
                        "(e.g. count-atoms or CountAtoms)")
    if len(name) > _MAX_NAME:
        raise UserError(f"name of {len(name)} characters: at most {_MAX_NAME} (it names a "
                        "module, a class and files)")
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).replace("-", "_").lower().split("_")
    snake = "_".join(words)
    if snake in _TAKEN:
        raise UserError(f"name {name!r}: {snake!r} would shadow a module the generated code "
                        f"uses; choose another (e.g. {snake}-op)")
    if keyword.iskeyword(snake) or keyword.issoftkeyword(snake):
        snake += "_"  # PEP 8's way out: `class` -> module and function class_
    return Names(snake=snake, camel="".join(w.capitalize() for w in words),
                 kebab="-".join(words))


@dataclass(frozen=True)
class PackageDir:
    """An opshelf package on disk: its folder, distribution name and module (opshelf.<x>)."""

    path: Path
    dist: str
    module: str

    @property
    def module_dir(self) -> Path:
        return self.path / "src" / Path(*self.module.split("."))


def find_package(package: str | Path, root: Path | None = None) -> PackageDir:
    """A package folder (with a pyproject.toml and one src/opshelf/<module>), given as a path
    or as a folder name under `root`/packages (root: the current directory)."""
    candidates = [Path(package)]
    if not Path(package).is_absolute():
        candidates.append((root or Path.cwd()) / "packages" / str(package))
    path = next((c for c in candidates if (c / "pyproject.toml").is_file()), None)
    if path is None:
        raise UserError(f"package {str(package)!r}: no pyproject.toml in "
                        f"{' or '.join(str(c) for c in candidates)}")
    try:
        project = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    except (tomllib.TOMLDecodeError, KeyError) as exc:
        raise ConfigError(f"{path / 'pyproject.toml'}: no valid [project] table ({exc})") from exc
    modules = sorted(d.name for d in (path / "src" / "opshelf").glob("*")
                     if (d / "__init__.py").is_file())
    if len(modules) != 1:
        raise UserError(f"{path}: expected exactly one module under src/opshelf/, found "
                        f"{modules or 'none'}")
    return PackageDir(path=path.resolve(), dist=project["name"], module=f"opshelf.{modules[0]}")


def _render(template: str, values: dict[str, str]) -> str:
    text = resources.files("opshelf.core").joinpath("templates", template).read_text("utf-8")
    return string.Template(text).substitute(values)


def _write_new(files: dict[Path, str]) -> list[Path]:
    """Write every file, refusing before writing any if one exists already."""
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise UserError(f"would overwrite {', '.join(existing)}: choose another name")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def add_entry_point(pyproject: Path, group: str, name: str, target: str) -> None:
    """Add `name = "target"` to [project.entry-points."group"], making the table if needed.

    A text edit, so that the file's comments and layout stay; the result is parsed back.
    """
    text = pyproject.read_text(encoding="utf-8")
    header = f'[project.entry-points."{group}"]'
    line = f'{name} = "{target}"'
    current = tomllib.loads(text).get("project", {}).get("entry-points", {}).get(group, {})
    if name in current:
        raise UserError(f"{pyproject}: entry point {name!r} exists already in {group!r}")
    lines = text.splitlines()
    if header in (stripped := [ln.strip() for ln in lines]):
        end = stripped.index(header) + 1
        while end < len(lines) and stripped[end] and not stripped[end].startswith("["):
            end += 1
        lines.insert(end, line)
    else:
        # a new table before [tool.*] (or at the end): still inside the [project] entries
        at = next((i for i, s in enumerate(stripped) if s.startswith("[tool.")), len(lines))
        lines[at:at] = [header, line, ""]
    new_text = "\n".join(lines) + "\n"
    parsed = tomllib.loads(new_text)["project"]["entry-points"][group]
    if parsed.get(name) != target:
        raise RuntimeError(f"{pyproject}: adding the entry point went wrong; file left as is")
    pyproject.write_text(new_text, encoding="utf-8")


def _values(package: PackageDir, names: Names) -> dict[str, str]:
    return {"module": package.module, "snake": names.snake, "camel": names.camel,
            "kebab": names.kebab, "dist": package.dist}


def new_op(package: str | Path, name: str, root: Path | None = None) -> list[Path]:
    """Scaffold OP `name` in `package`; return the files written (pyproject.toml last)."""
    pkg = find_package(package, root)
    names = names_of(name)
    values = _values(pkg, names)
    written = _write_new({
        pkg.module_dir / f"{names.snake}.py": _render("new_op/function.py.tmpl", values),
        pkg.module_dir / f"{names.snake}_op.py": _render("new_op/op.py.tmpl", values),
        pkg.path / "tests" / f"test_{names.snake}.py": _render("new_op/test.py.tmpl", values),
        pkg.path / "docs" / f"{names.snake}.md": _render("new_op/doc.md.tmpl", values),
    })
    add_entry_point(pkg.path / "pyproject.toml", "opshelf.ops", names.kebab,
                    f"{pkg.module}.{names.snake}_op:{names.camel}")
    return [*written, pkg.path / "pyproject.toml"]


def _recorded_output(directory: Path) -> Path:
    """A stand-in recording for a new engine's replay test: ASE's EMT on fcc Cu (a = 3.6 A,
    cubic, 4 atoms) written as the extended XYZ the template engine reads."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions[0] += (0.05, -0.03, 0.02)  # off equilibrium: non-zero forces to compare
    atoms.calc = EMT()
    atoms.get_forces()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "output.xyz"
    write(path, atoms, format="extxyz")
    return path


def new_engine(package: str | Path, name: str, root: Path | None = None) -> list[Path]:
    """Scaffold engine `name` in `package`; return the files written (pyproject.toml last)."""
    pkg = find_package(package, root)
    names = names_of(name)
    values = _values(pkg, names)
    recorded = pkg.path / "tests" / "data" / names.kebab / "single-point"
    written = _write_new({
        pkg.module_dir / f"{names.snake}.py": _render("new_engine/engine.py.tmpl", values),
        pkg.path / "tests" / f"test_{names.snake}.py": _render("new_engine/test.py.tmpl",
                                                               values),
        pkg.path / "docs" / f"{names.snake}.md": _render("new_engine/doc.md.tmpl", values),
    })
    if recorded.exists():
        raise UserError(f"{recorded} exists already: choose another name")
    written.append(_recorded_output(recorded))
    add_entry_point(pkg.path / "pyproject.toml", "opshelf.engines", names.kebab,
                    f"{pkg.module}.{names.snake}:{names.camel}Engine")
    return [*written, pkg.path / "pyproject.toml"]


NEXT_STEPS = """next:
  - replace the generated science with yours; keep the tests real (numbers with their source)
  - describe it in {doc} and add a line to {changelog}
  - reinstall the package so its new entry point is seen: ./dev (or pip install -e {path})
  - run its tests: ./dev tests-<short-name> (or pytest {tests})"""


def next_steps(files: list[Path]) -> str:
    package = files[-1].parent
    doc = next(f for f in files if f.suffix == ".md")
    tests = next(f for f in files if f.name.startswith("test_"))
    return NEXT_STEPS.format(doc=doc, changelog=package / "CHANGELOG.md", path=package,
                             tests=tests)
