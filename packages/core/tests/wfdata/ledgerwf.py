"""A tiny test workflow for the run-lifecycle tests: a chain of steps, then a fan-out.

Every step sleeps a little, computes `value = prev * mult + add` (prev read from the previous
step's output artifact) and appends its key to a ledger file outside the run directory, so a
test can count how often each step really ran (a resumed or reused step must not run again).

    chain-000 -> chain-001 -> ... -> chain-<n-1> -> fan-0, fan-1, ..., fan-<m-1>

chain-i: mult 1, add 1 + offsets[chain-i];   fan-j: mult scale, add j.
Used as `ledgerwf:LedgerWorkflow` (tests put this directory on PYTHONPATH).
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

from dflow import Workflow
from dflow.python import OP, OPIO, Artifact, OPIOSign
from pydantic import Field

from opshelf.core.config import StrictModel
from opshelf.core.execution import StepsConfig
from opshelf.core.workflow import BuildContext, WorkflowPlugin


class LedgerStep(OP):
    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign({"key": str, "ledger": str, "sleep_s": float, "mult": int, "add": int,
                         "fail": bool, "prev": Artifact(Path, optional=True)})

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign({"out": Artifact(Path)})

    @OP.exec_sign_check
    def execute(self, ip: OPIO) -> OPIO:
        time.sleep(ip["sleep_s"])
        if ip["fail"]:
            raise RuntimeError(f"step {ip['key']} fails on purpose (fail_key)")
        prev = int((ip["prev"] / "value.txt").read_text()) if ip["prev"] is not None else 0
        out = Path("out")
        out.mkdir(exist_ok=True)
        (out / "value.txt").write_text(str(prev * ip["mult"] + ip["add"]))
        with open(ip["ledger"], "a") as fh:  # several steps append at once
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(ip["key"] + "\n")
        return OPIO({"out": out})


class LedgerConfig(StrictModel):
    ledger: str = Field(description="file every step appends its key to (relative: to the config)")
    chain: int = Field(4, ge=1)
    fanout: int = Field(4, ge=1)
    sleep_s: float = Field(0.3, ge=0)
    offsets: dict[str, int] = Field(default_factory=dict, description="extra add per chain key")
    scale: int = 2
    fail_key: str | None = Field(None, description="this step raises (for failure tests)")
    steps: StepsConfig = Field(default_factory=StepsConfig)


def expected_values(config: LedgerConfig) -> dict[str, int]:
    """What the workflow must compute, independently of dflow (the tests' reference)."""
    value, out = 0, {}
    for i in range(config.chain):
        key = f"chain-{i:03d}"
        value = value + 1 + config.offsets.get(key, 0)
        out[key] = value
    for j in range(config.fanout):
        out[f"fan-{j}"] = value * config.scale + j
    return out


class LedgerWorkflow(WorkflowPlugin):
    name = "ledger"
    description = "test workflow: chain + fan-out, every step logs to a ledger"
    Config = LedgerConfig

    def step_names(self, config: LedgerConfig) -> list[str]:
        return ["chain", "fan"]

    def build(self, config: LedgerConfig, ctx: BuildContext) -> Workflow:
        from dflow import Step
        from dflow.python import PythonOPTemplate

        ledger = str((ctx.config_dir / config.ledger).resolve())
        template = PythonOPTemplate(LedgerStep, upload_dflow=ctx.mode != "argo",
                                    image="python:3.11" if ctx.mode == "argo" else None)
        wf = Workflow(name="ledger", id=ctx.workflow_id)
        prev = None
        for i in range(config.chain):
            key = f"chain-{i:03d}"
            step = Step(f"chain-{i:03d}", template, key=key,
                        parameters={"key": key, "ledger": ledger, "sleep_s": config.sleep_s,
                                    "mult": 1, "add": 1 + config.offsets.get(key, 0),
                                    "fail": key == config.fail_key},
                        artifacts={"prev": prev} if prev is not None else {})
            wf.add(step)
            prev = step.outputs.artifacts["out"]
        fan = Step("fan", template, key="fan-{{item}}",
                   parameters={"key": "fan-{{item}}", "ledger": ledger, "sleep_s": config.sleep_s,
                               "mult": config.scale, "add": "{{item}}",
                               "fail": False},
                   artifacts={"prev": prev}, with_param=list(range(config.fanout)))
        wf.add(fan)
        return wf

    def collect(self, config: LedgerConfig, ctx: BuildContext,
                workflow: Workflow) -> list[str]:
        wfdir = ctx.run_dir / "dflow" / ctx.workflow_id
        # dflow keeps the artifact's own path under the artifact dir: .../out/out/value.txt
        values = {key: int(next((wfdir / key / "outputs/artifacts/out").rglob("value.txt"))
                           .read_text()) for key in expected_values(config)}
        out = ctx.run_dir / "results" / "values.json"
        out.write_text(json.dumps(values, indent=1))
        return [f"values of {len(values)} steps: {out}"]

    def status_table(self, run_dir: Path) -> str | None:
        return "ledger workflow: chain then fan-out"
