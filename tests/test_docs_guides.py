"""The user guides say what the code does: the cluster guide's configs validate, its table of
step names matches the workflows, the own-workflow page shows the script its test runs, and
every package page carries the Python API it promises.

docs/cluster.md marks the complete cluster config with ``<!-- test: cluster-config -->``; every
YAML block of that page with a ``steps:`` block is checked against opshelf's step execution
model and dpdispatcher's own argument checks (with the defaults dflow adds), so a key that
opshelf or dpdispatcher would refuse cannot stay in the guide.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "docs" / "cluster.md"


def yaml_blocks(text: str) -> list[tuple[str, str]]:
    """(marker before it or "", body) of every ```yaml block."""
    blocks = []
    for match in re.finditer(r"(?:<!-- test: ([a-z-]+) -->\n)?```yaml\n(.*?)\n```", text, re.S):
        blocks.append((match.group(1) or "", match.group(2) + "\n"))
    return blocks


def plugin(name: str) -> Any:
    return next(ep for ep in metadata.entry_points(group="opshelf.workflows")
                if ep.name == name).load()()


def check_dispatcher(executor: dict[str, Any]) -> None:
    """What dpdispatcher checks, on the dicts dflow hands it (opshelf's dflow_build)."""
    from dpdispatcher import Machine, Resources

    from opshelf.core.dflow_build import dispatcher_executor
    from opshelf.core.execution import DispatcherExecutor

    built = dispatcher_executor(DispatcherExecutor.model_validate(executor))
    Machine.arginfo().check_value(built.machine_dict, strict=True)
    # the batch type picks the variant of `kwargs` (Slurm: custom_gpu_line)
    Resources.arginfo().check_value(
        {**built.resources_dict, "batch_type": built.machine_dict["batch_type"]}, strict=True)
    for key, value in executor["resources"].items():  # given as written, not dropped
        if isinstance(value, dict):  # envs: merged with dflow's own variables
            assert value.items() <= built.resources_dict[key].items(), key
        else:
            assert built.resources_dict[key] == value, key


def check_steps(steps: dict[str, Any]) -> int:
    from opshelf.core.config import validate_into
    from opshelf.core.execution import StepsConfig

    config = validate_into(StepsConfig, steps)
    checked = 0
    for patch in [config.default, *config.overrides.values()]:
        if patch.executor is not None and patch.executor.kind == "dispatcher":
            check_dispatcher(patch.executor.model_dump())
            checked += 1
    return checked


def test_the_complete_cluster_config_is_a_valid_cl_config(tmp_path: Path) -> None:
    blocks = [body for marker, body in yaml_blocks(CLUSTER.read_text()) if
              marker == "cluster-config"]
    assert len(blocks) == 1, "docs/cluster.md: one block marked cluster-config"
    # saved where the page says: next to examples/cu-cp2k's init data
    shutil.copy(ROOT / "examples" / "cu-cp2k" / "init-data.extxyz", tmp_path)
    path = tmp_path / "cu-cp2k-slurm.yaml"
    path.write_text(blocks[0])
    cl = plugin("cl")
    config = cl.load_config(path)
    config.steps.check_names(cl.step_names(config))
    assert check_steps(yaml.safe_load(blocks[0])["steps"]) == 3
    resources = config.steps.for_step("run-train").executor.resources
    assert resources["gpu_per_node"] == 1
    flags = config.steps.for_step("run-fp").executor.resources["custom_flags"]
    assert any(flag.startswith("#SBATCH --time=") for flag in flags)
    assert any(flag.startswith("#SBATCH --account=") for flag in flags)


def test_every_steps_block_of_the_cluster_guide_validates() -> None:
    checked = 0
    for _, body in yaml_blocks(CLUSTER.read_text()):
        data = yaml.safe_load(body)
        if isinstance(data, dict) and "steps" in data:
            checked += check_steps(data["steps"])
    assert checked >= 5  # one step, the GPU step, and the complete config's three


def test_the_step_name_table_matches_the_workflows() -> None:
    text = CLUSTER.read_text()
    rows = dict(re.findall(r"^\| `(label|cl|alloy|lameval)` \| (.*) \|$", text, re.M))
    assert set(rows) == {"label", "cl", "alloy", "lameval"}
    examples = {"label": "label-cu-emt", "cl": "cu-cp2k", "alloy": "cu-eam",
                "lameval": "lameval-emt-chgnet-sevennet"}
    for name, example in examples.items():
        wf = plugin(name)
        names = wf.step_names(wf.load_config(ROOT / "examples" / example / "config.yaml"))
        documented = re.findall(r"`([a-z<>-]+)`", rows[name])
        if name == "alloy":  # <property>-make ... for each property type named in the row
            types = [t for t in documented if "<" not in t and not t.startswith("relax-")]
            expected = {f"relax-{s}" for s in ("make", "run", "post")} | {
                f"{t}-{s}" for t in types for s in ("make", "run", "post")}
            assert set(names) <= expected, set(names) - expected
        else:
            assert documented == names, (name, documented, names)


def test_the_own_workflow_page_shows_the_tested_script() -> None:
    page = (ROOT / "docs" / "guides" / "own-workflow.md").read_text()
    for package in ("fp", "props", "train", "md"):  # each script is run by its package's test
        assert f'--8<-- "packages/{package}/examples/own_workflow.py"' in page
        script = (ROOT / "packages" / package / "examples" / "own_workflow.py").read_text()
        for needle in ("from dflow import", "PythonOPTemplate(", "Step(", "use_local_mode(",
                       "run_locally("):
            assert needle in script, (package, needle)
        test = ROOT / "packages" / package / "tests" / "test_own_workflow_example.py"
        assert '"examples" / "own_workflow.py"' in test.read_text(), test


@pytest.fixture(scope="module")
def generator() -> Any:
    spec = importlib.util.spec_from_file_location("docs_reference",
                                                  ROOT / "scripts" / "docs_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_reference"] = module
    spec.loader.exec_module(module)
    return module


def test_package_pages_carry_their_python_api(generator: Any) -> None:
    import importlib

    packages = {p.short_name: p for p in generator.discover_packages()}
    for short, modules in generator.API_MODULES.items():
        page = generator.package_page(packages[short])
        api = page.split("## Python API", 1)[1]
        for module_name, names in modules.items():
            module = importlib.import_module(module_name)
            for name in names if names is not None else module.__all__:
                assert f"### `{name}`\n\n`{module_name}.{name}`" in api, (short, name)
    fp = generator.package_page(packages["fp"])
    assert "def label_frames(" in fp
    assert "def compute_properties(" in generator.package_page(packages["props"])
    assert "def train_model(" in generator.package_page(packages["train"])


def test_an_undocumented_key_fails_the_reference(generator: Any, tmp_path: Path) -> None:
    """The docs build (scripts/docs_reference.py, run first by `nox -s docs`) fails when a
    config key, engine setting or engine has no description."""
    generator.UNDOCUMENTED.clear()
    generator.schema_markdown({"title": "Cfg", "properties": {
        "a": {"type": "integer", "description": "documented"}, "b": {"type": "integer"}}})
    assert generator.UNDOCUMENTED == ["Cfg.b"]

    class Bare:
        pass

    assert generator._doc(Bare) == "(no docstring)"
    assert generator.UNDOCUMENTED[-1].endswith("Bare: no docstring")
    # today every key, setting, engine and OP is described: the whole reference generates
    generator.generate(tmp_path)
    pages = "".join(p.read_text() for p in tmp_path.rglob("*.md"))
    assert "(no docstring)" not in pages
    assert generator.main([str(tmp_path / "again")]) == 0
