"""Read a cl run's progress from its step dirs: no dflow import (`opshelf status` stays fast).

The scheduler step of every finished iteration (`iter-NNNNNN--scheduler`) holds the loop
state as an output parameter; its history is the per-iteration table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opshelf.core.keys import StepKey
from opshelf.core.workflows.outputs import artifact_items

#: keys (after the block id) of the Steps around the fan-outs (flow.py): containers, not OPs
SUB_STEPS = ("train", "explore", "label", "label-test")
#: the OP steps of one iteration in loop order (flow.STEP_NAMES; flow imports dflow)
LOOP_ORDER = ("prep-train", "run-train", "prep-explore", "run-explore", "select-confs",
              "prep-fp", "run-fp", "collect-fp", "collect-data", "score-models", "scheduler")
#: the held-out set's labelling (flow.TEST_SUFFIX keys; run-fp's settings): after collect-fp
TEST_LABEL_KEYS = ("prep-fp-test", "run-fp-test", "collect-fp-test")
_KEY_ORDER = (*LOOP_ORDER[:LOOP_ORDER.index("collect-fp") + 1], *TEST_LABEL_KEYS,
              *LOOP_ORDER[LOOP_ORDER.index("collect-fp") + 1:])


def read_param(step_dir: Path, name: str) -> Any:
    """An output parameter of a finished step (a BigParameter is stored as an artifact)."""
    path = step_dir / "outputs" / "parameters" / name
    if not path.is_file():
        path = step_dir / "outputs" / "artifacts" / f"dflow_bigpar_{name}"
    text = path.read_text()
    value: Any = text
    for _ in range(2):  # dflow may store a JSON text of a JSON text
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            break
    return value


def step_artifacts(step_dir: Path, name: str) -> list[Path]:
    root = step_dir / "outputs" / "artifacts" / name
    return artifact_items(root) if root.exists() else []


def fanout_artifacts(step_dirs: list[Path], name: str) -> list[Path]:
    """Output artifact `name` of every slice of a fan-out, once each (grouped slices share
    one artifact root holding every slice's items)."""
    seen: dict[Path, None] = {}
    for d in step_dirs:
        for item in step_artifacts(d, name):
            seen.setdefault(item.resolve(), None)
    return list(seen)


def phase(step_dir: Path) -> str:
    try:
        return (step_dir / "phase").read_text().strip()
    except FileNotFoundError:
        return "Pending"


def iteration_steps(wfdir: Path) -> dict[int, dict[str, list[Path]]]:
    """iteration -> step name -> step dirs (slices of a fan-out sorted)."""
    out: dict[int, dict[str, list[Path]]] = {}
    if not wfdir.is_dir():
        return out
    for entry in sorted(wfdir.iterdir()):
        key = StepKey.parse(entry.name)
        if key.iteration is not None and entry.is_dir():
            out.setdefault(key.iteration, {}).setdefault(key.step, []).append(entry)
    return out


def latest_state(wfdir: Path) -> dict[str, Any] | None:
    """The loop state written by the newest succeeded scheduler step."""
    for _, steps in sorted(iteration_steps(wfdir).items(), reverse=True):
        for step_dir in steps.get("scheduler", []):
            if phase(step_dir) == "Succeeded":
                return read_param(step_dir, "state")
    return None


def status_rows(wfdir: Path, run_status: str | None = None) -> list[dict[str, Any]]:
    """One row per iteration: the finished ones from the loop state, then the unfinished
    one, labelled with the step it is at in loop order: `failed at run-fp`, `running
    run-fp`, or `interrupted at run-fp` when the run is not running (`run_status`, e.g.
    'killed' after a crash: its steps still say Running)."""
    state = latest_state(wfdir)
    rows = [dict(r) for r in (state or {}).get("history", [])]
    done = {r["iteration"] for r in rows}
    for it, steps in sorted(iteration_steps(wfdir).items()):
        if it in done:
            continue
        rows.append({"iteration": it, "stage": (state or {}).get("stage", 0),
                     "decision": _unfinished_label(steps, run_status)})
    return rows


def _unfinished_label(steps: dict[str, list[Path]], run_status: str | None) -> str:
    phases = {name: [phase(d) for d in steps[name]] for name in _KEY_ORDER if name in steps}
    failed = [n for n, ps in phases.items() if "Failed" in ps or "Error" in ps]
    if failed:
        return f"failed at {failed[0]}"
    unfinished = [n for n, ps in phases.items() if any(p != "Succeeded" for p in ps)]
    # every step so far succeeded: the iteration is between steps, at the next one
    at = unfinished[0] if unfinished else next(
        (n for n in _KEY_ORDER if n not in phases), _KEY_ORDER[-1])
    if run_status in (None, "running"):
        return f"running {at}"
    return f"interrupted at {at} (run {run_status}; opshelf resume)"


def format_table(rows: list[dict[str, Any]], state: dict[str, Any] | None) -> str:
    """One line per iteration. trained: frames its models were trained on; test-F,
    test-E: their held-out force (eV/A) and energy (meV/atom) RMSE."""
    head = ("iter", "stage", "frames", "accurate", "candidate", "failed", "selected",
            "labelled", "fp-fail", "trained", "test-F", "test-E", "converged", "decision")
    lines = ["  ".join(f"{h:>9s}" if i < len(head) - 1 else h for i, h in enumerate(head))]

    def num(row: dict[str, Any], key: str, fmt: str) -> str:
        return format(row[key], fmt) if row.get(key) is not None else "-"

    for r in rows:
        conv = ("yes" if r["converged"] else "no") if "converged" in r else "-"
        cells = [str(r["iteration"]), str(r.get("stage", "-")), num(r, "n_frames", "d"),
                 num(r, "accurate_ratio", ".3f"), num(r, "candidate_ratio", ".3f"),
                 num(r, "failed_ratio", ".3f"), num(r, "n_selected", "d"),
                 num(r, "n_labelled", "d"), num(r, "n_fp_failed", "d"),
                 num(r, "n_train_frames", "d"), num(r, "test_force_rmse_eV_per_A", ".4f"),
                 "-" if r.get("test_energy_rmse_eV_per_atom") is None
                 else f"{1000 * r['test_energy_rmse_eV_per_atom']:.2f}", conv]
        lines.append("  ".join(f"{c:>9s}" for c in cells) + "  " + r.get("decision", ""))
    if state and state.get("done"):
        lines.append(f"loop finished: {state.get('reason', '')}")
    return "\n".join(lines)


def status_table(run_dir: Path) -> str | None:
    """`opshelf status`'s table of a cl run: a row per iteration (the `opshelf.status` entry
    point of this package: no dflow import)."""
    from opshelf.core.rundir import RunDir

    run = RunDir(run_dir)
    wfdir = run.workflow_dir()
    return format_table(status_rows(wfdir, run.effective_status()), latest_state(wfdir))
