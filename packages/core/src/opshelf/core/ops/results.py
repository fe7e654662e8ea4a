"""WriteResults: the last step of an exported (Argo) workflow run writes its results.

In local mode a workflow's `collect` gathers results on the driver; an Argo run has no
driver, so `opshelf export-argo` appends this OP (in the workflow's image) when the workflow
names its `results_inputs` (``opshelf.core.dflow_build.results_step``).
"""

# dflow compares artifact signs with typing.List[...] (python/op.py): keep typing's generics.
# ruff: noqa: UP006, UP035

from __future__ import annotations

from pathlib import Path
from typing import List

from dflow.python import OP, OPIO, Artifact, BigParameter, FatalError, OPIOSign, Parameter

#: input artifact slots (an OP's signature is fixed; `names` says which slot holds what)
MAX_RESULT_INPUTS = 8
SLOTS = [f"input_{i}" for i in range(MAX_RESULT_INPUTS)]


class WriteResults(OP):
    """The workflow's own `write_results`, on artifacts of the finished steps."""

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({
            "workflow": Parameter(str),
            "config": BigParameter(dict),
            "names": Parameter(List[str]),
            **{slot: Artifact(Path, optional=True) for slot in SLOTS},
        })

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"results": Artifact(Path), "summary": Parameter(List[str])})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        from opshelf.core.local.runner import resolve_workflow

        plugin = resolve_workflow(ip["workflow"])
        config = plugin.Config.model_validate(ip["config"])
        names = list(ip["names"])
        missing = [name for slot, name in zip(SLOTS, names, strict=False) if ip[slot] is None]
        if missing:
            raise FatalError(f"results of {plugin.name}: no artifact for {missing}")
        inputs = {name: Path(ip[slot]) for slot, name in zip(SLOTS, names, strict=False)}
        results = Path("results")
        results.mkdir(parents=True, exist_ok=True)
        lines = plugin.write_results(config, inputs, results)
        print("\n".join(lines), flush=True)
        return OPIO({"results": results, "summary": lines})
