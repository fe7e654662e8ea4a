"""WriteResults: the last step of an exported (Argo) workflow run writes its results.

In local mode a workflow's `collect` gathers results on the driver; an Argo run has no
driver, so `opshelf export-argo` appends this OP (in the workflow's image) when the workflow
names its `results_inputs` (``opshelf.core.dflow_build.results_step``).

Any number of named artifacts arrive through one input, `inputs`, fed with a dict
{name: step output artifact}: dflow turns it into one artifact ``dflow_inputs_<name>`` per
entry (in Argo and in debug mode alike) and hands the OP a dict name -> local path.
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, List

from dflow.python import OP, OPIO, Artifact, BigParameter, FatalError, OPIOSign, Parameter
from dflow.python.opio import NestedDict

#: an input name becomes part of an Argo artifact name (``dflow_inputs_<name>``); dflow
#: splits dict keys at '.', and keys that are all digits would turn the dict into a list
INPUT_NAME = re.compile(r"^(?![0-9]+$)[A-Za-z0-9][-A-Za-z0-9_]{0,190}$")


#: the summary lines, one a line, as a local run's driver writes them
SUMMARY_FILE = "summary.txt"


class WriteResults(OP):
    """The workflow's own `write_results`, on artifacts of the finished steps."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "workflow": Parameter(str),
            "config": BigParameter(dict),
            # every name results_inputs gave, in order; `optional`: which may be missing
            "names": Parameter(List[str]),
            "optional": Parameter(List[str], default=[]),
            # NestedDict: dflow hands an artifact that holds a catalog as a list of paths
            "inputs": Artifact(NestedDict[Path]),
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"results": Artifact(Path), "summary": Parameter(List[str])})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        from opshelf.core.workflow import resolve_workflow

        plugin = resolve_workflow(ip["workflow"])
        config = plugin.Config.model_validate(ip["config"])
        found = present_inputs(ip["inputs"])
        missing = [name for name in ip["names"] if name not in found]
        required = [name for name in missing if name not in set(ip["optional"])]
        if required:
            raise FatalError(f"results of {plugin.name}: no artifact for {required}")
        if missing:
            print(f"results of {plugin.name}: no artifact for {missing} (optional: their "
                  "steps failed or did not run)", flush=True)
        results = Path("results")
        results.mkdir(parents=True, exist_ok=True)
        lines = plugin.write_results(config, found, results)
        # what the local driver writes after `collect` (opshelf.core.local.driver)
        (results / SUMMARY_FILE).write_text("".join(f"{line}\n" for line in lines))
        print("\n".join(lines), flush=True)
        return OPIO({"results": results, "summary": lines})


def present_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """name -> local path of every input artifact that arrived (a list of paths for an
    artifact of several, e.g. a fan-out's). dflow gives an artifact whose step wrote a
    catalog as the list of its paths (one path: an OP's `Artifact(Path)`), and a missing
    optional artifact as a path that does not exist."""
    found: dict[str, Any] = {}
    for name, value in inputs.items():
        paths = value if isinstance(value, list) else [value]
        paths = [Path(p) for p in paths if p is not None and Path(p).exists()]
        if paths:
            found[name] = paths[0] if len(paths) == 1 else paths
    return found
