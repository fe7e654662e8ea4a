"""`opshelf new-op` / `new-engine`: the scaffolds write code that passes ruff and its own tests.

A small OP package (pyproject, one module, one test of its own) is made in a temporary folder,
the scaffolds run through the CLI, and then the package's whole test folder runs in a fresh
pytest process with the copy on PYTHONPATH: the old test and the generated ones must pass.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from opshelf.core.cli import main
from opshelf.core.errors import UserError
from opshelf.core.scaffold import add_entry_point, names_of
from opshelf.core.testing import run_package_tests

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "opshelf-toy"
version = "0.1.0"
dependencies = ["opshelf-core>=0.1,<0.2"]

# a comment the scaffold must keep
[tool.opshelf]
short-name = "toy"
local-deps = ["core"]
"""


@pytest.fixture
def toy_package(tmp_path: Path) -> Path:
    """packages/toy: a minimal OP package with one pure function and its test."""
    package = tmp_path / "packages" / "toy"
    module = package / "src" / "opshelf" / "toy"
    module.mkdir(parents=True)
    (package / "tests").mkdir()
    (package / "pyproject.toml").write_text(PYPROJECT)
    (module / "__init__.py").write_text('"""A toy package."""\n')
    (module / "double.py").write_text("def double(x: float) -> float:\n    return 2 * x\n")
    (package / "tests" / "test_double.py").write_text(
        "from opshelf.toy.double import double\n\n\n"
        "def test_double() -> None:\n    assert double(2.5) == 5.0\n")
    return package


def _ruff(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed (it is in opshelf-core's test extra)")
    root_config = Path(__file__).resolve().parents[3] / "pyproject.toml"
    config = ["--config", str(root_config)] if root_config.is_file() else [
        "--line-length", "100", "--select", "E,F,W,I,B,UP", "--ignore", "B905"]
    return subprocess.run([ruff, "check", *config, *map(str, paths)], capture_output=True,
                          text=True, check=False)


def test_new_op_and_new_engine_pass_their_own_tests(
    toy_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(toy_package.parents[1])  # the repository root: packages/toy
    assert main(["new-op", "toy", "count-atoms"]) == 0
    assert main(["new-engine", "toy", "MyCode"]) == 0
    printed = capsys.readouterr()
    module = toy_package / "src" / "opshelf" / "toy"
    expected = [module / "count_atoms.py", module / "count_atoms_op.py", module / "my_code.py",
                toy_package / "tests" / "test_count_atoms.py",
                toy_package / "tests" / "test_my_code.py",
                toy_package / "tests" / "data" / "my-code" / "single-point" / "output.xyz",
                toy_package / "docs" / "count_atoms.md", toy_package / "docs" / "my_code.md"]
    for path in expected:
        assert path.is_file(), path
        assert str(path) in printed.out
    assert "next:" in printed.err
    pyproject = (toy_package / "pyproject.toml").read_text()
    assert "# a comment the scaffold must keep" in pyproject
    project = tomllib.loads(pyproject)["project"]
    assert project["entry-points"] == {
        "opshelf.ops": {"count-atoms": "opshelf.toy.count_atoms_op:CountAtoms"},
        "opshelf.engines": {"my-code": "opshelf.toy.my_code:MyCodeEngine"},
    }

    lint = _ruff([module, toy_package / "tests"])
    assert lint.returncode == 0, lint.stdout + lint.stderr

    tests = run_package_tests(toy_package)
    report = tests.stdout[-4000:] + tests.stderr[-2000:]
    assert tests.returncode == 0, report
    # the package's own test, 2 of the new OP, 4 of the new engine
    assert "7 passed" in tests.stdout, report


def test_scaffold_refuses_to_overwrite_and_bad_names(toy_package: Path) -> None:
    from opshelf.core.scaffold import new_op

    new_op(toy_package, "count-atoms")
    before = (toy_package / "pyproject.toml").read_text()
    with pytest.raises(UserError, match=r"would overwrite .*count_atoms\.py"):
        new_op(toy_package, "CountAtoms")  # the same name, spelt otherwise
    assert (toy_package / "pyproject.toml").read_text() == before
    with pytest.raises(UserError, match=r"name '2fast'"):
        new_op(toy_package, "2fast")
    with pytest.raises(UserError, match=r"package 'nowhere': no pyproject.toml"):
        new_op("nowhere", "x", root=toy_package.parents[1])


def test_names_and_entry_point_edit(tmp_path: Path) -> None:
    assert names_of("CountAtoms") == names_of("count-atoms") == names_of("count_atoms")
    assert names_of("RunFP2x").camel == "RunFp2x"
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PYPROJECT.replace(
        "# a comment", '[project.entry-points."opshelf.ops"]\nold = "a.b:C"\n\n# a comment'))
    add_entry_point(pyproject, "opshelf.ops", "new", "a.b:D")
    table = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["opshelf.ops"]
    assert table == {"old": "a.b:C", "new": "a.b:D"}
    with pytest.raises(UserError, match="exists already"):
        add_entry_point(pyproject, "opshelf.ops", "old", "a.b:E")
