"""The documentation: getting started is exercised, the generated reference matches the code.

docs/getting-started.md marks every code block with an HTML comment just before it:

- ``<!-- test: run -->``: run here, as written, with bash from the repository root, in order;
- ``<!-- test: output -->``: what the previous run block prints; every documented line must
  match a printed line (digits, ``...`` and ``/path/to/checkout`` stand for anything);
- ``<!-- test: install -->``: install commands, not run here (they would change the venv):
  every local path a ``pip install`` names must be a package of this repository and every
  extra in brackets one it declares; ``./dev`` must be this checkout's script. Inline
  ``pip install ...`` commands of the page are checked the same way;
- ``<!-- test: ci -->``: the command CI runs: it must be the command ``.ci/run`` executes;
- ``<!-- test: demo -->`` (``./dev demo``) and ``<!-- test: demo-command -->`` (the job it runs):
  must be ``./dev demo`` and the ``DEMO=(...)`` line of ``dev``. The demo (minutes: concurrent
  learning with CP2K) runs here only with OPSHELF_RUN_DEMO=1; ``nox -s demo`` runs it alone.

A block without a marker fails the test, so a new block cannot go unexercised.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "getting-started.md"
MARKER = re.compile(r"^<!-- test: (run|output|install|ci|demo|demo-command) -->$")


def code_blocks(text: str) -> list[tuple[str | None, str]]:
    """(marker kind or None, body) of every fenced block of a markdown page."""
    lines = text.splitlines()
    blocks: list[tuple[str | None, str]] = []
    index = 0
    while index < len(lines):
        if lines[index].strip().startswith("```"):
            end = next(j for j in range(index + 1, len(lines)) if lines[j].strip() == "```")
            before = next((lines[j].strip() for j in range(index - 1, -1, -1)
                           if lines[j].strip()), "")
            match = MARKER.match(before)
            blocks.append((match.group(1) if match else None,
                           "\n".join(lines[index + 1:end]) + "\n"))
            index = end
        index += 1
    return blocks


def test_code_blocks_parser() -> None:
    text = "<!-- test: run -->\n```console\n./dev demo\n```\n\nx\n```text\nout\n```\n"
    assert code_blocks(text) == [("run", "./dev demo\n"), (None, "out\n")]


def _line_pattern(documented: str) -> re.Pattern[str]:
    pattern = re.escape(documented.strip())
    pattern = re.sub(r"\d+", r"\\d+", pattern)
    for wildcard in (re.escape("/path/to/checkout"), re.escape("...")):
        pattern = pattern.replace(wildcard, ".*")
    return re.compile(pattern)


def _demo_command() -> str:
    """The job `./dev demo` runs: the DEMO=(...) array at the top of `dev`."""
    text = (ROOT / "dev").read_text()
    match = re.search(r"^DEMO=\((.*)\)\s*$", text, re.MULTILINE)
    assert match, "dev: no DEMO=(...) line"
    return " ".join(shlex.split(match.group(1)))


def _check_pip_install(command: str) -> list[str]:
    """Problems of one ``pip install ARGS`` command naming local packages."""
    problems = []
    for arg in shlex.split(command)[2:]:
        if arg.startswith("-") or not arg.startswith("./"):
            continue
        path, _, extras = arg.partition("[")
        pyproject = ROOT / path / "pyproject.toml"
        if not pyproject.is_file():
            problems.append(f"{arg}: no package at {path}")
            continue
        declared = tomllib.loads(pyproject.read_text())["project"].get(
            "optional-dependencies", {})
        for extra in filter(None, extras.rstrip("]").split(",")):
            if extra.strip() not in declared:
                problems.append(f"{arg}: {path} declares no extra {extra!r}")
    return problems


def _check_install_block(body: str) -> list[str]:
    problems = []
    for line in body.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("pip install"):
            problems += _check_pip_install(line)
        elif line.startswith("./dev wheels"):  # the nox session `wheels`, args: short names
            shorts = line.removeprefix("./dev wheels").removeprefix(" --").split()
            problems += [f"{line!r}: no package {s!r}" for s in shorts
                         if not (ROOT / "packages" / s / "pyproject.toml").is_file()]
            if "def wheels(" not in (ROOT / "noxfile.py").read_text(encoding="utf-8"):
                problems.append(f"{line!r}: noxfile.py has no `wheels` session")
        elif line.startswith("./dev"):
            if line != "./dev" or not os.access(ROOT / "dev", os.X_OK):
                problems.append(f"{line!r}: expected ./dev, this checkout's script")
        elif not line.startswith(("python3 -m venv ", "source ")):
            problems.append(f"{line!r}: not an install command this test knows")
    return problems


def test_install_commands_name_real_packages() -> None:
    text = PAGE.read_text(encoding="utf-8")
    blocks = [body for kind, body in code_blocks(text) if kind == "install"]
    assert len(blocks) >= 2
    problems = [p for body in blocks for p in _check_install_block(body)]
    inline = re.findall(r"`(pip install [^`]+)`", text)
    assert inline, "the page's table of what to install per workflow is gone"
    problems += [p for command in inline for p in _check_pip_install(command)]
    assert not problems, problems
    assert _check_pip_install("pip install ./packages/core[nope]") == [
        "./packages/core[nope]: ./packages/core declares no extra 'nope'"]


def _ci_command() -> str:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    command = next(ln for ln in lines if ln.startswith("exec "))
    return command.removeprefix("exec ").split("<")[0].strip()


def test_getting_started_blocks_run_as_written() -> None:
    blocks = code_blocks(PAGE.read_text(encoding="utf-8"))
    unmarked = [body for kind, body in blocks if kind is None]
    assert not unmarked, f"{PAGE.name}: code blocks without a test marker: {unmarked}"
    assert [kind for kind, _ in blocks].count("run") >= 2
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.fail("the getting-started commands need ./dev's .venv (run ./dev first)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPSHELF_RUNS_DIR", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", NO_COLOR="1")
    runs_before = set((ROOT / "opshelf-runs").glob("*"))
    last_output = ""
    try:
        for kind, body in blocks:
            if kind == "run":
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=ROOT, env=env,
                                      capture_output=True, text=True, timeout=900, check=False)
                last_output = done.stdout + done.stderr
                assert done.returncode == 0, f"block failed:\n{body}\n{last_output[-4000:]}"
            elif kind == "output":
                printed = last_output.splitlines()
                for line in body.splitlines():
                    pattern = _line_pattern(line)
                    assert any(pattern.search(p) for p in printed), (
                        f"documented output line {line!r} was not printed:\n{last_output[-3000:]}")
            elif kind == "install":  # checked by test_install_commands_name_real_packages
                pass
            elif kind == "ci":  # what CI executes, exactly this command
                assert body.strip() == _ci_command(), (body, _ci_command())
            elif kind == "demo-command":
                assert body.strip() == _demo_command(), (body, _demo_command())
            else:  # demo
                assert body.strip() == "./dev demo", body
                if os.environ.get("OPSHELF_RUN_DEMO") == "1":
                    done = subprocess.run(["./dev", "demo"], cwd=ROOT, env=env, text=True,
                                          capture_output=True, timeout=3600, check=False)
                    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    finally:
        # the runs this test made (the documented commands use the default ./opshelf-runs)
        for run in set((ROOT / "opshelf-runs").glob("*")) - runs_before:
            shutil.rmtree(run, ignore_errors=True)


# ---------------------------------------------------------------- the generated reference


def _generator():
    spec = importlib.util.spec_from_file_location("docs_reference",
                                                  ROOT / "scripts" / "docs_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_reference"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    _generator().generate(out)
    return out


def _nav_pages(nav: object) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_nav_pages(item) for item in nav))
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(item) for item in nav.values()))
    return set()


def test_every_generated_page_is_in_the_nav(reference: Path) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    generated = {"reference/" + p.relative_to(reference).as_posix()
                 for p in reference.rglob("*.md")}
    assert generated - nav == set(), "add these generated pages to mkdocs.yml's nav"
    written_by_hand = {p.relative_to(ROOT / "docs").as_posix()
                       for p in (ROOT / "docs").rglob("*.md") if "reference" not in p.parts}
    assert nav - generated - written_by_hand == set(), "nav names pages that do not exist"


def test_package_pages_list_every_op_with_its_signs(reference: Path) -> None:
    from dflow.python import OP

    generator = _generator()
    checked = 0
    for package in generator.discover_packages():
        page = (reference / "packages" / f"{package.short_name}.md").read_text()
        for module_name in package.modules:
            for module, cls in generator.iter_classes(module_name):
                if not issubclass(cls, OP):
                    continue
                section = page.split(f"### `{cls.__name__}`", 1)[1].split("\n### ", 1)[0]
                assert f"`{module}.{cls.__name__}`" in section
                inputs, outputs = section.split("**Outputs**")
                for name in cls.get_input_sign():
                    assert f"| `{name}` |" in inputs, (cls, name)
                for name in cls.get_output_sign():
                    assert f"| `{name}` |" in outputs, (cls, name)
                checked += 1
    assert checked >= 10  # core 3, fp 2, md 3, train 3, props 2, cl 5, lameval 2 today


def test_config_and_cli_pages_match_the_code(reference: Path) -> None:
    from opshelf.core.cli import make_parser

    for ep in metadata.entry_points(group="opshelf.workflows"):
        page = (reference / "config" / f"{ep.name}.md").read_text()
        schema = ep.load().Config.model_json_schema()
        for key in schema["properties"]:
            assert f"| `{key}` |" in page, (ep.name, key)
        for name in schema.get("$defs", {}):
            assert f"## {name}\n" in page, (ep.name, name)
    cli = (reference / "cli.md").read_text()
    commands = next(a for a in make_parser()._actions if hasattr(a, "choices") and a.choices)
    for command in commands.choices:
        assert f"## `opshelf {command}`" in cli
    # the workflows' own commands, which docs/migrating.md documents
    assert "## `opshelf alloy import-apex`" in cli
    assert "## `opshelf cl import-dpgen2`" in cli


def test_a_package_docs_stub_is_appended(tmp_path: Path) -> None:
    """What `opshelf new-op` writes to <package>/docs/ ends up on the package's page."""
    generator = _generator()
    core = next(p for p in generator.discover_packages() if p.short_name == "core")
    copy = tmp_path / "packages" / "core"
    (copy / "docs").mkdir(parents=True)
    (copy / "docs" / "count_atoms.md").write_text("# `CountAtoms`\n\nIt counts atoms.\n")
    page = generator.package_page(replace(core, path=copy))
    assert "## More about this package" in page
    assert "## `CountAtoms`\n\nIt counts atoms." in page  # its heading one level down
